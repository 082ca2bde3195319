"""Console imports: upload → dry-run preview (nothing written) → confirm (all or nothing), the
unmatched-units queue with one-click aliases, and every kind of bad upload refused."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import io
import random
import re
import tempfile
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from sqlalchemy import func, select

from bot.app import SESSIONS
from bot.console import page_imports
from models.donations import Donation
from models.people import AuditEntry, Liaison
from models.plans import Plan, PlanLine, Unit
from tests.console_world import Staff, add_users, login

HERE = Path(__file__).resolve().parent
SEEDS = HERE.parent / "data" / "seed_plans"
DONATIONS = HERE / "data" / "imports" / "donations-zhangjiajie.csv"
LIAISONS = HERE / "data" / "imports" / "liaisons-luquan.csv"
TOKEN = re.compile(r'name="token" value="([^"]+)"')
PLAN_HEADER = "jurisdiction,year,measure,unit,parent,months,category,target,kind,note\n"


@pytest.fixture
async def bot(make_bot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(page_imports, "UPLOAD_ROOT", tmp_path / "uploads")
    made = await make_bot()
    await add_users(made)
    return made


async def upload(
    staff: Staff,
    code: str,
    kind: str,
    name: str,
    content: bytes,
    *,
    checks: bytes | None = None,
    csrf: str | None = None,
) -> tuple[int, str]:
    data = FormData()
    if csrf != "":  # "" = no token at all
        data.add_field("_csrf", staff.csrf if csrf is None else csrf)
    data.add_field("kind", kind)
    data.add_field(
        "file", io.BytesIO(content), filename=name, content_type="application/octet-stream"
    )
    if checks is not None:
        data.add_field("checks", checks, filename=name.rsplit(".", 1)[0] + ".checks.json")
    resp = await staff.client.post(
        f"/console/j/{code}/imports/preview", data=data, allow_redirects=False
    )
    return resp.status, await resp.text()


async def confirm(staff: Staff, code: str, html: str) -> tuple[int, str]:
    found = TOKEN.search(html)
    assert found, "no confirm form on the preview"
    return await staff.post(f"/console/j/{code}/imports/confirm", {"token": found.group(1)})


async def count(bot: Any, what: Any, *where: Any) -> int:
    async with bot.app[SESSIONS]() as s:
        return await s.scalar(select(func.count()).select_from(what).where(*where)) or 0


async def audits(bot: Any, action: str) -> list[AuditEntry]:
    async with bot.app[SESSIONS]() as s:
        return list(await s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


@contextlib.asynccontextmanager
async def refused_before_the_page() -> AsyncIterator[None]:
    """An upload refused by the CSRF or size check never reaches the view that closes its
    temp file: aiohttp's file stays open (referenced from the refused request) until the
    garbage collector finds it, which would warn in some later test. Close such files here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
        await asyncio.sleep(0.05)
        gc.collect()
        for leaked in gc.get_objects():
            if isinstance(leaked, tempfile.SpooledTemporaryFile) and not leaked.closed:
                leaked.close()


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return [r for r in csv.DictReader(fh) if any((v or "").strip() for v in r.values())]


def uploads(tmp: Path) -> list[Path]:
    root = tmp / "uploads"
    return sorted(root.iterdir()) if root.exists() else []


async def test_a_seed_plan_is_previewed_then_imported_on_confirmation(
    bot: Any, tmp_path: Path
) -> None:
    staff = await login(bot.client, "zjj_office")
    status, form_html = await staff.get("/console/j/zhangjiajie/imports")
    assert status == 200 and 'enctype="multipart/form-data"' in form_html
    form = form_html.split('enctype="multipart/form-data">', 1)[1]
    assert form.lstrip().startswith('<input type="hidden" name="_csrf"')  # first in the form

    seed = SEEDS / "zhangjiajie-2018.csv"
    checks = (SEEDS / "zhangjiajie-2018.checks.json").read_bytes()
    status, html = await upload(
        staff, "zhangjiajie", "plan", seed.name, seed.read_bytes(), checks=checks
    )
    lines = len(csv_rows(seed))
    assert status == 200, html
    assert "试导入预览" in html and f'<strong class="rows">{lines}</strong>' in html
    assert "zhangjiajie 2018 年 人次" in html and "新计划" in html
    assert "对账（zhangjiajie-2018.checks.json）" in html and 'class="status pass"' in html
    assert "试运行：以上是导入将做的改动，数据库未写入。" in html
    assert await count(bot, PlanLine) == 0 and await count(bot, Plan) == 0  # nothing yet
    assert await audits(bot, "plan.import") == []  # the dry run's audit was rolled back
    assert len(uploads(tmp_path)) == 1

    status, done = await confirm(staff, "zhangjiajie", html)
    assert status == 200, done
    assert "导入结果" in done and "已导入。" in done
    assert await count(bot, PlanLine) == lines  # one line per row of the CSV
    (entry,) = await audits(bot, "plan.import")
    assert entry.actor == "console:zjj_office" and entry.jurisdiction == "zhangjiajie"
    assert entry.detail["added"] == lines and entry.detail["file"] == seed.name
    assert uploads(tmp_path) == []  # the upload is gone once imported

    again, _ = await confirm(staff, "zhangjiajie", html)  # the same token twice: refused
    assert again == 404
    assert len(await audits(bot, "plan.import")) == 1


async def test_without_a_checks_file_the_structure_is_reconciled(bot: Any) -> None:
    staff = await login(bot.client, "rugao_office")
    seed = SEEDS / "rugao-2020.csv"
    status, html = await upload(staff, "rugao", "plan", seed.name, seed.read_bytes())
    assert status == 200, html
    assert "对账" in html and ("按文件结构" in html or "没有可核对的项目" in html)


async def test_every_error_is_listed_with_its_row_and_nothing_is_imported(
    bot: Any, tmp_path: Path
) -> None:
    staff = await login(bot.client, "zjj_office")
    body = (
        PLAN_HEADER + "zhangjiajie,2018,人次,甲局,,13,,5,scheduled,\n"
        "zhangjiajie,2018,人次,乙局,,3,,many,scheduled,\n"
        "zhangjiajie,2018,人次,丙局,,3,,4,scheduled,\n"
        "zhangjiajie,2018,人次,丁局,,9-2,,4,scheduled,\n"
    )
    status, html = await upload(staff, "zhangjiajie", "plan", "bad.csv", body.encode())
    assert status == 422
    assert "发现 3 个错误，未导入任何数据" in html
    for row, column in ((2, "months"), (3, "target"), (5, "months")):
        assert re.search(rf"<td class=\"num\">第{row}行</td><td>{column}</td>", html), row
    assert "月份「13」超出范围" in html
    assert TOKEN.search(html) is None  # nothing to confirm
    assert uploads(tmp_path) == []
    assert await count(bot, PlanLine) == 0 and await count(bot, Unit) == 0


async def test_confirmation_checks_the_file_again_and_imports_nothing_if_it_fails(
    bot: Any, tmp_path: Path
) -> None:
    """Even a confirmed upload is imported all or nothing: it is validated again, in full."""
    staff = await login(bot.client, "zjj_office")
    good = PLAN_HEADER + "zhangjiajie,2018,人次,甲局,,3,,5,scheduled,\n"
    status, html = await upload(staff, "zhangjiajie", "plan", "p.csv", good.encode())
    assert status == 200, html
    (folder,) = uploads(tmp_path)
    bad = good + "zhangjiajie,2018,人次,乙局,,13,,5,scheduled,\n"
    (folder / "p.csv").write_text(bad, encoding="utf-8")  # the file went bad in between
    status, done = await confirm(staff, "zhangjiajie", html)
    assert status == 422 and "第3行" in done and "未导入任何数据" in done
    assert await count(bot, PlanLine) == 0 and await count(bot, Unit) == 0
    assert await audits(bot, "plan.import") == []


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("plan.csv", b"\x89PNG\r\n\x1a\n" + bytes(200), "PNG 图片"),
        ("plan.csv", random.Random(7).randbytes(4096), "不是"),
        ("plan.exe", b"MZ\x90\x00" + bytes(100), "不是表格文件"),
        ("plan.xlsx", b"jurisdiction,year\n", "不是有效的 Excel 工作簿"),
        ("plan.csv", b"PK\x03\x04" + bytes(100), "扩展名改为 .xlsx"),
        ("plan.png", b"\x89PNG\r\n\x1a\n", "不是表格文件"),
        ("plan.csv", b"", "空文件"),
    ],
)
async def test_a_non_spreadsheet_is_refused_with_a_clear_message(
    bot: Any, tmp_path: Path, name: str, content: bytes, says: str
) -> None:
    staff = await login(bot.client, "zjj_office")
    status, html = await upload(staff, "zhangjiajie", "plan", name, content)
    assert status in (400, 422), html
    assert says in html and 'class="error"' in html
    assert "Traceback" not in html
    assert uploads(tmp_path) == []
    assert await count(bot, Unit) == 0 and await count(bot, PlanLine) == 0


async def test_a_corrupt_xlsx_gets_the_importers_message(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    status, html = await upload(staff, "zhangjiajie", "plan", "p.xlsx", b"PK\x03\x04" + bytes(64))
    assert status == 422 and "不是有效的 .xlsx 文件" in html


@pytest.mark.parametrize("megabytes", [21, 50])
async def test_an_upload_over_the_limit_is_refused_with_413(bot: Any, megabytes: int) -> None:
    staff = await login(bot.client, "zjj_office")
    big = PLAN_HEADER.encode() + b"x" * (megabytes * 1024 * 1024)
    async with refused_before_the_page():
        status, text = await upload(staff, "zhangjiajie", "plan", "big.csv", big)
    assert status == 413 and "文件太大" in text and "20 MB" in text
    assert await count(bot, Unit) == 0


async def test_missing_or_forged_csrf_changes_nothing(bot: Any, tmp_path: Path) -> None:
    staff = await login(bot.client, "zjj_office")
    seed = SEEDS / "zhangjiajie-2018.csv"
    async with refused_before_the_page():
        status, _ = await upload(
            staff, "zhangjiajie", "plan", seed.name, seed.read_bytes(), csrf=""
        )
        assert status == 403
        status, _ = await upload(
            staff, "zhangjiajie", "plan", seed.name, seed.read_bytes(), csrf="x" * 43
        )
        assert status == 403
    assert uploads(tmp_path) == []
    status, html = await upload(staff, "zhangjiajie", "plan", seed.name, seed.read_bytes())
    token = TOKEN.search(html)
    assert status == 200 and token
    resp = await staff.client.post(
        "/console/j/zhangjiajie/imports/confirm",
        data={"token": token.group(1), "_csrf": "forged"},
        allow_redirects=False,
    )
    assert resp.status == 403
    resp = await staff.client.post(
        "/console/j/zhangjiajie/imports/confirm", data={"token": token.group(1)}
    )
    assert resp.status == 403
    assert await count(bot, PlanLine) == 0
    status, _ = await confirm(staff, "zhangjiajie", html)  # the real one still works
    assert status == 200 and await count(bot, PlanLine) > 0


async def test_an_office_user_cannot_import_another_jurisdictions_file(bot: Any) -> None:
    staff = await login(bot.client, "rugao_office")
    seed = SEEDS / "zhangjiajie-2018.csv"
    status, html = await upload(staff, "rugao", "plan", seed.name, seed.read_bytes())
    rows = len(csv_rows(seed))
    assert status == 422
    assert f"发现 {rows} 个错误" in html and "辖区「zhangjiajie」" in html  # row by row
    assert "本页只导入如皋市（rugao）的数据" in html
    mixed = (
        PLAN_HEADER + "rugao,2020,人,甲局,,1,,5,scheduled,\nqingpu,2021,人,乙局,,1,,5,scheduled,\n"
    )
    status, html = await upload(staff, "rugao", "plan", "mixed.csv", mixed.encode())
    assert status == 422 and "第3行" in html and "辖区「qingpu」" in html
    assert await count(bot, PlanLine) == 0 and await count(bot, Unit) == 0

    status, _ = await upload(staff, "zhangjiajie", "plan", seed.name, seed.read_bytes())
    assert status == 403  # nor by its URL
    for path in ("/console/j/zhangjiajie/imports", "/console/j/zhangjiajie/imports/unmatched"):
        status, text = await staff.get(path)
        assert status == 403 and "本辖区" in text
    status, _ = await staff.post(
        "/console/j/zhangjiajie/imports/unmatched/alias", {"alias": "x", "unit": "y"}
    )
    assert status == 403


async def test_a_token_belongs_to_its_user_and_jurisdiction(bot: Any) -> None:
    zjj = await login(bot.client, "zjj_office")
    seed = SEEDS / "zhangjiajie-2018.csv"
    _, html = await upload(zjj, "zhangjiajie", "plan", seed.name, seed.read_bytes())
    token = TOKEN.search(html)
    assert token
    assert (await zjj.post("/console/logout"))[0] == 302
    admin = await login(bot.client, "admin")
    status, _ = await admin.post("/console/j/zhangjiajie/imports/confirm", {"token": token[1]})
    assert status == 404  # another user's upload
    for forged in ("../../etc/passwd", "a" * 31, token[1] + "/..", "", "%2e%2e"):
        status, _ = await admin.post("/console/j/zhangjiajie/imports/confirm", {"token": forged})
        assert status == 404
    assert await count(bot, PlanLine) == 0


async def test_donations_then_the_unmatched_queue_and_a_one_click_alias(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    seed = SEEDS / "zhangjiajie-2018.csv"
    _, html = await upload(staff, "zhangjiajie", "plan", seed.name, seed.read_bytes())
    assert (await confirm(staff, "zhangjiajie", html))[0] == 200

    status, html = await upload(
        staff, "zhangjiajie", "donations", DONATIONS.name, DONATIONS.read_bytes()
    )
    assert status == 200, html
    assert '<strong class="inserted">9</strong>' in html and "单位未匹配 4 行（3 个名称）" in html
    assert await count(bot, Donation) == 0
    status, _ = await confirm(staff, "zhangjiajie", html)
    assert status == 200 and await count(bot, Donation) == 9
    (entry,) = await audits(bot, "donations.import")
    assert entry.actor == "console:zjj_office"

    status, queue = await staff.get("/console/j/zhangjiajie/imports/unmatched")
    assert status == 200
    assert "4 条献血记录的单位未匹配，共 3 个名称" in queue
    assert "吉大张家界校区" in queue and "吉首大学张家界校区" in queue
    assert "可能是：" in queue  # 吉首大学: ambiguous, both colleges offered

    async with bot.app[SESSIONS]() as s:
        campus = await s.scalar(select(Unit.id).where(Unit.name == "吉首大学张家界校区"))
    before = await count(bot, Donation, Donation.unit_id == campus)
    status, html = await staff.post(
        "/console/j/zhangjiajie/imports/unmatched/alias",
        {"alias": "吉大张家界校区", "unit": "吉首大学张家界校区"},
    )
    assert status == 200, html
    assert "已添加别名「吉大张家界校区」→「吉首大学张家界校区」；计入待核对的献血记录 2 条" in html
    assert await count(bot, Donation, Donation.unit_id == campus) == before + 2
    assert "2 条献血记录的单位未匹配，共 2 个名称" in html
    (alias,) = await audits(bot, "units.alias_add")
    assert alias.actor == "console:zjj_office" and alias.detail["credited"] == 2

    status, html = await staff.post(
        "/console/j/zhangjiajie/imports/unmatched/alias", {"alias": "吉首", "unit": "吉首大学"}
    )
    assert status == 422 and "可能是" in html  # an ambiguous unit is refused, never guessed
    status, _ = await staff.post(
        "/console/j/zhangjiajie/imports/unmatched/alias", {"alias": "", "unit": ""}
    )
    assert status == 400


async def test_a_liaison_directory_is_previewed_masked_and_imported(bot: Any) -> None:
    staff = await login(bot.client, "admin")
    seed = SEEDS / "luquan-2016.csv"
    _, html = await upload(staff, "luquan", "plan", seed.name, seed.read_bytes())
    assert (await confirm(staff, "luquan", html))[0] == 200
    status, html = await upload(staff, "luquan", "liaisons", LIAISONS.name, LIAISONS.read_bytes())
    assert status == 200, html
    assert "新增联络员 3 人" in html and "张*" in html and "张三" not in html
    assert "13800000001" not in html and "138****0001" in html
    assert await count(bot, Liaison) == 0
    status, _ = await confirm(staff, "luquan", html)
    assert status == 200 and await count(bot, Liaison) == 3
    (entry,) = await audits(bot, "liaisons.import")
    assert entry.actor == "console:admin" and entry.jurisdiction == "luquan"


async def test_html_in_a_unit_name_is_escaped_on_every_imports_page(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    evil = "<script>alert(1)</script>局"
    plan = PLAN_HEADER + f"zhangjiajie,2018,人次,{evil},,3,<b>类</b>,5,scheduled,<i>x</i>\n"
    status, html = await upload(staff, "zhangjiajie", "plan", "<img src=x>.csv", plan.encode())
    assert status == 200, html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;局" in html
    assert "<img src=x>" not in html
    status, done = await confirm(staff, "zhangjiajie", html)
    assert status == 200 and "<script>alert(1)" not in done

    onerror = "<img src=x onerror=alert(2)>"
    donations = (
        "record_id,donated_at,donor_id,donor_name,blood_type,kind,volume_ml,therapeutic_units,"
        f"unit,jurisdiction\nX-1,2025-01-02,TEST-X-1,张三,A,全血,400,,{onerror},zhangjiajie\n"
    )
    status, html = await upload(staff, "zhangjiajie", "donations", "d.csv", donations.encode())
    assert status == 200, html
    assert "<img src=x onerror" not in html
    assert (await confirm(staff, "zhangjiajie", html))[0] == 200
    status, queue = await staff.get("/console/j/zhangjiajie/imports/unmatched")
    assert status == 200 and "<img src=x onerror" not in queue and "&lt;img src=x" in queue
    bad_errors = PLAN_HEADER + f"zhangjiajie,2018,人次,{evil},,13,,5,scheduled,\n"
    status, html = await upload(staff, "zhangjiajie", "plan", "e.csv", bad_errors.encode())
    assert status == 422 and "<script>alert(1)" not in html
    status, html = await staff.post(
        "/console/j/zhangjiajie/imports/unmatched/alias", {"alias": evil, "unit": evil + "x"}
    )
    assert status == 422 and "<script>alert(1)" not in html


def test_upload_names_cannot_escape_the_upload_folder() -> None:
    safe = page_imports._safe_name
    assert safe("../../etc/passwd.csv") == "passwd.csv"
    assert safe("C:\\Users\\a\\计划.xlsx") == "计划.xlsx"
    assert safe("..") == "upload" and safe("...csv").endswith("csv")
    assert "/" not in safe("a/\x00b.csv") and "\x00" not in safe("a/\x00b.csv")


def test_the_random_upload_really_is_binary() -> None:
    assert b"\x00" in random.Random(7).randbytes(4096)


async def test_cancel_discards_the_upload(bot: Any, tmp_path: Path) -> None:
    staff = await login(bot.client, "zjj_office")
    good = PLAN_HEADER + "zhangjiajie,2018,人次,甲局,,3,,5,scheduled,\n"
    _, html = await upload(staff, "zhangjiajie", "plan", "p.csv", good.encode())
    token = TOKEN.search(html)
    assert token and len(uploads(tmp_path)) == 1
    status, _ = await staff.post("/console/j/zhangjiajie/imports/cancel", {"token": token[1]})
    assert status == 303 and uploads(tmp_path) == []
    assert (await confirm(staff, "zhangjiajie", html))[0] == 404
    assert await count(bot, PlanLine) == 0


async def test_names_that_resolve_now_are_credited_in_one_click(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    seed = SEEDS / "zhangjiajie-2018.csv"
    _, html = await upload(staff, "zhangjiajie", "plan", seed.name, seed.read_bytes())
    await confirm(staff, "zhangjiajie", html)
    _, html = await upload(staff, "zhangjiajie", "donations", "d.csv", DONATIONS.read_bytes())
    await confirm(staff, "zhangjiajie", html)
    station = PLAN_HEADER + "zhangjiajie,2019,人次,张家界市火车站,,3,,5,scheduled,\n"
    _, html = await upload(staff, "zhangjiajie", "plan", "station.csv", station.encode())
    await confirm(staff, "zhangjiajie", html)  # the unit exists now; its row is still queued
    _, queue = await staff.get("/console/j/zhangjiajie/imports/unmatched")
    assert "现在可匹配「张家界市火车站」" in queue and "/imports/unmatched/rematch" in queue
    status, html = await staff.post("/console/j/zhangjiajie/imports/unmatched/rematch")
    assert status == 200 and "已计入 1 条" in html
    async with bot.app[SESSIONS]() as s:
        station_id = await s.scalar(select(Unit.id).where(Unit.name == "张家界市火车站"))
    assert await count(bot, Donation, Donation.unit_id == station_id) == 1
    (entry,) = await audits(bot, "units.rematch")
    assert entry.actor == "console:zjj_office"


async def test_a_shared_upload_folder_is_refused(
    bot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # what someone else could plant in /tmp
    monkeypatch.setattr(page_imports, "UPLOAD_ROOT", shared)
    staff = await login(bot.client, "zjj_office")
    seed = SEEDS / "zhangjiajie-2018.csv"
    status, html = await upload(staff, "zhangjiajie", "plan", seed.name, seed.read_bytes())
    assert status == 400 and "上传目录设置不安全" in html
    assert list(shared.iterdir()) == []
