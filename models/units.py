"""The one unit-name resolver: exact → alias → normalised → ambiguous or unmatched (never a guess).

Imports, the review queue, chat and the console all resolve a unit name through here. A
`UnitDirectory` holds one jurisdiction's units and aliases in memory, so an import loads it once
and resolves a million rows without a query per row; `resolve_unit` is the one-off form.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from rapidfuzz import fuzz, process
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.plans import JurisdictionRow, Unit, UnitAlias

Status = Literal["exact", "alias", "normalized", "ambiguous", "unmatched"]

_SUFFIXES = ("及二级机构", "及下属单位", "及所属单位", "及直属单位", "及下属机构")
_PREFIXES = ("市", "区", "县")
# a leading 市/区/县 that belongs to the next character is part of the name, not a prefix
_BOUND_PREFIXES = frozenset(
    {"市委", "市政", "市场", "市民", "市级", "市属", "市直", "市区", "市中"}
    | {"区委", "区政", "区域", "区级", "区属", "区直"}
    | {"县委", "县政", "县级", "县属", "县直", "县城"}
)
_BRACKETS = str.maketrans({"【": "(", "】": ")", "[": "(", "]": ")", "〔": "(", "〕": ")"})
SUGGESTION_CUTOFF = 50.0


def normalize_unit_name(name: str) -> str:
    """「 市财政局及二级机构 」→「财政局」; 「市委办公室」 keeps its 市 (it is part of 市委)."""
    text = unicodedata.normalize("NFKC", name).translate(_BRACKETS)
    text = re.sub(r"\s+", "", text).casefold()
    stripped = True
    while stripped:
        stripped = False
        for suffix in _SUFFIXES:
            if text.endswith(suffix) and len(text) > len(suffix) + 1:
                text = text[: -len(suffix)]
                stripped = True
    if text[:1] in _PREFIXES and text[:2] not in _BOUND_PREFIXES and len(text) >= 3:
        text = text[1:]
    return text


@dataclass(frozen=True)
class UnitRef:
    """What a resolution names: enough to credit, reply and list, detached from any session."""

    id: int
    name: str
    parent_id: int | None = None
    category: str | None = None
    is_group: bool = False


@dataclass(frozen=True)
class Suggestion:
    unit: UnitRef
    score: float  # 0–100 (rapidfuzz WRatio on the normalised names)


@dataclass(frozen=True)
class Resolution:
    query: str
    normalized: str
    status: Status
    unit: UnitRef | None = None
    choices: tuple[UnitRef, ...] = ()  # when ambiguous: every unit the name could mean
    suggestions: tuple[Suggestion, ...] = ()  # when unmatched: the closest names, best first

    @property
    def matched(self) -> bool:
        return self.unit is not None


@dataclass
class UnitDirectory:
    """One jurisdiction's units and aliases, indexed for resolution without further queries."""

    jurisdiction: str
    place_names: tuple[str, ...] = ()
    by_name: dict[str, UnitRef] = field(default_factory=dict)
    by_normalized: dict[str, list[UnitRef]] = field(default_factory=lambda: defaultdict(list))
    by_alias: dict[str, UnitRef] = field(default_factory=dict)

    @classmethod
    async def load(cls, session: AsyncSession, jurisdiction: str) -> UnitDirectory:
        place = await session.scalar(
            select(JurisdictionRow.name).where(JurisdictionRow.code == jurisdiction)
        )
        directory = cls(jurisdiction, _place_prefixes(place or ""))
        units = await session.scalars(select(Unit).where(Unit.jurisdiction == jurisdiction))
        refs = {u.id: directory.add(u) for u in units}
        aliases = await session.execute(
            select(UnitAlias.normalized, UnitAlias.unit_id).where(
                UnitAlias.jurisdiction == jurisdiction
            )
        )
        for normalized, unit_id in aliases:
            directory.by_alias[normalized] = refs[unit_id]
        return directory

    def add(self, unit: Unit) -> UnitRef:
        """Index a unit (also one created during the current import)."""
        ref = UnitRef(unit.id, unit.name, unit.parent_id, unit.category, unit.is_group)
        self.by_name[unit.name] = ref
        self.by_normalized[normalize_unit_name(unit.name)].append(ref)
        return ref

    def resolve(self, name: str) -> Resolution:
        query = name.strip()
        normalized = normalize_unit_name(query)
        if query in self.by_name:
            return Resolution(query, normalized, "exact", self.by_name[query])
        for candidate in self._candidates(query, normalized):
            if candidate in self.by_alias:
                return Resolution(query, normalized, "alias", self.by_alias[candidate])
            found = self.by_normalized.get(candidate, [])
            if len(found) == 1:
                return Resolution(query, normalized, "normalized", found[0])
            if len(found) > 1:
                return Resolution(query, normalized, "ambiguous", choices=tuple(found))
        partial = self._containing(normalized)
        if len(partial) > 1:
            return Resolution(query, normalized, "ambiguous", choices=partial)
        return Resolution(query, normalized, "unmatched", suggestions=self.suggest(normalized))

    def _candidates(self, query: str, normalized: str) -> list[str]:
        """The normalised name, then the same without the jurisdiction's own place name."""
        out = [normalized]
        for place in self.place_names:
            if query.startswith(place) and len(query) > len(place) + 1:
                out.append(normalize_unit_name(query[len(place) :]))
        return out

    def _containing(self, normalized: str) -> tuple[UnitRef, ...]:
        """「吉首大学」 → both 吉首大学张家界校区 and 吉首大学张家界学院."""
        if len(normalized) < 2:
            return ()
        hits = [
            ref for key, refs in self.by_normalized.items() if normalized in key for ref in refs
        ]
        return tuple(sorted(hits, key=lambda r: (len(r.name), r.name)))

    def suggest(self, normalized: str, limit: int = 3) -> tuple[Suggestion, ...]:
        choices = {key: key for key in self.by_normalized}
        found = process.extract(
            normalized,
            choices,
            scorer=fuzz.WRatio,
            limit=limit,
            score_cutoff=SUGGESTION_CUTOFF,
        )
        return tuple(
            Suggestion(self.by_normalized[key][0], round(score, 1)) for key, score, _ in found
        )


def _place_prefixes(place: str) -> tuple[str, ...]:
    """「张家界市」→ (「张家界市」, 「张家界」): how files prefix a unit with the place name."""
    if not place:
        return ()
    short = place[:-1] if place[-1:] in "市区县" and len(place) > 2 else ""
    return tuple(p for p in (place, short) if p)


async def resolve_unit(session: AsyncSession, jurisdiction: str, name: str) -> Resolution:
    """Resolve one name (chat, console). An import builds a `UnitDirectory` once instead."""
    directory = await UnitDirectory.load(session, jurisdiction)
    return directory.resolve(name)


class AliasConflict(ValueError):
    """The alias already names another unit; the message says which."""


async def add_alias(
    session: AsyncSession, jurisdiction: str, alias: str, unit: Unit | UnitRef
) -> UnitAlias | None:
    """Record 「alias」 as another name of `unit`. Returns None when it already names that unit."""
    normalized = normalize_unit_name(alias)
    if not normalized:
        raise AliasConflict("别名不能为空")
    existing = await session.scalar(
        select(UnitAlias).where(
            UnitAlias.jurisdiction == jurisdiction, UnitAlias.normalized == normalized
        )
    )
    if existing is not None:
        if existing.unit_id == unit.id:
            return None
        other = await session.get(Unit, existing.unit_id)
        owner = other.name if other else existing.unit_id
        raise AliasConflict(f"别名「{alias}」已指向「{owner}」；如需改指，请先删除该别名")
    row = UnitAlias(
        jurisdiction=jurisdiction, unit_id=unit.id, alias=alias.strip(), normalized=normalized
    )
    session.add(row)
    await session.flush()
    return row
