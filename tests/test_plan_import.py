"""`plan import`: the five seed plans round-trip exactly, re-imports change nothing, a dry run
writes nothing, a changed file says what changed, and bad files are refused with every problem
listed (file, Excel row, column). Each database test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import main
from bot.imports import ImportFailed, import_plan_file
from bot.settings import Settings
from models.db import create_engine, session_factory
from models.people import AuditEntry
from models.plans import JurisdictionRow, Plan, PlanLine, Unit

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed_plans"
ZJJ = SEEDS / "zhangjiajie-2018.csv"
HEADER = "jurisdiction,year,measure,unit,parent,months,category,target,kind,note\n"
Sessions = async_sessionmaker[AsyncSession]

# data/seed_plans/README.md: lines by kind per plan (jurisdiction, year, measure)
SEED_LINES = {
    "zhangjiajie-2018.csv": {
        ("zhangjiajie", 2018, "人次"): {"annual": 14},
        ("zhangjiajie", 2018, "人"): {"scheduled": 186, "group": 12, "emergency": 8},
    },
    "yuxi-2018.csv": {},
    "luquan-2016.csv": {("luquan", 2016, "人"): {"share": 7}},
    "rugao-2020.csv": {("rugao", 2020, "人"): {"scheduled": 82, "annual": 2}},
    "qingpu-2021.csv": {("qingpu", 2021, "人份"): {"annual": 67, "scheduled": 17}},
}


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(settings.database_url)
    yield session_factory(engine)
    await engine.dispose()


async def lines_by_kind(sessions: Sessions) -> dict[tuple[str, int, str], dict[str, int]]:
    async with sessions() as s:
        rows = await s.execute(
            select(Plan.jurisdiction, Plan.year, Plan.measure, PlanLine.kind, func.count())
            .join(PlanLine, PlanLine.plan_id == Plan.id)
            .where(Plan.is_demo.is_(False))
            .group_by(Plan.jurisdiction, Plan.year, Plan.measure, PlanLine.kind)
        )
    out: dict[tuple[str, int, str], dict[str, int]] = {}
    for j, y, m, kind, n in rows:
        out.setdefault((j, y, m), {})[kind] = n
    return out


async def table_counts(sessions: Sessions) -> dict[str, int]:
    async with sessions() as s:
        return {
            model.__tablename__: await s.scalar(select(func.count()).select_from(model)) or 0
            for model in (JurisdictionRow, Unit, Plan, PlanLine, AuditEntry)
        }


@pytest.mark.parametrize("seed", sorted(SEED_LINES))
async def test_each_seed_round_trips_with_the_readmes_line_counts(
    seed: str, settings: Settings, sessions: Sessions
) -> None:
    report = await import_plan_file(sessions, settings, SEEDS / seed)

    expected = SEED_LINES[seed]
    assert {(p.jurisdiction, p.year, p.measure): p.kinds for p in report.plans} == expected
    assert await lines_by_kind(sessions) == expected
    assert all(p.created for p in report.plans)
    async with sessions() as s:  # the jurisdiction comes from the account file (玉溪 has no rows)
        code = seed.split("-")[0]
        row = await s.get(JurisdictionRow, code)
        assert row is not None and row.name == settings.jurisdiction(code).name


async def test_reimporting_the_same_file_changes_nothing_and_says_so(
    settings: Settings, sessions: Sessions
) -> None:
    await import_plan_file(sessions, settings, ZJJ)
    before = await table_counts(sessions)

    again = await import_plan_file(sessions, settings, ZJJ)

    assert not again.changed
    assert [(p.unchanged, p.added, p.removed, p.changed) for p in again.plans] == [
        (14, [], [], []),
        (206, [], [], []),
    ]
    after = await table_counts(sessions)
    assert after == {**before, "audit_log": before["audit_log"] + 1}  # the import is audited


async def test_dry_run_reports_the_same_changes_and_writes_nothing(
    settings: Settings, sessions: Sessions
) -> None:
    dry = await import_plan_file(sessions, settings, ZJJ, dry_run=True)

    assert dry.changed and dry.jurisdictions_created == ["zhangjiajie"]
    assert [sum(p.kinds.values()) for p in dry.plans] == [14, 206]
    assert set((await table_counts(sessions)).values()) == {0}
    real = await import_plan_file(sessions, settings, ZJJ)
    assert len(real.units.created) == len(dry.units.created) == 195


async def test_a_changed_file_replaces_that_plans_lines_and_lists_the_changes(
    settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    await import_plan_file(sessions, settings, ZJJ)
    text = ZJJ.read_text(encoding="utf-8")
    text = text.replace(
        "市财政局及二级机构,政务综合部门（11个）,4,市直及驻张,19,",
        "市财政局及二级机构,政务综合部门（11个）,4,市直及驻张,21,",
    )
    text = text.replace("zhangjiajie,2018,人,市飞虎出租汽车有限公司,,12,企业,2,scheduled,\n", "")
    text += "zhangjiajie,2018,人,市新能源公交公司,,12,企业,6,scheduled,新增\n"
    changed = tmp_path / "zhangjiajie-2018.csv"
    changed.write_text(text, encoding="utf-8")

    report = await import_plan_file(sessions, settings, changed)

    annual, monthly = report.plans
    assert not annual.has_changes and annual.unchanged == 14
    assert [str(v) for v in monthly.added] == ["市新能源公交公司 12月 分月 6"]
    assert [str(v) for v in monthly.removed] == ["市飞虎出租汽车有限公司 12月 分月 2"]
    assert [(old.target, str(new)) for old, new in monthly.changed] == [
        ("19", "市财政局及二级机构 4月 分月 21")
    ]
    assert monthly.unchanged == 204
    assert report.units.created == ["市新能源公交公司"]
    assert await lines_by_kind(sessions) == {
        ("zhangjiajie", 2018, "人次"): {"annual": 14},
        ("zhangjiajie", 2018, "人"): {"scheduled": 186, "group": 12, "emergency": 8},
    }


async def test_group_headings_are_groups_with_their_members_as_children(
    settings: Settings, sessions: Sessions
) -> None:
    await import_plan_file(sessions, settings, ZJJ)

    async with sessions() as s:
        units = {u.name: u for u in await s.scalars(select(Unit))}
    groups = sorted(n for n, u in units.items() if u.is_group)
    assert len(groups) == 12 and "驻张部队（4个）" in groups and "市属公司" in groups
    army = units["驻张部队（4个）"].id
    assert sorted(n for n, u in units.items() if u.parent_id == army) == [
        "市委警卫处",
        "市武警支队",
        "张家界军分区",
        "张家界边防检查站",
    ]
    # 「其中」 children hang under their parent, the parent under its group
    assert units["市高级技工学校"].parent_id == units["市人力资源社会保障局及二级机构"].id
    assert units["市人力资源社会保障局及二级机构"].parent_id == units["政务综合部门（11个）"].id
    assert units["永定区"].parent_id == units["区县(含区县直单位、街道及乡镇直单位)"].id
    assert units["张家界航院"].category == "高校"


async def test_a_demo_copy_is_re_dated_and_kept_apart(
    settings: Settings, sessions: Sessions
) -> None:
    await import_plan_file(sessions, settings, SEEDS / "rugao-2020.csv")
    demo = await import_plan_file(
        sessions, settings, SEEDS / "rugao-2020.csv", year_override=2026, demo=True, actor="demo"
    )

    assert [(p.year, p.is_demo, p.created) for p in demo.plans] == [(2026, True, True)]
    async with sessions() as s:
        plans = (await s.execute(select(Plan.year, Plan.is_demo).order_by(Plan.year))).all()
        units = await s.scalar(select(func.count()).select_from(Unit))
    assert [tuple(p) for p in plans] == [(2020, False), (2026, True)]
    assert units == 84  # the copy shares the units


async def test_the_import_is_audited_with_its_counts(
    settings: Settings, sessions: Sessions
) -> None:
    await import_plan_file(sessions, settings, SEEDS / "qingpu-2021.csv", actor="张科长")

    async with sessions() as s:
        entry = await s.scalar(select(AuditEntry))
    assert entry is not None
    assert (entry.actor, entry.action, entry.jurisdiction) == ("张科长", "plan.import", "qingpu")
    assert entry.detail["added"] == 84 and entry.detail["checks"] == {
        "PASS": 6,
        "FAIL": 10,
        "INFO": 2,
    }


def write(tmp_path: Path, text: str, name: str = "plan.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


async def failure(sessions: Sessions, settings: Settings, path: Path) -> list[str]:
    with pytest.raises(ImportFailed) as caught:
        await import_plan_file(sessions, settings, path)
    assert set((await table_counts(sessions)).values()) == {0}, "nothing may be written"
    return [str(issue) for issue in caught.value.issues]


async def test_every_bad_row_is_reported_at_once_with_row_and_column(
    settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "辖区,年度,计量,单位,上级,月份,类别,计划数,类型,备注\n"
        "rugao,2020,人,组织部,,1,,7,scheduled,\n"
        "rugao,2020,人,宣传部,,13,,5,scheduled,\n"
        "rugao,2020,人,统战部,,十三月,,5,scheduled,\n"
        "rugao,2020,人,政法委,,1,,-3,scheduled,\n"
        "rugao,2020,人,搬经镇,,1,,约四百,scheduled,\n"
        "rugao,2020,人,九华镇,,全年,,120%,share,\n"
        "rugao,2020,人,组织部,,1,,8,scheduled,\n"
        "rugao,2020,人,总工会,,2,,,scheduled,\n"
        "rugao,2020,人,科技局,,2,,30%,scheduled,\n"
        "rugao,2020,人,商务局,,2,,5,monthly,\n"
        "guangzhou,2020,人,商务局,,2,,5,scheduled,\n"
        "rugao,2020,人,审计局,统计局,2,,6,scheduled,\n",
    )

    assert await failure(sessions, settings, path) == [
        "plan.csv 第3行「月份」列：月份「13」超出范围：没有 13 月（只能是 1 到 12）",
        "plan.csv 第4行「月份」列：月份「十三月」超出范围：没有 13 月（只能是 1 到 12）",
        "plan.csv 第5行「计划数」列：计划数「-3」不能小于 0",
        "plan.csv 第6行「计划数」列：计划数「约四百」不是整数",
        "plan.csv 第7行「计划数」列：比例「120%」超出范围：须大于 0% 且不超过 100%",
        "plan.csv 第9行「计划数」列：计划数为空：只有 emergency（应急献血）和 group（分组标题）"
        "行可以不写（此行类型为 scheduled）",
        "plan.csv 第10行「计划数」列：百分比只能用于类型 share（此行类型为 scheduled）",
        "plan.csv 第11行「类型」列：类型「monthly」无法识别；"
        "可用：scheduled、annual、emergency、share、group",
        "plan.csv 第12行「辖区」列：辖区「guangzhou」不在账号配置文件中；"
        "已配置的辖区：luquan、qingpu、rugao、yuxi、zhangjiajie",
        "plan.csv 第8行「单位」列：与第2行重复：同一计划中「组织部」已有 scheduled 行，月份相同；"
        "如为不同基数的比例目标，请把基数写进单位名，如「各乡镇（城乡居民）」",
        "plan.csv 第13行「上级」列：上级单位「统计局」在本文件中没有对应的行",
    ]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "jurisdiction,year,measure,unit,months,target,kind,remark\n",
            "plan.csv 第1行「remark」列：未知的列；计划文件可用的列：jurisdiction（辖区）",
        ),
        (
            "jurisdiction,year,measure,unit,target,kind\n",
            "plan.csv 第1行：缺少必需的列 months（或写作 月份、安排月份）",
        ),
        (
            "单位,unit,jurisdiction,year,measure,months,target,kind\n",
            "plan.csv 第1行「unit」列：与「单位」是同一列（unit），重复",
        ),
    ],
)
async def test_header_problems_are_named(
    header: str, message: str, settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    problems = await failure(
        sessions, settings, write(tmp_path, header + "rugao,2020,人,x,1,1,scheduled,\n")
    )
    assert problems[0].startswith(message)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf"])
async def test_an_empty_file_is_refused(
    content: bytes, settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    path = tmp_path / "plan.csv"
    path.write_bytes(content)
    assert await failure(sessions, settings, path) == ["plan.csv：文件是空的（没有表头行）"]


RUGAO_TWO = (
    HEADER
    + "rugao,2020,人,组织部,,1,,7,scheduled,\nrugao,2020,人,如城街道,,2,街道,640,scheduled,\n"
)


@pytest.mark.parametrize(
    ("encoding", "prefix"),
    [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("gbk", b""), ("gb18030", b""), ("utf-16", b"")],
)
async def test_bom_gbk_and_utf16_files_import_like_utf8(
    encoding: str, prefix: bytes, settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    text = RUGAO_TWO.replace("scheduled,\n", "scheduled,备注：（全年）\n")
    path = tmp_path / "plan.csv"
    path.write_bytes(prefix + text.encode(encoding))

    report = await import_plan_file(sessions, settings, path)

    assert report.units.created == ["组织部", "如城街道"]
    async with sessions() as s:
        notes = set(await s.scalars(select(PlanLine.note)))
    assert notes == {"备注：（全年）"}


def xlsx(path: Path, rows: list[list[object]], merge: str | None = None) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    if merge:
        sheet.merge_cells(merge)
    book.save(path)
    return path


async def test_an_xlsx_plan_with_chinese_headers_and_typed_cells_imports(
    settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    path = xlsx(
        tmp_path / "如皋.xlsx",
        [
            ["辖区", "年度", "计量", "单位", "月份", "计划数", "类型"],
            ["rugao", 2020, "人", "公安局", 3, 125, "scheduled"],
            ["rugao", 2020.0, "人", "卫健系统", "全年", 600.0, "annual"],
            [None, None, None, None, None, None, None],
        ],
    )
    report = await import_plan_file(sessions, settings, path)
    assert report.plans[0].kinds == {"scheduled": 1, "annual": 1}


async def test_xlsx_merged_header_cells_are_refused_naming_the_cells(
    settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    path = xlsx(
        tmp_path / "plan.xlsx",
        [
            ["辖区", "年度", "计量", "单位", None, "月份", "计划数", "类型"],
            ["rugao", 2020, "人", "公安局", None, 3, 125, "scheduled"],
        ],
        merge="D1:E1",
    )
    assert await failure(sessions, settings, path) == [
        "plan.xlsx：表头有合并单元格 D1:E1：请取消合并，每列一个表头"
    ]


def test_cli_plan_import_prints_the_report_and_exits_0(settings: Settings) -> None:
    result = CliRunner().invoke(main, ["plan", "import", str(SEEDS / "zhangjiajie-2018.csv")])

    assert result.exit_code == 0, result.output
    assert "zhangjiajie 2018 年 人：新计划，206 行（分月 186、分组 12、应急 8）" in result.output
    assert "对账（zhangjiajie-2018.checks.json）：PASS 43，FAIL 1，INFO 2" in result.output
    assert "FAIL 类别「市直及驻张」分月合计：文件合计 1186，明细合计 1162，差 24" in result.output
    assert result.output.rstrip().endswith("已导入。")

    again = CliRunner().invoke(main, ["plan", "import", str(SEEDS / "zhangjiajie-2018.csv")])
    assert again.exit_code == 0
    assert "与数据库中已有内容相同，未做任何改动。" in again.output


def test_cli_dry_run_says_it_wrote_nothing(settings: Settings) -> None:
    args = ["plan", "import", "--dry-run", str(SEEDS / "rugao-2020.csv")]
    result = CliRunner().invoke(main, args)

    assert result.exit_code == 0, result.output
    assert "rugao 2020 年 人：新计划，84 行（分月 82、年度 2）" in result.output
    assert "试运行：以上是导入将做的改动，数据库未写入。" in result.output
    assert "rugao 2020 年 人：新计划" in CliRunner().invoke(main, args).output  # still new


def test_cli_bad_file_exits_1_with_every_error_and_no_traceback(
    settings: Settings, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        HEADER + "rugao,2020,人,组织部,,13,,7,scheduled,\nrugao,2020,人,宣传部,,1,,-5,scheduled,\n",
    )
    result = CliRunner().invoke(main, ["plan", "import", str(path)])

    assert result.exit_code == 1
    assert "发现 2 个错误，未导入任何数据" in result.output
    assert "第2行「months」列" in result.output and "第3行「target」列" in result.output
    assert "Traceback" not in result.output


def test_cli_unknown_jurisdiction_in_the_checks_file_is_an_error(
    settings: Settings, tmp_path: Path
) -> None:
    shutil.copy(SEEDS / "yuxi-2018.csv", tmp_path / "x.csv")
    (tmp_path / "x.checks.json").write_text(
        '{"jurisdiction": "mars", "checks": []}', encoding="utf-8"
    )
    result = CliRunner().invoke(main, ["plan", "import", str(tmp_path / "x.csv")])
    assert result.exit_code == 1
    assert "x.checks.json：辖区「mars」不在账号配置文件中" in result.output


def test_cli_without_a_database_exits_2_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("DONORBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    result = CliRunner().invoke(main, ["plan", "import", str(SEEDS / "rugao-2020.csv")])
    assert result.exit_code == 2
    assert "donorbot db upgrade" in result.output
    assert "Traceback" not in result.output


def test_counts_helper_sees_an_empty_database(settings: Settings) -> None:
    async def go() -> dict[str, int]:
        engine = create_engine(settings.database_url)
        try:
            return await table_counts(session_factory(engine))
        finally:
            await engine.dispose()

    assert set(asyncio.run(go()).values()) == {0}
