"""An injectable clock, so time-dependent code (freshness, "this month") is testable."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""

    def timestamp(self) -> float:
        """Seconds since the epoch."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def timestamp(self) -> float:
        return time.time()


class FixedClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, at: datetime | float) -> None:
        self._ts = at.timestamp() if isinstance(at, datetime) else float(at)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._ts, UTC)

    def timestamp(self) -> float:
        return self._ts

    def advance(self, seconds: float) -> None:
        self._ts += seconds

    def set(self, at: datetime | float) -> None:
        self._ts = at.timestamp() if isinstance(at, datetime) else float(at)


def local_now(clock: Clock, tz: str) -> datetime:
    """The clock's instant in a jurisdiction's timezone."""
    return clock.now().astimezone(ZoneInfo(tz))
