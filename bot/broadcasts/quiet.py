"""Quiet hours: no non-critical pushes at night, in the jurisdiction's own timezone."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def parse_quiet_hours(text: str) -> tuple[time, time] | None:
    """`"21:00-08:00"` → (21:00, 08:00); `""` → None. A span may wrap midnight."""
    if not text:
        return None
    m = _SPAN.match(text.strip())
    if not m or m.group(1, 2) == m.group(3, 4):
        raise ValueError(f"quiet_hours must look like 21:00-08:00, not {text!r}")
    return time(int(m[1]), int(m[2])), time(int(m[3]), int(m[4]))


def quiet_until(local_now: datetime, span: tuple[time, time] | None) -> datetime | None:
    """The local time the quiet span containing `local_now` ends, or None if not quiet."""
    if span is None:
        return None
    start, end = span
    now = local_now.timetz().replace(tzinfo=None)
    if start < end:
        quiet = start <= now < end
        end_day = local_now.date()
    else:  # wraps midnight: 21:00-08:00
        quiet = now >= start or now < end
        end_day = local_now.date() + timedelta(days=1 if now >= start else 0)
    if not quiet:
        return None
    return datetime.combine(end_day, end, tzinfo=local_now.tzinfo)
