"""`liaisons import`: the 禄劝-shaped directory (synthetic people) on SQLite and PostgreSQL —
phones kept only as a keyed hash and last four digits, names never printed unmasked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import main
from bot.imports import ImportFailed, import_liaison_file, import_plan_file
from bot.imports.liaisons import phone_digits
from bot.imports.values import CellError
from bot.privacy import keyed_hash
from bot.settings import Settings
from models.db import create_engine, session_factory
from models.people import Liaison

HERE = Path(__file__).resolve().parent
SEEDS = HERE.parent / "data" / "seed_plans"
FIXTURE = HERE / "data" / "imports" / "liaisons-luquan.csv"
Sessions = async_sessionmaker[AsyncSession]
FULL_WIDTH = "13800000001".translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(settings.database_url)
    factory = session_factory(engine)
    await import_plan_file(factory, settings, SEEDS / "luquan-2016.csv")
    yield factory
    await engine.dispose()


async def liaisons(sessions: Sessions) -> list[Liaison]:
    async with sessions() as s:
        return list(await s.scalars(select(Liaison).order_by(Liaison.phone_last4)))


async def test_the_directory_imports_with_phones_only_hashed(
    settings: Settings, sessions: Sessions
) -> None:
    report = await import_liaison_file(sessions, settings, FIXTURE)

    assert report.added == [
        "屏山街道 张* 138****0001",
        "县级各部门 李* 087****0002",
        "省市驻禄单位 王* 138****0003",
    ]
    key = settings.id_hash_key.get_secret_value()
    stored = [
        (x.name, x.department, x.title, x.phone_last4, x.phone_hash)
        for x in await liaisons(sessions)
    ]
    assert stored == [
        ("张三", "综合科", "科长", "0001", keyed_hash(key, "13800000001")),
        ("李四", "办公室", "科员", "0002", keyed_hash(key, "087168000002")),
        ("王五", "医政医管科", "副科长", "0003", keyed_hash(key, "13800000003")),
    ]


async def test_reimport_changes_nothing_and_a_new_phone_updates(
    settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    await import_liaison_file(sessions, settings, FIXTURE)
    again = await import_liaison_file(sessions, settings, FIXTURE)
    assert (again.added, again.updated, again.unchanged) == ([], [], 3)

    changed = tmp_path / "liaisons.csv"
    changed.write_text(
        FIXTURE.read_text(encoding="utf-8").replace("13800000001", "13800000009"), encoding="utf-8"
    )
    report = await import_liaison_file(sessions, settings, changed)
    assert report.updated == ["屏山街道 张* 138****0009"]
    assert [x.phone_last4 for x in await liaisons(sessions)] == ["0002", "0003", "0009"]


async def test_dry_run_writes_nothing(settings: Settings, sessions: Sessions) -> None:
    report = await import_liaison_file(sessions, settings, FIXTURE, dry_run=True)
    assert len(report.added) == 3
    assert await liaisons(sessions) == []


async def test_unknown_units_bad_phones_and_duplicates_are_all_reported(
    settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    path = tmp_path / "联络员.csv"
    path.write_text(
        "辖区,单位,姓名,科室,职务,电话\n"
        "luquan,屏山街道,张三,综合科,科长,13800000001\n"
        "luquan,屏山街,李四,办公室,科员,13800000002\n"
        "luquan,县级各部门,王五,办公室,科员,12345\n"
        "luquan,屏山街道,张三,综合科,科长,13800000001\n"
        "luquan,,赵六,,,13800000004\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportFailed) as caught:
        await import_liaison_file(sessions, settings, path)

    assert [str(i) for i in caught.value.issues] == [
        "联络员.csv 第4行「电话」列：电话「12345」不像电话号码（应为 7–12 位数字）",
        "联络员.csv 第5行「姓名」列：与第2行重复（同一单位、同一姓名）",
        "联络员.csv 第6行「单位」列：单位不能为空",
    ]
    path.write_text(
        path.read_text(encoding="utf-8").splitlines()[0]
        + "\n"
        + "luquan,屏山街,李四,办公室,科员,13800000002\n",
        encoding="utf-8",
    )
    with pytest.raises(
        ImportFailed, match="第2行「单位」列：单位「屏山街」未找到；最接近：屏山街道"
    ):
        await import_liaison_file(sessions, settings, path)
    assert await liaisons(sessions) == []


@pytest.mark.parametrize(
    ("phone", "digits"),
    [
        ("13800000001", "13800000001"),
        ("+86 138-0000-0001", "13800000001"),
        ("0871-68000002", "087168000002"),
        (FULL_WIDTH, "13800000001"),
    ],
)
def test_phone_forms(phone: str, digits: str) -> None:
    assert phone_digits(phone) == digits


def test_not_a_phone() -> None:
    with pytest.raises(CellError):
        phone_digits("请找办公室")


def test_cli_never_prints_a_name_or_phone_in_clear(settings: Settings) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["plan", "import", str(SEEDS / "luquan-2016.csv")]).exit_code == 0

    result = runner.invoke(main, ["liaisons", "import", str(FIXTURE)])

    assert result.exit_code == 0, result.output
    assert "新增联络员 3 人" in result.output and "屏山街道 张* 138****0001" in result.output
    for secret in ("张三", "李四", "王五", "13800000001", "68000002"):
        assert secret not in result.output
