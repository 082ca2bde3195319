"""Progress of plan lines: the one query used by chat, console, broadcasts and exports.

Progress of a line = donations credited to the line's unit and its sub-units (parent_id,
recursively; a group heading's members are its sub-units) within the line's period — the
line's months of the plan's year, up to `today` — in the plan's measure:

- 人次: donations; 人: distinct donors (a donation without a donor counts as its own donor);
- 人份: whole-blood ml / 200 + platelet 治疗量 × `platelet_units` (2 by default);
- ml: whole-blood ml + platelet 治疗量 × `platelet_units` × 200.

`today` is always a local date in the jurisdiction's timezone (`bot.clock.local_now(...)
.date()`); donation dates are local dates too. The year's plans are the real ones when the
year has any, else the demo copies. Semantics in docs/progress.md.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from models.progress_engine import LineRow, UnitNotFound, UnitTree, evaluate
from models.progress_load import load_subtree, load_year_lines
from models.progress_period import Period, month_bit
from models.progress_summary import (
    JurisdictionProgress,
    jurisdiction_progress,
    summary_by_category,
    summary_by_month,
    units_behind,
)
from models.progress_tally import DEFAULT_PLATELET_UNITS
from models.progress_types import (
    AHEAD,
    BEHIND,
    MET,
    NEEDS_HEADCOUNT,
    NO_TARGET,
    NOT_STARTED,
    OVER,
    STANDBY,
    UPCOMING,
    CategorySummary,
    LineProgress,
    MonthSummary,
    Totals,
    UnitInfo,
    UnitMonth,
    UnitSchedule,
    UnitYear,
)

__all__ = [
    "AHEAD",
    "BEHIND",
    "DEFAULT_PLATELET_UNITS",
    "MET",
    "NEEDS_HEADCOUNT",
    "NOT_STARTED",
    "NO_TARGET",
    "OVER",
    "STANDBY",
    "UPCOMING",
    "CategorySummary",
    "JurisdictionProgress",
    "LineProgress",
    "MonthSummary",
    "Period",
    "Totals",
    "UnitInfo",
    "UnitMonth",
    "UnitNotFound",
    "UnitSchedule",
    "UnitYear",
    "jurisdiction_progress",
    "month_progress",
    "summary_by_category",
    "summary_by_month",
    "this_month",
    "unit_schedule",
    "units_behind",
    "year_to_date",
]


class _UnitYearLines:
    """A unit's subtree and the lines of the chosen plans of one year that touch it."""

    def __init__(
        self, tree: UnitTree, pool: list[LineRow], unit_id: int, plan_found: bool, is_demo: bool
    ) -> None:
        self.tree, self.pool, self.plan_found, self.is_demo = tree, pool, plan_found, is_demo
        self.unit = tree.units[unit_id]
        self.own = [line for line in pool if line.unit_id == unit_id]

    @classmethod
    async def load(
        cls, session: AsyncSession, jurisdiction: str, unit_id: int, year: int
    ) -> _UnitYearLines:
        tree = await load_subtree(session, jurisdiction, unit_id)
        # the subtree's lines too: a group heading without a number sums its members' targets
        year_lines = await load_year_lines(session, jurisdiction, year, tree.units)
        return cls(tree, year_lines.lines, unit_id, year_lines.plan_found, year_lines.is_demo)


async def this_month(
    session: AsyncSession,
    jurisdiction: str,
    unit_id: int,
    *,
    today: date,
    platelet_units: float = DEFAULT_PLATELET_UNITS,
) -> UnitMonth:
    """「这个月还差多少」: every line of the unit whose period contains today's month."""
    return await month_progress(
        session,
        jurisdiction,
        unit_id,
        today.year,
        today.month,
        today=today,
        platelet_units=platelet_units,
    )


async def month_progress(
    session: AsyncSession,
    jurisdiction: str,
    unit_id: int,
    year: int,
    month: int,
    *,
    today: date,
    platelet_units: float = DEFAULT_PLATELET_UNITS,
) -> UnitMonth:
    """The unit's lines whose period contains `month` of `year`, done as of `today`.

    A past year's plan is answered from that year's donations (its periods are over).
    """
    ctx = await _UnitYearLines.load(session, jurisdiction, unit_id, year)
    current = [line for line in ctx.own if line.months & month_bit(month)]
    evaluated = await evaluate(
        session, current or ctx.own, ctx.tree, ctx.pool, as_of=today, platelet_units=platelet_units
    )
    upcoming = [m for line in ctx.own if (m := line.period.next_month_after(month)) is not None]
    return UnitMonth(
        jurisdiction=jurisdiction,
        unit=ctx.unit,
        year=year,
        month=month,
        as_of=today,
        lines=tuple(evaluated) if current else (),
        next_month=min(upcoming, default=None),
        year_lines=() if current else tuple(evaluated),
        plan_found=ctx.plan_found,
        is_demo=ctx.is_demo,
    )


async def year_to_date(
    session: AsyncSession,
    jurisdiction: str,
    unit_id: int,
    *,
    today: date,
    year: int | None = None,
    platelet_units: float = DEFAULT_PLATELET_UNITS,
) -> UnitYear:
    """「今年完成几个了」: every line of the unit's year (today's year unless given)."""
    year = year or today.year
    ctx = await _UnitYearLines.load(session, jurisdiction, unit_id, year)
    lines = await evaluate(
        session, ctx.own, ctx.tree, ctx.pool, as_of=today, platelet_units=platelet_units
    )
    return UnitYear(
        jurisdiction=jurisdiction,
        unit=ctx.unit,
        year=year,
        as_of=today,
        lines=tuple(lines),
        plan_found=ctx.plan_found,
        is_demo=ctx.is_demo,
    )


async def unit_schedule(
    session: AsyncSession,
    jurisdiction: str,
    unit_id: int,
    *,
    today: date,
    year: int | None = None,
    platelet_units: float = DEFAULT_PLATELET_UNITS,
) -> UnitSchedule:
    """「我们几月份献血」: the months with a line and the next drive (this month counts)."""
    ytd = await year_to_date(
        session, jurisdiction, unit_id, today=today, year=year, platelet_units=platelet_units
    )
    months = 0
    for line in ytd.lines:
        months |= line.period.months
    if ytd.year < today.year:
        first_open = 13
    elif ytd.year > today.year:
        first_open = 1
    else:
        first_open = today.month
    next_month = next(
        (m for m in range(first_open, 13) if months & month_bit(m)),
        None,
    )
    return UnitSchedule(
        jurisdiction=jurisdiction,
        unit=ytd.unit,
        year=ytd.year,
        months=months,
        next_month=next_month,
        lines=ytd.lines,
        plan_found=ytd.plan_found,
        is_demo=ytd.is_demo,
    )
