"""Console liaisons: who is bound, invite codes shown once (one unit, or a printable sheet for a
category) that really bind through the chat, revoking a binding — audited, scoped, escaped."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from bot.app import SESSIONS, STORAGE
from bot.binding import redeem
from bot.imports import import_plan_file
from models.invites import Invite
from models.people import AuditEntry, Liaison
from models.plans import Unit
from models.users import Binding
from tests.console_world import Staff, add_users, login

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed_plans"
CODE = re.compile(r'<p class="code" id="invite-code">(\d{6})</p>')
SHEET_ROW = re.compile(r'<tr><td>([^<]*)</td><td class="code">(\d{6})</td>')
EVIL_UNIT = "<script>alert(1)</script>局"
EVIL_CATEGORY = "<b>类</b>"
HEADER = "jurisdiction,year,measure,unit,parent,months,category,target,kind,note\n"


@pytest.fixture
async def bot(make_bot: Any, tmp_path: Path) -> Any:
    made = await make_bot()
    await add_users(made)
    sessions = made.app[SESSIONS]
    await import_plan_file(sessions, made.settings, SEEDS / "zhangjiajie-2018.csv")
    evil = tmp_path / "evil.csv"
    evil.write_text(
        HEADER + f"zhangjiajie,2019,人次,{EVIL_UNIT},,3,{EVIL_CATEGORY},5,scheduled,\n",
        encoding="utf-8",
    )
    await import_plan_file(sessions, made.settings, evil)
    async with sessions() as s:
        cili = await s.scalar(select(Unit).where(Unit.name == "慈利县"))
        assert cili is not None
        s.add(
            Liaison(
                jurisdiction="zhangjiajie",
                unit_id=cili.id,
                name="欧阳娜娜",
                phone_last4="5678",
                phone_hash="x" * 64,
            )
        )
        await s.commit()
    return made


async def unit_id(bot: Any, name: str) -> int:
    async with bot.app[SESSIONS]() as s:
        found = await s.scalar(select(Unit.id).where(Unit.name == name))
    assert found is not None, name
    return found


async def count(bot: Any, what: Any, *where: Any) -> int:
    async with bot.app[SESSIONS]() as s:
        return await s.scalar(select(func.count()).select_from(what).where(*where)) or 0


async def audits(bot: Any, action: str) -> list[AuditEntry]:
    async with bot.app[SESSIONS]() as s:
        return list(await s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


async def invite(staff: Staff, name: str, bot: Any) -> tuple[int, str, str]:
    status, html = await staff.post(
        "/console/j/zhangjiajie/liaisons/invite", {"unit": str(await unit_id(bot, name))}
    )
    found = CODE.search(html)
    return status, html, found.group(1) if found else ""


async def test_a_code_is_shown_once_never_stored_and_binds_through_the_chat(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    status, html = await staff.get("/console/j/zhangjiajie/liaisons")
    assert status == 200 and "慈利县" in html
    assert '<strong class="bound-count">0</strong>' in html

    resp = await staff.client.post(
        "/console/j/zhangjiajie/liaisons/invite",
        data={"_csrf": staff.csrf, "unit": str(await unit_id(bot, "慈利县"))},
    )
    html = await resp.text()
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    found = CODE.search(html)
    assert found, html
    code = found.group(1)
    assert "「慈利县」联络员邀请码" in html and f"绑定 {code}" in html

    async with bot.app[SESSIONS]() as s:
        (stored,) = list(await s.scalars(select(Invite)))
        dumped = [str(r) for r in (await s.execute(text("SELECT * FROM invites"))).all()]
        dumped += [str(r) for r in (await s.execute(text("SELECT * FROM audit_log"))).all()]
    assert stored.code_hash != code and not any(code in row for row in dumped)
    assert stored.created_by == "console:zjj_office"
    (entry,) = await audits(bot, "invite.create")
    assert entry.actor == "console:zjj_office" and entry.detail["unit"] == "慈利县"

    _, listing = await staff.get("/console/j/zhangjiajie/liaisons")
    assert code not in listing  # only ever on the page that made it

    reply = await bot.say("zhangjiajie", f"绑定 {code} 5678", openid="o_cili")
    assert reply is not None and "绑定成功" in reply, reply
    _, listing = await staff.get("/console/j/zhangjiajie/liaisons?show=bound")
    assert '<strong class="bound-count">1</strong>' in listing
    assert "欧**娜" in listing and "欧阳娜娜" not in listing  # masked
    assert "市财政局" not in listing  # only the bound units
    _, unbound = await staff.get("/console/j/zhangjiajie/liaisons?show=unbound")
    assert "<td>慈利县</td>" not in unbound and "<td>永定区</td>" in unbound


async def test_a_printable_sheet_gives_every_unit_of_a_category_a_working_code(
    bot: Any,
) -> None:
    staff = await login(bot.client, "zjj_office")
    async with bot.app[SESSIONS]() as s:
        colleges = set(
            await s.scalars(
                select(Unit.name).where(Unit.category == "高校", Unit.is_group.is_(False))
            )
        )
    assert len(colleges) >= 3
    resp = await staff.client.post(
        "/console/j/zhangjiajie/liaisons/sheet",
        data={"_csrf": staff.csrf, "category": "高校", "ttl": "14d"},
    )
    html = await resp.text()
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    rows = SHEET_ROW.findall(html)
    assert {name for name, _ in rows} == colleges
    assert len({code for _, code in rows}) == len(rows)  # a fresh code each
    assert await count(bot, Invite) == len(colleges)
    (sheet,) = await audits(bot, "invite.sheet")
    assert sheet.actor == "console:zjj_office" and sheet.detail["units"] == len(colleges)
    assert len(await audits(bot, "invite.create")) == len(colleges)

    async with bot.app[SESSIONS]() as s:
        for i, (name, code) in enumerate(rows):
            result = await redeem(
                s,
                bot.app[STORAGE],
                bot.settings,
                jurisdiction="zhangjiajie",
                openid=f"o_college_{i}",
                code=code,
                phone_last4="",
                now=bot.clock.now(),
            )
            assert (result.status, result.unit_name) == ("ok", name)
        await s.commit()
    assert await count(bot, Binding, Binding.role == "liaison") == len(colleges)

    status, html = await staff.post("/console/j/zhangjiajie/liaisons/sheet", {"category": "无此类"})
    assert status == 404 and "没有单位" in html
    status, html = await staff.post(
        "/console/j/zhangjiajie/liaisons/sheet", {"category": "高校", "ttl": "forever"}
    )
    assert status == 400 and "有效期" in html
    assert await count(bot, Invite) == len(colleges)  # refused requests made no codes


async def test_revoking_asks_first_then_removes_the_binding(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    _, _, code = await invite(staff, "慈利县", bot)
    assert "绑定成功" in (await bot.say("zhangjiajie", f"绑定 {code} 5678", openid="o_x") or "")
    async with bot.app[SESSIONS]() as s:
        binding = await s.scalar(select(Binding.id).where(Binding.openid == "o_x"))
    assert binding is not None
    path = f"/console/j/zhangjiajie/liaisons/revoke/{binding}"

    _, listing = await staff.get("/console/j/zhangjiajie/liaisons")
    assert f'href="{path}"' in listing
    status, ask = await staff.get(path)
    assert status == 200 and "确定要解除「慈利县」联络员 欧**娜 的绑定吗" in ask
    status, ask = await staff.post(path)  # no confirmation: asks again, changes nothing
    assert status == 200 and "确认解除绑定" in ask
    assert await count(bot, Binding, Binding.id == binding) == 1

    status, html = await staff.post(path, {"confirm": "yes"})
    assert status == 200 and "已解除「慈利县」联络员 欧**娜 的绑定" in html
    assert await count(bot, Binding, Binding.id == binding) == 0
    (entry,) = await audits(bot, "binding.revoke")
    assert entry.actor == "console:zjj_office" and entry.detail["unit"] == "慈利县"
    reply = await bot.say("zhangjiajie", "这个月还差多少", openid="o_x")
    assert reply is not None and "绑定 邀请码" in reply  # the chat forgot them at once
    assert (await staff.get(path))[0] == 404
    assert (await staff.post(path, {"confirm": "yes"}))[0] == 404
    assert (await staff.get("/console/j/zhangjiajie/liaisons/revoke/../1"))[0] in (403, 404)


async def test_missing_or_forged_csrf_changes_nothing(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    unit = str(await unit_id(bot, "慈利县"))
    for token in (None, "x" * 43):
        data = {"unit": unit} if token is None else {"unit": unit, "_csrf": token}
        resp = await staff.client.post("/console/j/zhangjiajie/liaisons/invite", data=data)
        assert resp.status == 403 and "安全令牌" in await resp.text()
        data = {"category": "高校"} if token is None else {"category": "高校", "_csrf": token}
        resp = await staff.client.post("/console/j/zhangjiajie/liaisons/sheet", data=data)
        assert resp.status == 403
    assert await count(bot, Invite) == 0

    _, _, code = await invite(staff, "慈利县", bot)
    await bot.say("zhangjiajie", f"绑定 {code}", openid="o_y")
    async with bot.app[SESSIONS]() as s:
        binding = await s.scalar(select(Binding.id).where(Binding.openid == "o_y"))
    resp = await staff.client.post(
        f"/console/j/zhangjiajie/liaisons/revoke/{binding}",
        data={"confirm": "yes", "_csrf": "forged"},
    )
    assert resp.status == 403
    assert await count(bot, Binding, Binding.id == binding) == 1


async def test_an_office_user_cannot_reach_another_jurisdiction(bot: Any) -> None:
    zjj = await login(bot.client, "zjj_office")
    _, _, code = await invite(zjj, "慈利县", bot)
    await bot.say("zhangjiajie", f"绑定 {code}", openid="o_z")
    async with bot.app[SESSIONS]() as s:
        binding = await s.scalar(select(Binding.id).where(Binding.openid == "o_z"))
    assert (await zjj.post("/console/logout"))[0] == 302

    rugao = await login(bot.client, "rugao_office")
    status, html = await rugao.get("/console/j/zhangjiajie/liaisons")
    assert status == 403 and "本辖区" in html
    unit = str(await unit_id(bot, "永定区"))
    assert (await rugao.post("/console/j/zhangjiajie/liaisons/invite", {"unit": unit}))[0] == 403
    assert (await rugao.post("/console/j/zhangjiajie/liaisons/sheet", {"category": "高校"}))[
        0
    ] == 403
    path = f"/liaisons/revoke/{binding}"
    assert (await rugao.post(f"/console/j/zhangjiajie{path}", {"confirm": "yes"}))[0] == 403
    # through their own jurisdiction's URL: another jurisdiction's unit or binding is not there
    assert (await rugao.post(f"/console/j/rugao{path}", {"confirm": "yes"}))[0] == 404
    status, _ = await rugao.post("/console/j/rugao/liaisons/invite", {"unit": unit})
    assert status == 404
    assert await count(bot, Invite) == 1 and await count(bot, Binding) == 1


async def test_html_in_unit_and_category_names_is_escaped_on_every_liaisons_page(
    bot: Any,
) -> None:
    staff = await login(bot.client, "zjj_office")
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;局"

    def clean(html: str) -> None:
        assert "<script>alert(1)" not in html and "<b>类</b>" not in html

    _, listing = await staff.get("/console/j/zhangjiajie/liaisons")
    clean(listing)
    assert escaped in listing and "&lt;b&gt;类&lt;/b&gt;" in listing
    _, filtered = await staff.get(
        "/console/j/zhangjiajie/liaisons", params={"category": EVIL_CATEGORY}
    )
    clean(filtered)
    assert escaped in filtered
    status, page, code = await invite(staff, EVIL_UNIT, bot)
    assert status == 200 and code
    clean(page)
    assert escaped in page
    status, sheet = await staff.post(
        "/console/j/zhangjiajie/liaisons/sheet", {"category": EVIL_CATEGORY}
    )
    assert status == 200
    clean(sheet)
    assert escaped in sheet
    await bot.say("zhangjiajie", f"绑定 {code}", openid="o_evil")
    async with bot.app[SESSIONS]() as s:
        binding = await s.scalar(select(Binding.id).where(Binding.openid == "o_evil"))
    _, ask = await staff.get(f"/console/j/zhangjiajie/liaisons/revoke/{binding}")
    clean(ask)
    assert escaped in ask
    status, done = await staff.post(
        f"/console/j/zhangjiajie/liaisons/revoke/{binding}", {"confirm": "yes"}
    )
    assert status == 200
    clean(done)
    _, audit_page = await staff.get("/console/j/zhangjiajie/audit")
    clean(audit_page)


def test_the_sheet_prints_without_the_console_around_it() -> None:
    css = (Path(__file__).resolve().parents[1] / "bot/console/static/console.css").read_text()
    printed = css.split("/* imports & liaisons */", 1)[1].split("@media print", 1)[1]
    assert "header.top" in printed and ".noprint" in printed and "sheet-codes" in printed
