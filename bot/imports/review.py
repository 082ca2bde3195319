"""The review queue: donations whose unit name matched no unit, kept with their raw name.

`units unmatched` lists them by name with fuzzy suggestions; `units alias add` records the
name as an alias and credits every queued row of that name; `units rematch` credits rows
whose names resolve now (after a plan import added the unit). Nothing is ever guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import DonorbotError
from bot.imports.common import unresolved_message
from models.audit import audit
from models.donations import Donation
from models.units import (
    AliasConflict,
    Resolution,
    UnitDirectory,
    UnitRef,
    add_alias,
    normalize_unit_name,
)


class ReviewError(DonorbotError):
    """A review command that cannot be carried out as asked (unknown unit, alias conflict)."""


@dataclass(frozen=True)
class QueueEntry:
    raw: str  # one of the raw spellings, as the file wrote it
    normalized: str
    rows: int
    resolution: Resolution  # against today's units: suggestions, or a match found since


async def unmatched_queue(session: AsyncSession, jurisdiction: str) -> list[QueueEntry]:
    """Queued names, most rows first, each resolved against the units as they are now."""
    directory = await UnitDirectory.load(session, jurisdiction)
    grouped = await session.execute(
        select(Donation.unit_raw_normalized, func.min(Donation.unit_raw), func.count())
        .where(
            Donation.jurisdiction == jurisdiction,
            Donation.unit_id.is_(None),
            Donation.unit_raw_normalized.is_not(None),
        )
        .group_by(Donation.unit_raw_normalized)
        .order_by(func.count().desc(), Donation.unit_raw_normalized)
    )
    return [
        QueueEntry(raw, normalized, count, directory.resolve(raw))
        for normalized, raw, count in grouped
        if raw is not None and normalized is not None
    ]


async def credit(session: AsyncSession, jurisdiction: str, normalized: str, unit: UnitRef) -> int:
    """Credit every queued donation of that (normalised) name to `unit`; return how many."""
    result = await session.execute(
        update(Donation)
        .where(
            Donation.jurisdiction == jurisdiction,
            Donation.unit_id.is_(None),
            Donation.unit_raw_normalized == normalized,
        )
        .values(unit_id=unit.id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def alias_and_credit(
    session: AsyncSession, jurisdiction: str, alias: str, unit_name: str, actor: str
) -> tuple[UnitRef, bool, int]:
    """(unit, alias newly recorded?, rows credited). The unit must resolve without doubt."""
    directory = await UnitDirectory.load(session, jurisdiction)
    found = directory.resolve(unit_name)
    if found.unit is None:
        raise ReviewError(unresolved_message(found))
    target = found.unit
    try:
        created = await add_alias(session, jurisdiction, alias, target) is not None
    except AliasConflict as exc:
        raise ReviewError(str(exc)) from exc
    credited = await credit(session, jurisdiction, normalize_unit_name(alias), target)
    audit(
        session,
        actor,
        "units.alias_add",
        jurisdiction,
        alias=alias,
        unit=target.name,
        credited=credited,
    )
    return target, created, credited


async def rematch(
    session: AsyncSession, jurisdiction: str, actor: str
) -> list[tuple[QueueEntry, int]]:
    """Credit queued names that resolve now (exact, alias or normalised); return what moved."""
    moved: list[tuple[QueueEntry, int]] = []
    for entry in await unmatched_queue(session, jurisdiction):
        if entry.resolution.unit is not None:
            moved.append(
                (
                    entry,
                    await credit(session, jurisdiction, entry.normalized, entry.resolution.unit),
                )
            )
    if moved:
        audit(session, actor, "units.rematch", jurisdiction, credited=sum(n for _, n in moved))
    return moved
