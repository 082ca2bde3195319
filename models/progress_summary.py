"""Jurisdiction-wide progress: every line of a year in one batch, and the views built on it
(by month, by category, units behind their pace). One donations query per call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

from sqlalchemy.ext.asyncio import AsyncSession

from models.progress_engine import evaluate
from models.progress_load import load_jurisdiction_units, load_year_lines
from models.progress_tally import DEFAULT_PLATELET_UNITS
from models.progress_types import CategorySummary, LineProgress, MonthSummary, Totals

# the monthly schedule (附件2 / 月份计划); annual and share lines are the year's plan
SCHEDULE_KINDS = frozenset({"scheduled", "group", "emergency"})
_EXPLICIT = frozenset({"line", "headcount"})
UNCATEGORISED = "未分类"


@dataclass(frozen=True)
class JurisdictionProgress:
    """Every line of the jurisdiction's chosen plans for `year`, as of `as_of`."""

    jurisdiction: str
    year: int
    as_of: date
    lines: tuple[LineProgress, ...]
    parents: Mapping[int, int | None]  # unit id → parent unit id
    plan_found: bool
    is_demo: bool

    def ancestors(self, unit_id: int) -> list[int]:
        found: list[int] = []
        parent = self.parents.get(unit_id)
        while parent is not None and parent not in found and parent != unit_id:
            found.append(parent)
            parent = self.parents.get(parent)
        return found

    def schedule_lines(self, month: int) -> tuple[LineProgress, ...]:
        """The month's schedule: scheduled, group and standby lines whose period contains it."""
        return tuple(
            line
            for line in self.lines
            if line.kind in SCHEDULE_KINDS and line.period.contains(month)
        )

    def totals(self, lines: Iterable[LineProgress]) -> tuple[Totals, ...]:
        """合计 per measure by the roll-up rule: a line with its own number counts unless an
        ancestor unit's line in the same set has one (「其中」 rows are not added twice);
        group headings without a number count through their members; standby lines not at all.
        """
        counted = [line for line in lines if line.target_source in _EXPLICIT]
        with_target = {line.unit_id for line in counted}
        by_measure: dict[str, list[LineProgress]] = {}
        for line in counted:
            if not with_target.intersection(self.ancestors(line.unit_id)):
                by_measure.setdefault(line.measure, []).append(line)
        return tuple(
            Totals(
                measure=measure,
                target=sum(line.target or 0 for line in group),
                done=sum((line.done for line in group), Decimal(0)),
                lines=len(group),
                behind=sum(1 for line in group if line.behind_pace),
            )
            for measure, group in by_measure.items()
        )


async def jurisdiction_progress(
    session: AsyncSession,
    jurisdiction: str,
    year: int,
    *,
    today: date,
    platelet_units: float = DEFAULT_PLATELET_UNITS,
) -> JurisdictionProgress:
    """All lines of the year's chosen plans, with one grouped donations query for all units."""
    tree = await load_jurisdiction_units(session, jurisdiction)
    year_lines = await load_year_lines(session, jurisdiction, year)
    pool = year_lines.lines
    lines = await evaluate(session, pool, tree, pool, as_of=today, platelet_units=platelet_units)
    return JurisdictionProgress(
        jurisdiction=jurisdiction,
        year=year,
        as_of=today,
        lines=tuple(lines),
        parents={u.id: u.parent_id for u in tree.units.values()},
        plan_found=year_lines.plan_found,
        is_demo=year_lines.is_demo,
    )


def summary_by_month(progress: JurisdictionProgress) -> tuple[MonthSummary, ...]:
    """Twelve months of the schedule. A line spanning months (赵巷镇 8-9月) is listed in each
    of its months but counted in the 合计 of its first month only, as the notices do."""
    summaries = []
    for month in range(1, 13):
        lines = progress.schedule_lines(month)
        starting = [line for line in lines if line.period.first_month == month]
        summaries.append(MonthSummary(month, lines, progress.totals(starting)))
    return tuple(summaries)


def summary_by_category(progress: JurisdictionProgress) -> tuple[CategorySummary, ...]:
    """合计 per (category, kind) over the lines that have a number, in first-seen order."""
    groups: dict[tuple[str, str], list[LineProgress]] = {}
    for line in progress.lines:
        if line.target is not None:
            groups.setdefault((line.category or UNCATEGORISED, line.kind), []).append(line)
    return tuple(
        CategorySummary(category, kind, totals)
        for (category, kind), lines in groups.items()
        for totals in progress.totals(lines)
    )


def _pace_key(line: LineProgress) -> tuple[Fraction, Decimal, str]:
    """Worst first: the smallest share of the expected pace, then the largest shortfall."""
    pace = line.period.pace(line.target or 0, line.as_of)
    share = Fraction(line.done) / pace if pace else Fraction(1)
    return share, -(line.shortfall or Decimal(0)), line.unit_name


async def units_behind(
    session: AsyncSession,
    jurisdiction: str,
    *,
    today: date,
    limit: int = 20,
    platelet_units: float = DEFAULT_PLATELET_UNITS,
) -> list[LineProgress]:
    """Units below their expected pace on a line running this month, worst first — one line
    per unit (its worst). Expected = target × elapsed days of the period / its days."""
    progress = await jurisdiction_progress(
        session, jurisdiction, today.year, today=today, platelet_units=platelet_units
    )
    worst: dict[int, LineProgress] = {}
    for line in progress.lines:
        if line.behind_pace and line.period.contains(today.month):
            kept = worst.get(line.unit_id)
            if kept is None or _pace_key(line) < _pace_key(kept):
                worst[line.unit_id] = line
    return sorted(worst.values(), key=_pace_key)[:limit]
