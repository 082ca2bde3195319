"""Calendar arithmetic for windows and intervals, on local dates (no time of day).

A window of N years from a donation follows 民法典 第二百零一、二百零二条: the donation
day is not counted, the window's last day is the same month and day N years later, or
the month's last day when that date does not exist (29 February).
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or the last day of that month if it is shorter."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def add_years(day: date, years: int) -> date:
    return add_months(day, 12 * years)


def window_last_day(donated: date, years: int) -> date:
    """The last day on which a window of `years` from `donated` still applies."""
    return add_years(donated, years)


def next_day(day: date) -> date:
    return day + timedelta(days=1)


def local_date(instant: datetime, timezone: str) -> date:
    """`today` for the engine: an aware instant (e.g. Clock.now()) as a local date."""
    return instant.astimezone(ZoneInfo(timezone)).date()
