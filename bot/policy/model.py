"""Typed, immutable policy data: what a loaded `data/policies/*.toml` file says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from bot.errors import DonorbotError

Kind = Literal["whole_blood", "platelets"]
KINDS: tuple[Kind, ...] = ("whole_blood", "platelets")
Measure = Literal["volume_ml", "count"]
Pool = Literal["shared", "each"]
HonourMeasure = Literal["fengxian_count", "donations", "volunteer_hours", "awarded"]
# Relations a family rule may name. "self" is the donor and never part of a family rule.
RELATIONS = (
    "spouse",
    "parents",
    "children",
    "siblings",
    "spouse_parents",
    "grandparents",
    "grandchildren",
)


class PolicyError(DonorbotError):
    """A policy file is malformed: names the file and the line to look at."""

    def __init__(self, file: Path | str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = Path(file)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Source:
    title: str
    issuer: str
    year: int
    citation: str  # shown to users next to every answer
    verified: bool  # False: the clause wording was not checked against the original text
    note: str = ""


@dataclass(frozen=True)
class Effective:
    start: date | None
    end: date | None
    note: str = ""

    def covers(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class Contact:
    """Whom the bot tells a donor to ask when the rule is silent."""

    name: str
    phone: str = ""
    note: str = ""


@dataclass(frozen=True)
class Multiple:
    """`multiplier` × the donated volume; within `window_years` of each donation if set."""

    multiplier: int
    up_to: bool = False  # 「最高可…倍」: the figure is a ceiling, not a promise
    window_years: int | None = None
    after_window_multiplier: int | None = None  # required when window_years is set; 0 allowed


@dataclass(frozen=True)
class DonorRule:
    """One threshold band [low, high] (inclusive; high None = no upper end)."""

    clause: str
    low: int
    high: int | None
    unlimited: bool  # 终生免费用血
    multiple: Multiple | None

    def contains(self, value: int) -> bool:
        return self.low <= value and (self.high is None or value <= self.high)


@dataclass(frozen=True)
class Gap:
    """A band of the measure that no rule covers: reported, never filled."""

    measure: Measure
    low: int
    high: int | None


@dataclass(frozen=True)
class DonorRules:
    measure: Measure
    rules: tuple[DonorRule, ...]
    gaps: tuple[Gap, ...]

    def rule_for(self, value: int) -> DonorRule | None:
        return next((r for r in self.rules if r.contains(value)), None)

    def gap_for(self, value: int) -> Gap | None:
        return next(
            (g for g in self.gaps if g.low <= value and (g.high is None or value <= g.high)),
            None,
        )


@dataclass(frozen=True)
class FamilyRule:
    clause: str
    relations: tuple[str, ...]
    pool: Pool  # "shared": one 合计 pool for all relatives; "each": per person
    multiple: Multiple
    relations_note: str = ""


@dataclass(frozen=True)
class HonourRule:
    id: str
    name: str
    scheme: str  # honours of one scheme are levels of one ladder (bronze → silver → gold)
    measure: HonourMeasure
    threshold: int | None  # None for "awarded" honours, whose criteria the source does not give
    clause: str
    citation: str


@dataclass(frozen=True)
class HonourCounting:
    """How donations turn into 奉献奖 counts (200 ml whole blood = 1; 1 治疗量 = 1)."""

    whole_blood_ml_per_count: int
    platelet_units_per_count: int


@dataclass(frozen=True)
class Perk:
    id: str
    name: str
    kind: str  # leave | subsidy | parks | transit | outpatient | checkup | other
    text: str
    clause: str
    citation: str
    requires_honours: tuple[str, ...] = ()  # any one of them; empty = every donor
    days: tuple[int, int] | None = None
    amount_yuan: tuple[int, int] | None = None


@dataclass(frozen=True)
class Interval:
    """Minimum gap before donating `next` after having donated `after`."""

    id: str
    after: Kind
    next: Kind
    months: int
    days: int
    clause: str


@dataclass(frozen=True)
class Eligibility:
    intervals: tuple[Interval, ...]
    platelets_per_year: int | None  # per calendar year
    min_age: int
    max_age: int
    repeat_donor_max_age: int
    clause: str
    citation: str


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    file: Path
    jurisdictions: tuple[str, ...]
    timezone: str
    source: Source
    effective: Effective
    contact: Contact
    platelet_unit_ml: int | None  # 1 治疗量 counts as this many ml; None = the source is silent
    donor: DonorRules | None  # None = not configured (see not_configured_reason)
    family: FamilyRule | None
    not_configured_reason: str
    honours: tuple[HonourRule, ...]
    counting: HonourCounting | None
    perks: tuple[Perk, ...]
    eligibility: Eligibility | None

    @property
    def gaps(self) -> tuple[Gap, ...]:
        return self.donor.gaps if self.donor else ()
