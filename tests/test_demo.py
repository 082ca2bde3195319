"""`donorbot demo load`: seed plans, this year's demo copies and a history that shows every
state in the current month — whatever the month — and changes nothing when run twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import main
from bot.clock import FixedClock
from bot.demo import load_demo
from bot.settings import Jurisdiction, Settings
from models import Donation, Donor, Plan, PlanLine, Unit
from models.db import create_engine, session_factory
from models.migrate import upgrade
from models.progress import jurisdiction_progress

NAMES = {
    "zhangjiajie": "张家界市",
    "yuxi": "玉溪市",
    "luquan": "禄劝彝族苗族自治县",
    "rugao": "如皋市",
    "qingpu": "上海市青浦区",
}
FOUR = ("not_started", "behind", "met", "ahead")


@pytest.fixture
async def sessions(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(upgrade, sqlite_url)
    engine = create_engine(sqlite_url)
    yield session_factory(engine)
    await engine.dispose()


def settings_for(url: str) -> Settings:
    return Settings(
        database_url=url, jurisdictions={c: Jurisdiction(name=n) for c, n in NAMES.items()}
    )


def clock_on(day: date) -> FixedClock:
    return FixedClock(datetime(day.year, day.month, day.day, 4, tzinfo=UTC))  # noon in Shanghai


async def states_this_month(
    sessions: async_sessionmaker[AsyncSession], code: str, today: date
) -> set[str]:
    async with sessions() as s:
        progress = await jurisdiction_progress(s, code, today.year, today=today)
    assert progress.is_demo
    # 「ahead」 includes over-fulfilment: on a period's last day nothing can be ahead but under
    found = {line.status for line in progress.lines if line.period.contains(today.month)}
    return found | ({"ahead"} if "over" in found else set())


@pytest.mark.parametrize("today", [date(2026, 3, 10), date(2026, 8, 31), date(2027, 1, 1)])
async def test_each_seed_jurisdiction_shows_every_state_this_month(
    sessions: async_sessionmaker[AsyncSession], sqlite_url: str, today: date
) -> None:
    await load_demo(settings_for(sqlite_url), clock=clock_on(today), sessions=sessions)
    for code in ("zhangjiajie", "rugao", "qingpu", "luquan"):
        assert set(FOUR) <= await states_this_month(sessions, code, today), code


async def test_december_when_rugao_has_only_three_lines(
    sessions: async_sessionmaker[AsyncSession], sqlite_url: str
) -> None:
    today = date(2026, 12, 15)
    await load_demo(settings_for(sqlite_url), clock=clock_on(today), sessions=sessions)
    for code in ("zhangjiajie", "qingpu"):
        assert set(FOUR) <= await states_this_month(sessions, code, today), code
    rugao = await states_this_month(sessions, "rugao", today)  # 城北街道 and two 「全年」 lines
    assert len(rugao & set(FOUR)) == 3


async def test_running_twice_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], sqlite_url: str
) -> None:
    settings, clock = settings_for(sqlite_url), clock_on(date(2026, 5, 20))
    first = await load_demo(settings, clock=clock, sessions=sessions)
    before = await counts(sessions)
    second = await load_demo(settings, clock=clock, sessions=sessions)
    assert await counts(sessions) == before
    assert all(j.inserted == 0 and j.deleted == 0 for j in second.jurisdictions)
    assert sum(j.inserted for j in first.jurisdictions) == before["donations"]


async def test_only_synthetic_people_and_demo_plans_for_this_year(
    sessions: async_sessionmaker[AsyncSession], sqlite_url: str
) -> None:
    today = date(2026, 5, 20)
    await load_demo(settings_for(sqlite_url), clock=clock_on(today), sessions=sessions)
    async with sessions() as s:
        donations = (await s.execute(select(Donation))).scalars().all()
        donors = (await s.execute(select(Donor))).scalars().all()
        plans = (await s.execute(select(Plan.jurisdiction, Plan.year, Plan.is_demo))).all()
        luquan = await jurisdiction_progress(s, "luquan", today.year, today=today)
        yuxi = await jurisdiction_progress(s, "yuxi", today.year, today=today)
    assert donations and all(d.synthetic and d.record_id.startswith("DEMO-") for d in donations)
    assert all(d.donated_at.year == 2026 and d.donated_at <= today for d in donations)
    assert all(d.id_hash.startswith("DEMO-") and d.name_masked.startswith("演示") for d in donors)
    years = {(j, y, demo) for j, y, demo in plans}
    assert ("zhangjiajie", 2018, False) in years and ("zhangjiajie", 2026, True) in years
    assert ("qingpu", 2021, False) in years and ("qingpu", 2026, True) in years
    needs = [line.unit_name for line in luquan.lines if line.needs_headcount]
    assert needs == ["各乡镇（城乡居民）"]  # no headcount on purpose: explained, no number
    assert [line for line in luquan.lines if line.target_source == "headcount"]
    assert yuxi.lines == ()  # a rate target only: no plan lines, no donations


async def counts(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as s:
        return {
            name: int(await s.scalar(select(func.count()).select_from(model)) or 0)
            for name, model in (
                ("donations", Donation),
                ("donors", Donor),
                ("plans", Plan),
                ("lines", PlanLine),
                ("units", Unit),
            )
        }


def test_the_command_is_what_make_demo_runs(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "donorbot.toml"
    monkeypatch.setenv("DONORBOT_CONFIG", str(config))
    monkeypatch.setenv("DONORBOT_DATABASE_URL", sqlite_url)
    runner = CliRunner()
    for args in (["demo", "config"], ["db", "upgrade"]):
        assert runner.invoke(main, args).exit_code == 0
    first = runner.invoke(main, ["demo", "load", "--today", "2026-03-10"])
    assert first.exit_code == 0, first.output
    assert "qingpu-2021.csv → 2026（演示）" in first.output
    again = runner.invoke(main, ["demo", "load", "--today", "2026-03-10"])
    lines = [line for line in again.output.splitlines() if "演示献血记录" in line]
    assert len(lines) == 5 and all("新增 0、删除 0" in line for line in lines), again.output
