"""Progress numbers on SQLite and PostgreSQL, checked against plain Python over the inserted
rows (tests/progress_world.py) — the traps of the five seed notices, by hand and at random."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from progress_world import (
    ALL,
    GROUP,
    PLANS,
    WJW,
    WJW_KIDS,
    World,
    db_url,
    ref_done,
    ref_pace,
    ref_status,
    world,
)
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import FixedClock, local_now
from models.progress import (
    jurisdiction_progress,
    month_progress,
    summary_by_month,
    this_month,
    unit_schedule,
    units_behind,
    year_to_date,
)
from models.progress_tally import tally_statement

_FIXTURES = (db_url, world)  # pytest finds them by name in this module
SEEDS = Path(__file__).resolve().parent.parent / "data" / "seed_plans"


# ---- every line, every backend, several dates -------------------------------------------
@pytest.mark.parametrize("offset_days", [-400, 0, 45, 130, 200, 364, 800])
async def test_every_line_matches_the_independent_computation(
    world: World, offset_days: int
) -> None:
    for (jur, year, measure, demo), lines in PLANS.items():
        if demo:
            continue
        as_of = date(year, 1, 1) + timedelta(days=offset_days)
        async with world.sessions() as s:
            got = await jurisdiction_progress(s, jur, year, today=as_of)
        rows = [p for p in got.lines if p.measure == measure]
        assert len(rows) == len(lines)
        for p, (unit, kind, months, _, _, target) in zip(rows, lines, strict=True):
            done = ref_done(world, unit, year, months, as_of, measure)
            pace = ref_pace(target or 0, year, months, as_of)
            started = as_of >= date(year, min(months), 1)
            assert (p.unit_name, p.kind, p.target) == (unit, kind, target)
            assert Fraction(p.done) == done, (unit, as_of)
            assert p.status == ref_status(target, done, pace, kind, started), (unit, as_of)
            if target is not None:
                assert Fraction(p.remaining or 0) == max(target - done, Fraction(0))
                assert Fraction(p.over or 0) == max(done - target, Fraction(0))
                assert abs(Fraction(p.expected or 0) - pace) <= Fraction(1, 200)


# ---- the traps, by hand -------------------------------------------------------------------
async def test_sub_units_roll_up_into_the_parent(world: World) -> None:
    """卫计委 233 = 12+202+1+4+10+4; its done counts the 机关, 其中 units and itself."""
    async with world.sessions() as s:
        month = await this_month(s, "zhangjiajie", world.unit_ids[WJW], today=date(2018, 3, 31))
    (line,) = month.lines
    assert (line.target, line.done, line.remaining, line.percent) == (233, 29, 204, Decimal("12.4"))
    assert sum(WJW_KIDS.values()) == line.target
    assert not month.is_demo  # the demo copy with 999 is ignored: the year has a real plan


async def test_a_group_heading_sums_its_members(world: World) -> None:
    async with world.sessions() as s:
        ytd = await year_to_date(s, "zhangjiajie", world.unit_ids[GROUP], today=date(2018, 12, 31))
    (line,) = ytd.lines
    members = ["市教育局", "市科技局", "市民宗委", "市文体广电新闻出版局"]
    each = [ref_done(world, m, 2018, {7}, date(2018, 12, 31), "人") for m in members]
    assert (line.target, line.target_source) == (77, "members")
    # distinct people across the group: the random pool's donors give at several members
    assert Fraction(line.done) == ref_done(world, GROUP, 2018, {7}, date(2018, 12, 31), "人")
    assert max(each) <= line.done <= sum(each)
    async with world.sessions() as s:
        count = await jurisdiction_progress(s, "zhangjiajie", 2018, today=date(2018, 12, 31))
    (batched,) = [p for p in count.lines if p.unit_name == GROUP]
    assert batched == line  # the batch and the unit query agree


async def test_two_month_line_in_shares_with_platelets(world: World) -> None:
    """赵巷镇 792 spans 8–9月: 3×400 + 300 + 200 ml + 1 + 1.5 治疗量 = 6+1.5+1+2+3 人份."""
    zhao = world.unit_ids["赵巷镇"]
    async with world.sessions() as s:
        sept = await this_month(s, "qingpu", zhao, today=date(2021, 9, 30))
        heavy = await this_month(s, "qingpu", zhao, today=date(2021, 9, 30), platelet_units=4)
        aug31 = await this_month(s, "qingpu", zhao, today=date(2021, 8, 31))
        aug30 = await this_month(s, "qingpu", zhao, today=date(2021, 8, 30))
    span, annual = sept.lines
    assert span.spans_months and span.period.label == "8-9月"
    assert (span.done, span.remaining) == (Decimal("13.5"), Decimal("778.5"))
    assert annual.done == Decimal("14.5")  # + 200 ml in January; October not yet
    assert heavy.lines[0].done == Decimal("18.5")  # 1 治疗量 = 4 人份 (800 ml)
    assert (aug31.lines[0].done, aug30.lines[0].done) == (Decimal("10.5"), Decimal("9.5"))


async def test_annual_line_counts_the_whole_year(world: World) -> None:
    unit = world.unit_ids["卫健系统"]
    async with world.sessions() as s:
        dec = await this_month(s, "rugao", unit, today=date(2020, 12, 31))
    (line,) = dec.lines
    assert line.period.is_full_year and line.target == 600
    assert Fraction(line.done) == ref_done(world, "卫健系统", 2020, ALL, date(2020, 12, 31), "人")


async def test_distinct_donors_and_over_fulfilment(world: World) -> None:
    """审计局 6: 8 donors (one twice) + 1 without an id + 1 on 29 February = 10 people."""
    async with world.sessions() as s:
        feb = await this_month(s, "rugao", world.unit_ids["审计局"], today=date(2020, 2, 29))
    (line,) = feb.lines
    assert (line.done, line.remaining, line.over, line.status) == (10, 0, 4, "over")
    assert line.percent == Decimal("166.6")


async def test_today_is_the_local_date_at_a_month_boundary(world: World) -> None:
    """16:30 UTC on 29 Feb is 1 March in Shanghai: 审计局's February line is no longer current."""
    today = local_now(FixedClock(datetime(2020, 2, 29, 16, 30, tzinfo=UTC)), "Asia/Shanghai")
    async with world.sessions() as s:
        march = await this_month(s, "rugao", world.unit_ids["审计局"], today=today.date())
        feb28 = await month_progress(
            s, "rugao", world.unit_ids["审计局"], 2020, 2, today=date(2020, 2, 28)
        )
    assert (march.month, march.lines, march.next_month) == (3, (), None)
    assert [y.done for y in march.year_lines] == [10]  # 1 March's donation is not February's
    assert feb28.lines[0].done == 9


async def test_standby_and_shares_never_invent_a_number(world: World) -> None:
    async with world.sessions() as s:
        fire = await this_month(
            s, "zhangjiajie", world.unit_ids["市公安消防支队"], today=date(2018, 9, 10)
        )
        pingshan = await year_to_date(
            s, "luquan", world.unit_ids["屏山街道"], today=date(2016, 12, 31)
        )
        dept = await year_to_date(
            s, "luquan", world.unit_ids["县级各部门"], today=date(2016, 12, 31)
        )
    (standby,) = fire.lines
    assert standby.standby and standby.target is None and standby.remaining is None
    assert Fraction(standby.done) == ref_done(
        world, "市公安消防支队", 2018, {9}, date(2018, 9, 10), "人"
    )
    assert (pingshan.lines[0].target, pingshan.lines[0].target_source) == (37, "headcount")
    (share,) = dept.lines
    assert share.needs_headcount and share.target is None and share.percent is None


async def test_nothing_this_month_gives_the_next_month_and_the_year(world: World) -> None:
    cili = world.unit_ids["慈利县"]
    async with world.sessions() as s:
        april = await this_month(s, "zhangjiajie", cili, today=date(2018, 4, 10))
        schedule = await unit_schedule(s, "zhangjiajie", cili, today=date(2018, 4, 10))
    assert april.lines == () and april.next_month == 8
    assert [y.target for y in april.year_lines] == [2800]
    assert schedule.month_list == (1, 3, 8, 10, 12) and schedule.next_month == 8


async def test_a_past_year_is_answered_from_that_years_data(world: World) -> None:
    async with world.sessions() as s:
        march = await month_progress(
            s, "zhangjiajie", world.unit_ids[WJW], 2018, 3, today=date(2026, 3, 1)
        )
        demo = await this_month(s, "zhangjiajie", world.unit_ids[WJW], today=date(2026, 3, 1))
    assert march.lines[0].done == 29 and march.lines[0].status == "behind"
    assert demo.is_demo and demo.lines[0].target == 100  # only a demo plan for 2026


async def test_units_behind_worst_first(world: World) -> None:
    today = date(2018, 3, 20)
    async with world.sessions() as s:
        behind = await units_behind(s, "zhangjiajie", today=today, limit=50)
    shares = [
        Fraction(p.done) / ref_pace(p.target or 0, 2018, set(p.period.month_list), today)
        for p in behind
    ]
    assert shares == sorted(shares) and all(share < 1 for share in shares)
    names = {p.unit_name for p in behind}
    assert "市疾控中心" in names  # nothing donated: worst
    assert behind[0].done == 0


async def test_month_totals_do_not_add_sub_units_twice(world: World) -> None:
    async with world.sessions() as s:
        progress = await jurisdiction_progress(s, "zhangjiajie", 2018, today=date(2018, 12, 31))
    months = summary_by_month(progress)
    (march,) = months[2].totals
    assert (march.target, march.done) == (233, 29)
    (july,) = months[6].totals
    assert july.target == 64 + 5 + 2 + 6


async def test_summaries_issue_one_donations_query(world: World) -> None:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(world.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with world.sessions() as s:
            await jurisdiction_progress(s, "zhangjiajie", 2018, today=date(2018, 12, 31))
    finally:
        event.remove(world.engine.sync_engine, "before_cursor_execute", record)
    assert sum("FROM donations" in sql for sql in seen) == 1


async def test_the_tally_is_an_index_range_scan(world: World, db_url: str) -> None:
    """EXPLAIN the very statement the module runs, over 60k rows on PostgreSQL."""
    ids = [world.unit_ids[WJW], *(world.unit_ids[k] for k in WJW_KIDS)]
    stmt = tally_statement(ids, date(2018, 3, 1), date(2018, 4, 1), by_donor=True)
    async with world.sessions() as s:
        sql = str(stmt.compile(s.bind, compile_kwargs={"literal_binds": True}))
        if db_url.startswith("sqlite"):
            rows = await s.execute(text("EXPLAIN QUERY PLAN " + sql))
            plan = " ".join(str(r[-1]) for r in rows)
            bounds = "(unit_id=? AND donated_at>? AND donated_at<?)"
            assert f"SEARCH donations USING INDEX ix_donations_unit_date {bounds}" in plan, plan
            return
        await _bulk_history(s, list(world.unit_ids.values()))
        await s.execute(text("ANALYZE donations"))
        plan = " ".join(r[0] for r in await s.execute(text("EXPLAIN " + sql)))
    assert "ix_donations_unit_date" in plan and "Seq Scan" not in plan, plan


async def _bulk_history(s: AsyncSession, unit_ids: list[int], n: int = 60_000) -> None:
    rng = random.Random(3)
    records = [
        (
            "zhangjiajie",
            f"BULK{i}",
            date(2012, 1, 1) + timedelta(days=rng.randrange(3650)),
            rng.choice(unit_ids),
            "whole_blood",
            400,
            0.0,
            True,
        )
        for i in range(n)
    ]
    conn = await s.connection()
    raw = (await conn.get_raw_connection()).driver_connection
    await raw.copy_records_to_table(
        "donations",
        records=records,
        columns=[
            "jurisdiction",
            "record_id",
            "donated_at",
            "unit_id",
            "kind",
            "volume_ml",
            "therapeutic_units",
            "synthetic",
        ],
    )


async def test_month_totals_reproduce_the_notices_own_totals(db_url: str) -> None:
    """The seed plans through the importer: 如皋's twelve 合计 and 青浦's 附件 totals."""
    from bot.imports import import_plan_file
    from bot.settings import Jurisdiction, Settings
    from models.db import create_engine, session_factory
    from models.migrate import upgrade
    from models.progress import summary_by_category

    await asyncio.to_thread(upgrade, db_url)
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    settings = Settings(jurisdictions={c: Jurisdiction(name=c) for c in ("rugao", "qingpu")})
    for name in ("rugao-2020.csv", "qingpu-2021.csv"):
        await import_plan_file(sessions, settings, SEEDS / name)
    async with sessions() as s:
        rugao = await jurisdiction_progress(s, "rugao", 2020, today=date(2020, 6, 1))
        qingpu = await jurisdiction_progress(s, "qingpu", 2021, today=date(2021, 6, 1))
    await engine.dispose()
    notice = [684, 692, 762, 753, 437, 572, 643, 663, 434, 375, 402, 545]
    assert [m.totals[0].target for m in summary_by_month(rugao)] == notice
    assert sum(m.totals[0].target for m in summary_by_month(qingpu)) == 11237  # 附件3
    categories = summary_by_category(qingpu)
    annual = {c.category: c.totals.target for c in categories if c.kind == "annual"}
    assert annual == {"街镇": 10118, "委办局": 1119}  # 附件1, 附件2
