"""The progress engine: targets, statuses and `evaluate()` — one tally, then `LineProgress`.

Every public query in `models.progress` is a thin selection over `evaluate()`, so chat,
console, broadcasts and exports cannot disagree about a number.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from sqlalchemy.ext.asyncio import AsyncSession

from models.progress_period import Period
from models.progress_tally import Tally, run_tally
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
    LineProgress,
    UnitInfo,
    percent_of,
)


class UnitNotFound(LookupError):
    """No unit with that id in that jurisdiction."""


@dataclass(frozen=True)
class LineRow:
    """A plan line with what it needs from its plan."""

    id: int
    plan_id: int
    unit_id: int
    kind: str
    months: int
    month_text: str
    target: int | None
    share_percent: int | None
    note: str
    year: int
    measure: str
    is_demo: bool

    @property
    def period(self) -> Period:
        return Period(self.year, self.months)


class UnitTree:
    """Units of a jurisdiction (or of one subtree) and their 「其中」/group nesting."""

    def __init__(self, units: Iterable[UnitInfo]) -> None:
        self.units = {u.id: u for u in units}
        self.children: dict[int, list[int]] = defaultdict(list)
        for u in self.units.values():
            if u.parent_id is not None:
                self.children[u.parent_id].append(u.id)
        self._subtrees: dict[int, frozenset[int]] = {}

    def subtree(self, unit_id: int) -> frozenset[int]:
        """The unit and all its descendants (cycle-safe)."""
        if unit_id not in self._subtrees:
            seen, stack = {unit_id}, [unit_id]
            while stack:
                for child in self.children.get(stack.pop(), ()):
                    if child not in seen:
                        seen.add(child)
                        stack.append(child)
            self._subtrees[unit_id] = frozenset(seen)
        return self._subtrees[unit_id]

    def ancestors(self, unit_id: int) -> list[int]:
        found: list[int] = []
        parent = self.units[unit_id].parent_id if unit_id in self.units else None
        while parent is not None and parent not in found and parent != unit_id:
            found.append(parent)
            parent = self.units[parent].parent_id if parent in self.units else None
        return found


def resolve_target(
    line: LineRow, tree: UnitTree, pool: Sequence[LineRow], _depth: int = 0
) -> tuple[int | None, str | None]:
    """The line's target and where it comes from; None when there is honestly no number."""
    if line.kind == "emergency":
        return None, None
    if line.kind == "share":
        unit = tree.units.get(line.unit_id)
        if unit is None or unit.headcount is None or line.share_percent is None:
            return None, None
        return math.ceil(Fraction(unit.headcount * line.share_percent, 100)), "headcount"
    if line.target is not None:
        return line.target, "line"
    # a group heading without a number (分组标题): the sum of its members' lines in that period
    members = set(tree.children.get(line.unit_id, ()))
    total, found = 0, False
    for other in pool:
        if (
            other.plan_id == line.plan_id
            and other.unit_id in members
            and other.months & line.months
            and _depth < 8
        ):
            target, _ = resolve_target(other, tree, pool, _depth + 1)
            if target is not None:
                total, found = total + target, True
    return (total, "members") if found else (None, None)


def line_status(
    line: LineRow, target: int | None, done: Decimal, as_of: date
) -> tuple[str, Decimal | None]:
    """The status word and the expected pace (target × elapsed share of the period's days)."""
    if line.kind == "emergency":
        return STANDBY, None
    if target is None:
        return (NEEDS_HEADCOUNT if line.kind == "share" else NO_TARGET), None
    period = line.period
    pace = period.pace(target, as_of)
    expected = Decimal(pace.numerator) / Decimal(pace.denominator)
    expected = expected.quantize(Decimal("0.01"))
    if not period.has_started(as_of):
        return UPCOMING, expected
    exact = Fraction(done)
    if exact > target:
        return OVER, expected
    if exact == target:
        return MET, expected
    if exact == 0:
        return NOT_STARTED, expected
    return (BEHIND if exact < pace else AHEAD), expected


async def evaluate(
    session: AsyncSession,
    lines: Sequence[LineRow],
    tree: UnitTree,
    pool: Sequence[LineRow],
    *,
    as_of: date,
    platelet_units: float,
) -> list[LineProgress]:
    """Progress of `lines` as of `as_of` with ONE donations query over all their roll-ups."""
    if not lines:
        return []
    subtrees = {line.unit_id: tree.subtree(line.unit_id) for line in lines}
    periods = [line.period for line in lines]
    start = min(p.start for p in periods)
    end = min(as_of + timedelta(days=1), max(p.end for p in periods))
    tally = await run_tally(
        session,
        set().union(*subtrees.values()),
        start,
        end,
        by_donor=any(line.measure == "人" for line in lines),
    )
    return [
        build(line, tree, pool, tally, subtrees[line.unit_id], as_of, platelet_units)
        for line in lines
    ]


def build(
    line: LineRow,
    tree: UnitTree,
    pool: Sequence[LineRow],
    tally: Tally,
    subtree: frozenset[int],
    as_of: date,
    platelet_units: float,
) -> LineProgress:
    period = line.period
    done = tally.done(subtree, period.year, period.month_list, line.measure, platelet_units)
    target, source = resolve_target(line, tree, pool)
    status, expected = line_status(line, target, done, as_of)
    unit = tree.units[line.unit_id]
    return LineProgress(
        line_id=line.id,
        plan_id=line.plan_id,
        unit_id=line.unit_id,
        unit_name=unit.name,
        category=unit.category,
        kind=line.kind,
        measure=line.measure,
        period=period,
        month_text=line.month_text,
        target=target,
        target_source=source,
        share_percent=line.share_percent,
        headcount=unit.headcount,
        done=done,
        remaining=None if target is None else max(target - done, Decimal(0)),
        over=None if target is None else max(done - target, Decimal(0)),
        percent=percent_of(done, target),
        expected=expected,
        status=status,
        as_of=as_of,
        is_demo=line.is_demo,
        note=line.note,
    )
