"""What the progress queries return: plain frozen dataclasses, ready for templates and sheets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction

from models.progress_period import Period

# LineProgress.status values
STANDBY = "standby"  # kind emergency: 应急献血, no number by design
NEEDS_HEADCOUNT = "needs_headcount"  # a share of headcount, and the unit has no headcount
NO_TARGET = "no_target"  # a group heading whose members carry no number either
UPCOMING = "upcoming"  # the period has not begun
NOT_STARTED = "not_started"  # begun, nothing donated yet
BEHIND = "behind"  # below the expected pace
AHEAD = "ahead"  # at or above the expected pace, target not yet reached
MET = "met"  # exactly the target
OVER = "over"  # above the target
BEHIND_PACE = frozenset({NOT_STARTED, BEHIND})


@dataclass(frozen=True)
class UnitInfo:
    id: int
    name: str
    category: str | None
    parent_id: int | None
    headcount: int | None
    is_group: bool


@dataclass(frozen=True)
class LineProgress:
    """One plan line's progress as of `as_of`. Numbers are exact (`Decimal`, integral for 人次/人).

    `target` is None for standby lines, shares without a headcount and group headings whose
    members carry no number; then `remaining`, `over`, `percent` and `expected` are None too.
    """

    line_id: int
    plan_id: int
    unit_id: int
    unit_name: str
    category: str | None
    kind: str  # scheduled | annual | emergency | share | group
    measure: str  # 人次 | 人 | 人份 | ml
    period: Period
    month_text: str
    target: int | None
    target_source: str | None  # "line" | "headcount" (share × headcount) | "members" (group sum)
    share_percent: int | None
    headcount: int | None
    done: Decimal
    remaining: Decimal | None  # never negative
    over: Decimal | None  # done − target when positive, else 0
    percent: Decimal | None  # done / target × 100, floored to 0.1 (100 only when met)
    expected: Decimal | None  # target × elapsed days / period days, 0.01
    status: str
    as_of: date
    is_demo: bool
    note: str

    @property
    def year(self) -> int:
        return self.period.year

    @property
    def standby(self) -> bool:
        return self.status == STANDBY

    @property
    def needs_headcount(self) -> bool:
        return self.status == NEEDS_HEADCOUNT

    @property
    def spans_months(self) -> bool:
        return self.period.spans_months

    @property
    def behind_pace(self) -> bool:
        return self.status in BEHIND_PACE

    @property
    def ratio(self) -> Fraction | None:
        """done / target, exact (for spreadsheets' percentage cells)."""
        if not self.target:
            return None
        return Fraction(self.done) / self.target

    @property
    def shortfall(self) -> Decimal | None:
        """How far below the expected pace (0 when at or above it)."""
        if self.expected is None:
            return None
        return max(self.expected - self.done, Decimal(0))


@dataclass(frozen=True)
class UnitMonth:
    """「这个月还差多少」: the unit's lines whose period contains `month` of `year`.

    When there are none, `next_month` is the next month of the year with a line and
    `year_lines` holds every line of the unit's year with its progress (the year's status).
    """

    jurisdiction: str
    unit: UnitInfo
    year: int
    month: int
    as_of: date
    lines: tuple[LineProgress, ...]
    next_month: int | None
    year_lines: tuple[LineProgress, ...]
    plan_found: bool  # the jurisdiction has a plan for the year at all
    is_demo: bool  # the plan is a demo copy


@dataclass(frozen=True)
class UnitYear:
    """「今年完成几个了」: every line of the unit's year, as of `as_of`."""

    jurisdiction: str
    unit: UnitInfo
    year: int
    as_of: date
    lines: tuple[LineProgress, ...]
    plan_found: bool
    is_demo: bool


@dataclass(frozen=True)
class UnitSchedule:
    """「我们几月份献血」: the months with a line, and the next (or current) one."""

    jurisdiction: str
    unit: UnitInfo
    year: int
    months: int  # bit set, the union of the lines' periods
    next_month: int | None  # first month ≥ today's month with a line (None when none is left)
    lines: tuple[LineProgress, ...]
    plan_found: bool
    is_demo: bool

    @property
    def month_list(self) -> tuple[int, ...]:
        return Period(self.year, self.months).month_list if self.months else ()


@dataclass(frozen=True)
class Totals:
    """A 合计 over lines of one measure, by the roll-up rule (sub-units never added twice)."""

    measure: str
    target: int
    done: Decimal
    lines: int
    behind: int

    @property
    def remaining(self) -> Decimal:
        return max(self.target - self.done, Decimal(0))

    @property
    def over(self) -> Decimal:
        return max(self.done - self.target, Decimal(0))

    @property
    def percent(self) -> Decimal | None:
        return percent_of(self.done, self.target)


@dataclass(frozen=True)
class MonthSummary:
    """A month of the schedule: its lines, and a 合计 of the lines that begin in it."""

    month: int
    lines: tuple[LineProgress, ...]
    totals: tuple[Totals, ...]


@dataclass(frozen=True)
class CategorySummary:
    category: str  # 「未分类」 when the unit has none
    kind: str
    totals: Totals


def percent_of(done: Decimal, target: int | None) -> Decimal | None:
    if not target:
        return None
    return (done * 100 / target).quantize(Decimal("0.1"), rounding=ROUND_FLOOR)
