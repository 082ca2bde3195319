"""The one donations query behind every progress number, and its conversion to a plan's measure.

One grouped statement per evaluation: `WHERE unit_id IN (:ids) AND donated_at >= :start AND
donated_at < :end`, grouped by unit and calendar month (with the month's donor ids as one
string when a line counts distinct donors). That is a range scan of `ix_donations_unit_date`
per unit — it never reads another unit's rows or another period's. Lines, roll-ups and
groups are then added up in Python from these per-unit-month buckets, so nested lines cost
no extra query.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, String, bindparam, case, cast, extract, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.donations import Donation

WHOLE_BLOOD_UNIT_ML = 200  # 1 人份 / 1 U = 200 ml whole blood
DEFAULT_PLATELET_UNITS = 2.0  # 1 治疗量 apheresis platelets = 2 人份 (400 ml) unless a policy says

BucketKey = tuple[int, int, int]  # (unit_id, year, month)


def _build(by_donor: bool) -> Select[*tuple[Any, ...]]:
    year = extract("year", Donation.donated_at)
    month = extract("month", Donation.donated_at)
    whole_ml = case((Donation.kind == "whole_blood", Donation.volume_ml), else_=0)
    platelets = case((Donation.kind == "platelets", Donation.therapeutic_units), else_=0.0)
    columns = [
        Donation.unit_id,
        year.label("y"),
        month.label("m"),
        func.count().label("n"),
        func.sum(whole_ml).label("whole_ml"),
        func.sum(platelets).label("platelets"),
    ]
    if by_donor:  # 人: the month's donor ids as one string, so the row count stays per month
        columns.append(func.count(Donation.donor_id).label("identified"))
        columns.append(func.aggregate_strings(cast(Donation.donor_id, String), ",").label("donors"))
    return (
        select(*columns)
        .where(
            Donation.unit_id.in_(bindparam("unit_ids", expanding=True)),
            Donation.donated_at >= bindparam("start"),
            Donation.donated_at < bindparam("end"),
        )
        .group_by(Donation.unit_id, year, month)
    )


# built once: a chat reply should not pay for constructing the same statement every time
_STATEMENTS = {by_donor: _build(by_donor) for by_donor in (False, True)}


def tally_statement(
    unit_ids: Collection[int], start: date, end: date, *, by_donor: bool
) -> Select[*tuple[Any, ...]]:
    """Per unit and month: donations, whole-blood ml, platelet 治疗量 (and donor when asked)."""
    return _STATEMENTS[by_donor].params(unit_ids=sorted(unit_ids), start=start, end=end)


@dataclass
class Bucket:
    """What one unit gave in one month."""

    donations: int = 0
    whole_ml: int = 0
    platelets: Decimal = Decimal(0)  # 治疗量
    donors: set[int] = field(default_factory=set)
    anonymous: int = 0  # donations without a donor id: each counts as its own donor


@dataclass
class Tally:
    buckets: dict[BucketKey, Bucket] = field(default_factory=dict)

    def done(
        self,
        unit_ids: Iterable[int],
        year: int,
        months: Iterable[int],
        measure: str,
        platelet_units: float,
    ) -> Decimal:
        """The donations of `unit_ids` in `months` of `year`, in `measure`."""
        picked = [
            b for u in unit_ids for m in months if (b := self.buckets.get((u, year, m))) is not None
        ]
        return convert(picked, measure, platelet_units)


def convert(buckets: Iterable[Bucket], measure: str, platelet_units: float) -> Decimal:
    """人次 = donations; 人 = distinct donors; 人份 = ml/200 + 治疗量×rule; ml = 人份×200."""
    picked = list(buckets)
    if measure == "人次":
        return Decimal(sum(b.donations for b in picked))
    if measure == "人":
        donors: set[int] = set()
        for b in picked:
            donors |= b.donors
        return Decimal(len(donors) + sum(b.anonymous for b in picked))
    whole_ml = Decimal(sum(b.whole_ml for b in picked))
    platelet_shares = sum((b.platelets for b in picked), Decimal(0)) * Decimal(str(platelet_units))
    if measure == "人份":
        return clean(whole_ml / WHOLE_BLOOD_UNIT_ML + platelet_shares)
    if measure == "ml":
        return clean(whole_ml + platelet_shares * WHOLE_BLOOD_UNIT_ML)
    raise ValueError(f"unknown plan measure {measure!r}")


def clean(value: Decimal) -> Decimal:
    """2.00 → 2, 7.50 → 7.5: the number a user reads."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


async def run_tally(
    session: AsyncSession, unit_ids: Collection[int], start: date, end: date, *, by_donor: bool
) -> Tally:
    """Execute the statement and fold its rows into per-unit-month buckets."""
    tally = Tally()
    if not unit_ids or start >= end:
        return tally
    params = {"unit_ids": sorted(unit_ids), "start": start, "end": end}
    rows = await session.execute(_STATEMENTS[by_donor], params)
    for row in rows:
        key = (int(row.unit_id), int(row.y), int(row.m))
        bucket = tally.buckets.setdefault(key, Bucket())
        bucket.donations += int(row.n)
        bucket.whole_ml += int(row.whole_ml or 0)
        bucket.platelets += Decimal(str(row.platelets or 0))
        if by_donor:
            bucket.anonymous += int(row.n) - int(row.identified)
            if row.donors:
                bucket.donors.update(map(int, row.donors.split(",")))
    return tally
