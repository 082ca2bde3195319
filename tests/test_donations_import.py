"""`donations import` and the review queue, on SQLite and PostgreSQL: identities only as keyed
hashes, re-imports never double-count, unmatched names kept for review (never guessed) and
credited once an alias says whose they are; bad rows refused all at once, nothing written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import main
from bot.clock import FixedClock
from bot.imports import ImportFailed, import_donation_file, import_donation_rows, import_plan_file
from bot.imports import donations as donations_module
from bot.privacy import keyed_hash
from bot.settings import Settings
from models.db import create_engine, session_factory
from models.donations import Donation, Donor
from models.people import AuditEntry
from models.plans import Unit

HERE = Path(__file__).resolve().parent
SEEDS = HERE.parent / "data" / "seed_plans"
FIXTURE = HERE / "data" / "imports" / "donations-zhangjiajie.csv"
HEADER = (
    "record_id,donated_at,donor_id,donor_name,blood_type,kind,volume_ml,therapeutic_units,"
    "unit,jurisdiction\n"
)
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[Sessions]:
    """The 张家界 seed plan is in: its units are what donations are credited to."""
    engine = create_engine(settings.database_url)
    factory = session_factory(engine)
    await import_plan_file(factory, settings, SEEDS / "zhangjiajie-2018.csv")
    yield factory
    await engine.dispose()


async def donation_units(sessions: Sessions) -> dict[str, tuple[str | None, str | None]]:
    """record_id → (credited unit name, raw name kept for review)."""
    async with sessions() as s:
        rows = await s.execute(
            select(Donation.record_id, Unit.name, Donation.unit_raw)
            .outerjoin(Unit, Unit.id == Donation.unit_id)
            .order_by(Donation.record_id)
        )
    return {rid: (unit, raw if unit is None else None) for rid, unit, raw in rows}


async def count(sessions: Sessions, model: type[Any]) -> int:
    async with sessions() as s:
        return await s.scalar(select(func.count()).select_from(model)) or 0


async def test_a_station_export_is_credited_by_the_one_resolver(
    settings: Settings, sessions: Sessions, clock: FixedClock
) -> None:
    report = await import_donation_file(sessions, settings, FIXTURE, clock=clock)

    assert (report.rows, report.inserted, report.already_present) == (9, 9, 0)
    assert await donation_units(sessions) == {
        "ZJ-0001": ("市财政局及二级机构", None),
        "ZJ-0002": ("市财政局及二级机构", None),  # 「财政局」, normalised
        "ZJ-0003": ("张家界航院", None),
        "ZJ-0004": (None, "吉首大学"),  # two colleges: kept for review, never a pick
        "ZJ-0005": (None, "张家界市火车站"),
        "ZJ-0006": (None, None),  # no unit given: nothing to review
        "ZJ-0007": (None, "吉大张家界校区"),
        "ZJ-0008": ("市教育局及二级机构", None),
        "ZJ-0009": (None, "吉大张家界校区"),
    }
    assert report.unmatched == {
        ("zhangjiajie", "吉首大学"): 1,
        ("zhangjiajie", "张家界市火车站"): 1,
        ("zhangjiajie", "吉大张家界校区"): 2,
    }


async def test_identities_are_stored_only_as_keyed_hashes(
    settings: Settings, sessions: Sessions, clock: FixedClock
) -> None:
    await import_donation_file(sessions, settings, FIXTURE, clock=clock)

    key = settings.id_hash_key.get_secret_value()
    async with sessions() as s:
        donors = {d.id_hash: d for d in await s.scalars(select(Donor))}
        dumped = [
            str(row)
            for table in ("donors", "donations")
            for row in (await s.execute(text(f"SELECT * FROM {table}"))).all()
        ]
    assert len(donors) == 8  # TEST-D-0001 gave twice
    zhang = donors[keyed_hash(key, "TEST-D-0001")]
    assert (zhang.name_masked, zhang.name_hash, zhang.blood_type) == (
        "张*",
        keyed_hash(key, "张三"),
        "A",
    )
    assert donors[keyed_hash(key, "TEST-D-0002")].blood_type == "O-"
    assert not any("TEST-D-" in row or "张三" in row or "李四" in row for row in dumped)


async def test_reimporting_never_double_counts_and_says_how_many_were_there(
    settings: Settings, sessions: Sessions, clock: FixedClock
) -> None:
    await import_donation_file(sessions, settings, FIXTURE, clock=clock)

    again = await import_donation_file(sessions, settings, FIXTURE, clock=clock)

    assert (again.rows, again.inserted, again.already_present) == (9, 0, 9)
    assert await count(sessions, Donation) == 9
    assert await count(sessions, Donor) == 8


async def test_dry_run_gives_the_exact_numbers_and_writes_nothing(
    settings: Settings, sessions: Sessions, clock: FixedClock
) -> None:
    audits = await count(sessions, AuditEntry)
    dry = await import_donation_file(sessions, settings, FIXTURE, dry_run=True, clock=clock)

    assert (dry.rows, dry.inserted, dry.unmatched_rows) == (9, 9, 4)
    assert await count(sessions, Donation) == 0
    assert await count(sessions, Donor) == 0
    assert await count(sessions, AuditEntry) == audits


def write(tmp_path: Path, body: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "donations.csv"
    path.write_bytes((HEADER + body).encode(encoding))
    return path


async def test_every_bad_row_is_listed_and_nothing_is_imported(
    settings: Settings,
    sessions: Sessions,
    clock: FixedClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(donations_module, "BATCH", 2)  # errors after a batch was already written
    path = write(
        tmp_path,
        "R1,2025-03-01,D1,张三,A,全血,400,,市财政局及二级机构,zhangjiajie\n"
        "R2,2025-03-01,D2,李四,A,全血,400,,市财政局及二级机构,zhangjiajie\n"
        "R3,2025-03-01,D3,王五,A,全血,400,,市财政局及二级机构,zhangjiajie\n"
        "R4,2026-03-16,D4,赵六,A,全血,400,,,zhangjiajie\n"
        "R5,2025-03-01,D5,孙七,A,全血,0,,,zhangjiajie\n"
        "R6,2025-03-01,D6,周八,A,全血,900,,,zhangjiajie\n"
        "R7,2025-03-01,D7,吴九,A,血浆,400,,,zhangjiajie\n"
        "R8,2025-02-30,D8,郑十,A,全血,400,,,zhangjiajie\n"
        "R9,yesterday,D9,钱一,A,全血,400,,,zhangjiajie\n"
        "R10,2025-03-01,D10,陈二,A,机采血小板,,3,,zhangjiajie\n"
        "R11,2025-03-01,D11,褚三,Q,全血,400,,,zhangjiajie\n"
        "R12,2025-03-01,,卫四,A,全血,400,,,zhangjiajie\n"
        "R13,2025-03-01,D13,蒋五,A,全血,400,,,beijing\n"
        "R14,2025-03-01,D14,沈六,A,全血,400,1,,zhangjiajie\n",
    )
    with pytest.raises(ImportFailed) as caught:
        await import_donation_file(sessions, settings, path, clock=clock)

    assert [str(i) for i in caught.value.issues] == [
        "donations.csv 第5行「donated_at」列：献血日期 2026-03-16 晚于今天（2026-03-15）",
        "donations.csv 第6行「volume_ml」列：全血献血量只能是 200、300 或 400 毫升（此行 0）",
        "donations.csv 第7行「volume_ml」列：全血献血量只能是 200、300 或 400 毫升（此行 900）",
        "donations.csv 第8行「kind」列：献血类型「血浆」无法识别；"
        "可用：whole_blood（全血）、platelets（机采血小板）",
        "donations.csv 第9行「donated_at」列：日期「2025-02-30」无法识别；请写成 2020-03-05",
        "donations.csv 第10行「donated_at」列：日期「yesterday」无法识别；请写成 2020-03-05",
        "donations.csv 第11行「therapeutic_units」列：机采血小板的治疗量应为 1、1.5 或 2（此行 3）",
        "donations.csv 第12行「blood_type」列：血型「Q」无法识别；"
        "可用 A、B、O、AB（Rh 阴性加 -，如 O-）",
        "donations.csv 第13行「donor_id」列：献血者编号不能为空",
        "donations.csv 第14行「jurisdiction」列：辖区「beijing」不在账号配置文件中；"
        "已配置的辖区：luquan、qingpu、rugao、yuxi、zhangjiajie",
        "donations.csv 第15行「therapeutic_units」列：全血不填治疗量（治疗量只用于机采血小板）",
    ]
    assert await count(sessions, Donation) == 0
    assert await count(sessions, Donor) == 0


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (HEADER.replace("blood_type", "rh_factor"), "第1行「rh_factor」列：未知的列"),
        (
            HEADER.replace("donated_at,", ""),
            "第1行：缺少必需的列 donated_at（或写作 献血日期、日期）",
        ),
    ],
)
async def test_header_problems_stop_the_import(
    header: str, message: str, settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    path = tmp_path / "donations.csv"
    path.write_text(header + "R1\n", encoding="utf-8")
    with pytest.raises(ImportFailed, match=message):
        await import_donation_file(sessions, settings, path)


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig"])
async def test_gbk_and_bom_exports_import(
    encoding: str, settings: Settings, sessions: Sessions, clock: FixedClock, tmp_path: Path
) -> None:
    path = write(tmp_path, "R1,2025-03-01,D1,张三,A型,全血,400,,市财政局,zhangjiajie\n", encoding)
    report = await import_donation_file(sessions, settings, path, clock=clock)
    assert report.inserted == 1
    assert await donation_units(sessions) == {"R1": ("市财政局及二级机构", None)}


async def test_an_xlsx_export_with_date_cells_imports(
    settings: Settings, sessions: Sessions, clock: FixedClock, tmp_path: Path
) -> None:
    from datetime import datetime

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(
        [
            "记录号",
            "献血日期",
            "身份证号",
            "姓名",
            "献血类型",
            "献血量(ml)",
            "治疗量",
            "单位",
            "辖区",
        ]
    )
    sheet.append(
        [
            "X1",
            datetime(2025, 3, 1, 9, 30),
            "TEST-D-9",
            "欧阳娜娜",
            "全血",
            400,
            None,
            "张家界航院",
            "zhangjiajie",
        ]
    )
    sheet.append(
        [
            "X2",
            datetime(2025, 3, 2),
            "TEST-D-9",
            "欧阳娜娜",
            "机采血小板",
            None,
            None,
            "张家界航院",
            "zhangjiajie",
        ]
    )
    book.save(tmp_path / "export.xlsx")

    with pytest.raises(ImportFailed) as caught:
        await import_donation_file(sessions, settings, tmp_path / "export.xlsx", clock=clock)
    assert [str(i) for i in caught.value.issues] == [
        "export.xlsx 第3行「治疗量」列：机采血小板的治疗量应为 1、1.5 或 2（此行 空）"
    ]

    sheet["G3"] = 2
    book.save(tmp_path / "export.xlsx")
    report = await import_donation_file(sessions, settings, tmp_path / "export.xlsx", clock=clock)
    assert (report.inserted, await count(sessions, Donor)) == (2, 1)
    async with sessions() as s:
        dates = sorted(await s.scalars(select(Donation.donated_at)))
    assert dates == [date(2025, 3, 1), date(2025, 3, 2)]


async def test_synthetic_rows_stream_from_a_generator_in_batches(
    settings: Settings, sessions: Sessions, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(donations_module, "BATCH", 100)
    consumed: list[int] = []

    def rows() -> Iterator[dict[str, Any]]:
        for n in range(1050):
            consumed.append(n)
            yield {
                "record_id": f"SYN-{n}",
                "donated_at": date(2025, 1 + n % 12, 1),
                "donor_id": f"SYN-DONOR-{n % 300}",
                "donor_name": "",
                "blood_type": "O",
                "kind": "whole_blood",
                "volume_ml": 200 * (1 + n % 2),
                "therapeutic_units": None,
                "unit": "市公安局及二级机构",
                "jurisdiction": "zhangjiajie",
            }

    class Bar:
        def __init__(self) -> None:
            self.calls: list[tuple[int, int]] = []

        def start(self, total: int | None) -> None:
            assert total is None

        def advance(self, n: int) -> None:
            self.calls.append((n, len(consumed)))

    bar = Bar()
    report = await import_donation_rows(sessions, settings, rows(), clock=clock, progress=bar)

    assert (report.rows, report.inserted) == (1050, 1050)
    # lazily consumed: the bar moved after each 100 rows, while later rows were still unread
    assert bar.calls[0] == (100, 100) and bar.calls[-1] == (50, 1050)
    async with sessions() as s:
        marked = await s.scalar(select(func.count()).where(Donation.synthetic.is_(True)))
    assert marked == 1050


async def test_units_alias_add_credits_the_queue_and_later_imports(
    settings: Settings, sessions: Sessions, clock: FixedClock, tmp_path: Path
) -> None:
    await import_donation_file(sessions, settings, FIXTURE, clock=clock)

    queue = await asyncio.to_thread(
        CliRunner().invoke, main, ["units", "unmatched", "--jurisdiction", "zhangjiajie"]
    )
    assert queue.exit_code == 0, queue.output
    assert "zhangjiajie：4 条献血记录的单位未匹配，共 3 个名称" in queue.output
    assert "「吉大张家界校区」 2 条 — 建议：吉首大学张家界校区" in queue.output
    assert "「吉首大学」 1 条 — 可能是：吉首大学张家界学院、吉首大学张家界校区" in queue.output

    args = [
        "units",
        "alias",
        "add",
        "-j",
        "zhangjiajie",
        "--alias",
        "吉大张家界校区",
        "--unit",
        "吉首大学张家界校区",
    ]
    added = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert added.exit_code == 0, added.output
    assert (
        "已添加别名「吉大张家界校区」→「吉首大学张家界校区」；计入待核对的献血记录 2 条。"
        in added.output
    )

    units = await donation_units(sessions)
    assert units["ZJ-0007"] == units["ZJ-0009"] == ("吉首大学张家界校区", None)
    later = write(
        tmp_path, "ZJ-0100,2025-07-01,TEST-D-0100,冯一,A,全血,200,,吉大张家界校区,zhangjiajie\n"
    )
    report = await import_donation_file(sessions, settings, later, clock=clock)
    assert report.unmatched == {}
    assert (await donation_units(sessions))["ZJ-0100"] == ("吉首大学张家界校区", None)


async def test_alias_to_an_ambiguous_unit_is_refused_with_the_choices(
    settings: Settings, sessions: Sessions
) -> None:
    args = ["units", "alias", "add", "-j", "zhangjiajie", "--alias", "吉首", "--unit", "吉首大学"]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 1
    assert (
        "单位「吉首大学」可能是：吉首大学张家界学院、吉首大学张家界校区；请写全称" in result.output
    )


async def test_rematch_credits_names_a_later_plan_import_made_known(
    settings: Settings, sessions: Sessions, clock: FixedClock, tmp_path: Path
) -> None:
    await import_donation_file(sessions, settings, FIXTURE, clock=clock)
    plan = tmp_path / "extra.csv"
    plan.write_text(
        "jurisdiction,year,measure,unit,months,target,kind\n"
        "zhangjiajie,2019,人,市火车站,3,12,scheduled\n",
        encoding="utf-8",
    )
    await import_plan_file(sessions, settings, plan)

    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["units", "rematch", "-j", "zhangjiajie"]
    )

    assert result.exit_code == 0, result.output
    assert "「张家界市火车站」→「市火车站」：1 条" in result.output
    assert (await donation_units(sessions))["ZJ-0005"] == ("市火车站", None)


def test_cli_donations_import_reports_and_exits(settings: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    assert (
        runner.invoke(main, ["plan", "import", str(SEEDS / "zhangjiajie-2018.csv")]).exit_code == 0
    )

    first = runner.invoke(main, ["donations", "import", str(FIXTURE)])
    assert first.exit_code == 0, first.output
    assert "新增献血记录 9 条" in first.output
    assert "单位未匹配 4 行（3 个名称），已保留待核对" in first.output
    second = runner.invoke(main, ["donations", "import", str(FIXTURE)])
    assert "已在库中（或文件内重复）9 条：按记录号跳过，未重复计数" in second.output
    assert "与数据库中已有内容相同，未做任何改动。" in second.output

    bad = write(tmp_path, "R1,2099-01-01,D1,张三,A,全血,400,,,zhangjiajie\n")
    failed = runner.invoke(main, ["donations", "import", str(bad)])
    assert failed.exit_code == 1
    assert "晚于今天" in failed.output and "Traceback" not in failed.output
