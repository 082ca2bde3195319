"""A plan line's period: a set of months of one year, and its calendar arithmetic.

`PlanLine.months` is a bit set (bit m = month m), so a single month, a range 「2~9月」, a set
「5、9、11月」 and 「全年」 are one representation. This module turns it into dates: where the
period starts and ends, how many days it has, and how many of them have passed by a date
(the expected pace of a line).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

FULL_YEAR = 0b1111111111110  # bits 1..12, the same as models.plans.ALL_MONTHS


def month_start(year: int, month: int) -> date:
    return date(year, month, 1)


def month_end(year: int, month: int) -> date:
    """The first day after the month (an exclusive bound)."""
    return date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)


@dataclass(frozen=True)
class Period:
    """The months of `year` in the bit set `months` (bit m = month m)."""

    year: int
    months: int

    @property
    def month_list(self) -> tuple[int, ...]:
        return tuple(m for m in range(1, 13) if self.months & (1 << m))

    def contains(self, month: int) -> bool:
        return bool(self.months & (1 << month))

    @property
    def first_month(self) -> int:
        return self.month_list[0]

    @property
    def last_month(self) -> int:
        return self.month_list[-1]

    @property
    def start(self) -> date:
        return month_start(self.year, self.first_month)

    @property
    def end(self) -> date:
        """The first day after the period's last month (exclusive)."""
        return month_end(self.year, self.last_month)

    @property
    def spans_months(self) -> bool:
        return len(self.month_list) > 1

    @property
    def is_full_year(self) -> bool:
        return self.months & FULL_YEAR == FULL_YEAR

    @property
    def days(self) -> int:
        return sum(calendar.monthrange(self.year, m)[1] for m in self.month_list)

    def elapsed_days(self, as_of: date) -> int:
        """Days of the period on or before `as_of` (today counts as elapsed)."""
        elapsed = 0
        for m in self.month_list:
            first, after = month_start(self.year, m), month_end(self.year, m)
            if as_of >= after - timedelta(days=1):
                elapsed += (after - first).days
            elif as_of >= first:
                elapsed += as_of.day
        return elapsed

    def pace(self, target: int, as_of: date) -> Fraction:
        """Where a line should be by `as_of`: target × elapsed days / the period's days."""
        return Fraction(target * self.elapsed_days(as_of), self.days)

    def has_started(self, as_of: date) -> bool:
        return as_of >= self.start

    def next_month_after(self, month: int) -> int | None:
        """The first month of the period after `month`, if any."""
        return next((m for m in self.month_list if m > month), None)

    @property
    def label(self) -> str:
        """「全年」, 「8-9月」, 「5、9、11月」 or 「3月」 (the canonical CSV's own forms)."""
        if self.is_full_year:
            return "全年"
        months = self.month_list
        if len(months) > 1 and months == tuple(range(months[0], months[-1] + 1)):
            return f"{months[0]}-{months[-1]}月"
        return "、".join(str(m) for m in months) + "月"


def month_bit(month: int) -> int:
    return 1 << month
