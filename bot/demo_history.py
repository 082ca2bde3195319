"""A deterministic synthetic donation history for a demo plan, designed from its progress.

Input: the year's `JurisdictionProgress` before any donations (targets resolved, periods, the
unit tree). Output: donations such that, in the current month, some line is exactly on
target, one is behind its pace, one is ahead (or over-fulfilled when no line can be ahead any
more, e.g. on 31 December), and one has not started. Those "anchor" lines are chosen among
lines nothing else can touch up to today: no other line in their unit's subtree shares their
months so far. Every other line gets a plausible share of its target.

Amounts are measured with `models.progress_tally.convert`, the function the progress
queries use, so the generator and the bot cannot disagree about what a donation is worth.
Synthetic people only: donor keys, 「演示献血者」 names, record ids prefixed `DEMO-`.
"""

from __future__ import annotations

import calendar
import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from models.progress import DEFAULT_PLATELET_UNITS, JurisdictionProgress, LineProgress
from models.progress_period import month_start
from models.progress_tally import Bucket, convert

BLOOD_TYPES = (("A", 28), ("B", 31), ("O", 32), ("AB", 9))
ANCHOR_ORDER = ("behind", "ahead", "not_started", "met", "over")
_EXPLICIT = frozenset({"line", "headcount"})


@dataclass(frozen=True)
class DemoDonation:
    record_id: str
    unit_id: int
    day: date
    donor: str | None  # a synthetic donor key; None = a walk-in without an id
    kind: str
    volume_ml: int
    therapeutic_units: float
    blood_type: str


@dataclass
class History:
    donations: list[DemoDonation] = field(default_factory=list)
    anchors: dict[str, str] = field(default_factory=dict)  # intended state → unit name


def line_key(line: LineProgress) -> str:
    """Stable across databases: a digest of what identifies the line, not its row id."""
    raw = f"{line.unit_name}|{line.period.months}|{line.kind}|{line.measure}"
    return hashlib.sha1(raw.encode()).hexdigest()[:10]  # noqa: S324 - an id, not security


def amount(rows: Iterable[DemoDonation], measure: str) -> Decimal:
    bucket, donors = Bucket(), dict[str, int]()
    for row in rows:
        bucket.donations += 1
        if row.kind == "whole_blood":
            bucket.whole_ml += row.volume_ml
        else:
            bucket.platelets += Decimal(str(row.therapeutic_units))
        if row.donor is None:
            bucket.anonymous += 1
        else:
            bucket.donors.add(donors.setdefault(row.donor, len(donors)))
    return convert([bucket], measure, DEFAULT_PLATELET_UNITS)


class _Generator:
    def __init__(self, progress: JurisdictionProgress, today: date) -> None:
        self.progress, self.today = progress, today
        self.children: dict[int, list[int]] = defaultdict(list)
        for unit, parent in progress.parents.items():
            if parent is not None:
                self.children[parent].append(unit)
        self.by_unit: dict[int, list[DemoDonation]] = defaultdict(list)
        self.serial: dict[str, int] = defaultdict(int)
        self.history = History()

    def subtree(self, unit_id: int) -> set[int]:
        found, stack = {unit_id}, [unit_id]
        while stack:
            for child in self.children.get(stack.pop(), ()):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found

    def months_so_far(self, line: LineProgress) -> int:
        return sum(
            1 << m for m in line.period.month_list if month_start(line.year, m) <= self.today
        )

    def done(self, line: LineProgress) -> Decimal:
        units, months = self.subtree(line.unit_id), set(line.period.month_list)
        rows = [
            r
            for u in units
            for r in self.by_unit.get(u, ())
            if r.day.year == line.year and r.day.month in months and r.day <= self.today
        ]
        return amount(rows, line.measure)

    def anchors(self) -> dict[int, str]:
        """line_id → the state it must show in the current month."""
        month = self.today.month
        candidates = [
            line
            for line in self.progress.lines
            if line.target_source in _EXPLICIT
            and line.target
            and line.period.contains(month)
            and self._untouched(line)
        ]
        candidates.sort(key=lambda line: (line.unit_name, line.period.months, line.kind))
        chosen: dict[int, str] = {}
        for state in ANCHOR_ORDER:
            free = [line for line in candidates if line.line_id not in chosen]
            pick = _pick(state, free, self.today)
            if pick is not None:
                chosen[pick.line_id] = state
                self.history.anchors[state] = pick.unit_name
        return chosen

    def _untouched(self, anchor: LineProgress) -> bool:
        units, months = self.subtree(anchor.unit_id), self.months_so_far(anchor)
        return not any(
            other.line_id != anchor.line_id
            and other.unit_id in units
            and other.period.months & months
            for other in self.progress.lines
        )

    def run(self) -> History:
        anchors = self.anchors()
        depth = {u: len(self.progress.ancestors(u)) for u in self.progress.parents}
        order = sorted(
            self.progress.lines,
            key=lambda line: (-depth.get(line.unit_id, 0), line.period.days, line.unit_name),
        )
        for line in order:
            # seeded per line, not per day: finished months keep their rows from day to day
            rng = random.Random(f"{self.progress.jurisdiction}|{line.year}|{line_key(line)}")
            if line.kind == "emergency":
                self.fill(line, Decimal(rng.randint(0, 6)), rng, measure="人次")
            elif line.target_source in _EXPLICIT and line.target is not None:
                wanted = self.wanted(line, anchors.get(line.line_id), rng)
                self.fill(line, wanted - self.done(line), rng)
        self.history.donations.sort(key=lambda r: r.record_id)
        return self.history

    def wanted(self, line: LineProgress, state: str | None, rng: random.Random) -> Decimal:
        target = line.target or 0
        if state is not None:
            return Decimal(_anchor_amount(state, line, self.today))
        if line.period.end <= month_start(self.today.year, self.today.month):
            return Decimal(round(target * rng.uniform(0.6, 1.15)))
        pace = line.period.pace(target, self.today)
        return Decimal(min(round(float(pace) * rng.uniform(0.4, 1.5)), round(target * 1.3)))

    def fill(
        self, line: LineProgress, need: Decimal, rng: random.Random, measure: str | None = None
    ) -> None:
        """Donations to the line's own unit, on its days up to today, worth exactly `need`."""
        measure = measure or line.measure
        days = [d for m in line.period.month_list for d in _days(line.year, m) if d <= self.today]
        prefix = f"{line.year}-{line_key(line)}"
        while need > 0 and days:
            row = self._donation(rng, prefix, line.unit_id, rng.choice(days))
            step = amount([_resized(row, 200)], measure)  # 1 人份 / 1 person / 200 ml
            value = amount([row], measure)
            if need % step:  # half a unit left (after 300 ml): another 300 ml closes it
                row = _resized(row, 300)
            elif value > need or (row.volume_ml == 300 and need < 3 * step):
                row = _resized(row, 200)
            value = amount([row], measure)
            if value > need:
                break
            self._add(row)
            need -= value
            if measure == "人" and row.donor and rng.random() < 0.05:  # a repeat platelet donor
                again = self._donation(rng, prefix, line.unit_id, rng.choice(days))
                self._add(
                    replace(
                        again, donor=row.donor, kind="platelets", volume_ml=0, therapeutic_units=1.0
                    )
                )

    def _donation(self, rng: random.Random, prefix: str, unit_id: int, day: date) -> DemoDonation:
        n = self.serial[prefix]
        self.serial[prefix] += 1
        blood = rng.choices([b for b, _ in BLOOD_TYPES], [w for _, w in BLOOD_TYPES])[0]
        donor = None if rng.random() < 0.03 else f"{prefix}-{n}"
        record = f"DEMO-{prefix}-{n:05d}"
        if rng.random() < 0.2:
            units = rng.choice([1.0, 1.0, 2.0])
            return DemoDonation(record, unit_id, day, donor, "platelets", 0, units, blood)
        volume = rng.choice([200, 300, 400, 400])
        return DemoDonation(record, unit_id, day, donor, "whole_blood", volume, 0.0, blood)

    def _add(self, row: DemoDonation) -> None:
        self.history.donations.append(row)
        self.by_unit[row.unit_id].append(row)


def _resized(row: DemoDonation, volume_ml: int) -> DemoDonation:
    return replace(row, kind="whole_blood", volume_ml=volume_ml, therapeutic_units=0.0)


def _days(year: int, month: int) -> list[date]:
    first = month_start(year, month)
    return [first + timedelta(days=i) for i in range(calendar.monthrange(year, month)[1])]


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


def _ahead_low(line: LineProgress, today: date) -> int | None:
    """The least amount that is at or above the pace and still below the target, if any."""
    low = max(1, _ceil(line.period.pace(line.target or 0, today)))
    return low if low < (line.target or 0) else None


def _anchor_amount(state: str, line: LineProgress, today: date) -> int:
    target = line.target or 0
    if state == "not_started":
        return 0
    if state == "met":
        return target
    if state == "over":
        return target + max(1, target // 10)
    if state == "behind":
        return max(1, int(line.period.pace(target, today) / 2))
    low = _ahead_low(line, today) or target
    return low + (target - 1 - low) // 3


def _pick(state: str, free: Sequence[LineProgress], today: date) -> LineProgress | None:
    """The candidate best suited to show `state`, or None when none can."""

    def pace(line: LineProgress) -> Fraction:
        return line.period.pace(line.target or 0, today)

    if state == "behind":  # needs room for at least one donation below the pace
        return max((line for line in free if pace(line) > 1), key=pace, default=None)
    if state == "ahead":
        able = [line for line in free if _ahead_low(line, today) is not None]
        return max(able, key=lambda line: (line.target or 0) - pace(line), default=None)
    if state == "not_started":  # preferably a line that begins this month
        return max(free, key=lambda line: line.period.start, default=None)
    return min(free, key=lambda line: line.target or 0, default=None)


def plan_history(progress: JurisdictionProgress, today: date) -> History:
    """The history for `progress` (a demo plan's year, before any donations) up to `today`."""
    return _Generator(progress, today).run()
