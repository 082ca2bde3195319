"""Automatic reminders: the right units at the right time, each created exactly once."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import SESSIONS
from bot.broadcasts.reminders import last_working_day, plan_reminders
from bot.imports.plans import import_plan_file
from models.broadcasts import Broadcast, Delivery
from models.plans import PlanLine, Unit
from models.progress_period import month_bit
from models.units import resolve_unit
from tests.test_broadcasts import SEEDS, ZJJ, noon
from tests.test_liaison_chat import bind


@pytest.fixture
async def world(db_url: str, make_bot: Any) -> Any:
    """张家界 2018 on SQLite and PostgreSQL, with 慈利县's liaison and an office user bound."""
    bot = await make_bot(database_url=db_url, broadcast_rate=0)
    await import_plan_file(
        bot.app[SESSIONS], bot.settings, SEEDS / "zhangjiajie-2018.csv", actor="t"
    )
    bot.settings.jurisdictions[ZJJ].reminders.enabled = True
    bot.settings.jurisdictions[ZJJ].reminders.booking_contact = "献血办 0000-0000000"
    bot.clock.set(noon(date(2018, 2, 1)))
    await bind(bot, ZJJ, "慈利县", "o_cili")
    await bind(bot, ZJJ, None, "o_office", role="office")
    return bot


async def reminders(bot: Any) -> list[Broadcast]:
    async with bot.app[SESSIONS]() as s:
        return list(await s.scalars(select(Broadcast).where(Broadcast.kind == "reminder")))


async def plan(bot: Any, tmp_path: Path | None = None) -> list[int]:
    return await plan_reminders(bot.app[SESSIONS], bot.settings, bot.clock, tmp_path)


async def cili_months(bot: Any) -> set[int]:
    """The months of 慈利县's scheduled lines, read from the database (not the code under test)."""
    async with bot.app[SESSIONS]() as s:
        unit = (await resolve_unit(s, ZJJ, "慈利县")).unit
        assert unit is not None
        rows = await s.scalars(
            select(PlanLine).join(Unit, Unit.id == PlanLine.unit_id).where(Unit.id == unit.id)
        )
        return {m for line in rows for m in range(1, 13) if line.months & month_bit(m)}


async def test_liaisons_hear_of_their_month_seven_days_ahead_once(world: Any) -> None:
    months = await cili_months(world)
    assert 3 in months  # the notice puts 慈利县 in March
    world.clock.set(noon(date(2018, 2, 21)))  # 8 days before March: too early
    assert await plan(world) == []
    world.clock.set(noon(date(2018, 2, 22)))  # 7 days before
    created = await plan(world)
    assert len(created) == 1
    assert await plan(world) == []  # the same day again
    world.clock.set(noon(date(2018, 2, 26)))  # a worker that restarts later in the window
    assert await plan(world) == []
    (row,) = await reminders(world)
    assert row.idempotency_key.startswith("reminder:before:2018-03:")
    async with world.app[SESSIONS]() as s:
        (delivery,) = (
            await s.scalars(select(Delivery).where(Delivery.broadcast_id == row.id))
        ).all()
    text = delivery.payload["content"]
    assert delivery.openid == "o_cili"
    assert "慈利县" in text and "3月" in text and "献血办 0000-0000000" in text


async def test_mid_month_reminds_units_below_half_of_their_target(world: Any) -> None:
    world.clock.set(noon(date(2018, 3, 14)))
    assert not [r for r in await reminders(world) if "mid" in r.idempotency_key]
    await plan(world)
    assert not [r for r in await reminders(world) if ":mid:" in r.idempotency_key]
    world.clock.set(noon(date(2018, 3, 15)))  # no donations yet: 0 % < 50 %
    await plan(world)
    mids = [r for r in await reminders(world) if ":mid:" in r.idempotency_key]
    assert [r.idempotency_key.split(":")[2] for r in mids] == ["2018-03"]


async def test_the_month_end_report_goes_to_the_office_on_the_last_working_day(
    world: Any, tmp_path: Path
) -> None:
    assert last_working_day(2018, 3) == date(2018, 3, 30)  # the 31st is a Saturday
    world.clock.set(noon(date(2018, 3, 29)))
    await plan(world, tmp_path)
    assert not [r for r in await reminders(world) if ":report:" in r.idempotency_key]
    world.clock.set(noon(date(2018, 3, 30)))
    await plan(world, tmp_path)
    (report,) = [r for r in await reminders(world) if ":report:" in r.idempotency_key]
    async with world.app[SESSIONS]() as s:
        (delivery,) = (
            await s.scalars(select(Delivery).where(Delivery.broadcast_id == report.id))
        ).all()
    assert delivery.openid == "o_office"
    assert (
        "3月献血通报" in delivery.payload["content"] and "张家界市" in delivery.payload["content"]
    )
    assert (tmp_path / f"{ZJJ}-2018-03-progress.xlsx").exists()


async def test_many_planners_at_once_create_each_reminder_once(world: Any) -> None:
    world.clock.set(noon(date(2018, 3, 30)))  # mid-month and report both due
    results = await asyncio.gather(*(plan(world) for _ in range(4)), return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)], results
    keys = [r.idempotency_key for r in await reminders(world)]
    assert len(keys) == len(set(keys)) >= 2
    assert sum(len(r) for r in results if isinstance(r, list)) == len(keys)
