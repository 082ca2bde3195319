"""Free-blood entitlement of a donor and their family, computed from a loaded Policy.

Pure functions over in-memory records: no database, no I/O. Callers pass local dates
in the jurisdiction's timezone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

from bot.errors import DonorbotError
from bot.policy.dates import next_day, window_last_day
from bot.policy.model import KINDS, RELATIONS, Contact, Gap, Kind, Multiple, Policy

Status = Literal["ok", "gap", "not_configured"]


class MissingFigure(DonorbotError):
    """quick_answer needs a figure the question did not give (ask back, never guess)."""

    def __init__(self, figure: Literal["volume_ml", "count"]) -> None:
        super().__init__(f"the rule needs the {figure} donated")
        self.figure = figure


@dataclass(frozen=True)
class Donation:
    date: dt.date
    kind: Kind
    volume_ml: int = 0
    therapeutic_units: float = 0  # 治疗量, for platelets

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown donation kind {self.kind!r}")
        if self.volume_ml < 0 or self.therapeutic_units < 0:
            raise ValueError("a donation cannot be negative")


@dataclass(frozen=True)
class LedgerEntry:
    """Blood already used free or reimbursed; it reduces what is left."""

    date: dt.date
    volume_ml: int
    relation: str = "self"
    person: str = ""  # tells two relatives of one relation apart for per-person pools

    def __post_init__(self) -> None:
        if self.relation != "self" and self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}")
        if self.volume_ml < 0:
            raise ValueError("a ledger entry cannot be negative")


@dataclass(frozen=True)
class DonationWindow:
    """One donation's part of an allowance: its multiplier today and when that changes."""

    date: dt.date
    kind: Kind
    credited_ml: int  # after the policy's platelet conversion, applied once
    multiplier: int | None  # None: the applicable rule is unlimited
    last_day: dt.date | None = None  # last day at this multiplier; None = it does not change
    next_multiplier: int | None = None

    @property
    def changes_on(self) -> dt.date | None:
        return next_day(self.last_day) if self.last_day else None


@dataclass(frozen=True)
class NextChange:
    date: dt.date
    allowance_ml: int
    remaining_ml: int


@dataclass(frozen=True)
class Entitlement:
    policy_id: str
    relation: str
    status: Status
    allowance_ml: int | None  # status "ok": None means unlimited; otherwise not meaningful
    used_ml: int
    remaining_ml: int | None  # never below 0; None when unlimited or not "ok"
    rule_text: str  # the clause that applied
    citation: str
    verified: bool  # False: say 「以原文为准」
    contact: Contact  # whom to ask (always given; needed for "gap" and "not_configured")
    # reason: no_donations | uncovered_band | platelet_conversion_unknown | not_configured |
    #         not_in_effect | relation_not_covered
    reason: str = ""
    detail: str = ""  # for not_configured: the policy's own explanation
    up_to: bool = False
    measure_value: int = 0  # cumulative credited ml (or count) the threshold was read from
    windows: tuple[DonationWindow, ...] = ()
    next_change: NextChange | None = None
    gap: Gap | None = None

    @property
    def unlimited(self) -> bool:
        return self.status == "ok" and self.allowance_ml is None


Credits = list[tuple[Donation, int]]


def credited_ml(policy: Policy, donation: Donation) -> int | None:
    """The volume a donation counts for: platelets are converted here, and only here."""
    if donation.kind == "whole_blood":
        return donation.volume_ml
    if policy.platelet_unit_ml is None:
        return None
    return int(Decimal(str(donation.therapeutic_units)) * policy.platelet_unit_ml)


def credits_of(policy: Policy, donations: Sequence[Donation], today: dt.date) -> Credits | None:
    """(donation, credited ml) up to today; None when a platelet donation cannot be counted."""
    out: Credits = []
    for donation in sorted(donations, key=lambda d: d.date):
        if donation.date > today:
            continue
        ml = credited_ml(policy, donation)
        if ml is None:
            return None
        out.append((donation, ml))
    return out


def apply_multiple(
    multiple: Multiple, credits: Credits, today: dt.date
) -> tuple[int, tuple[DonationWindow, ...]]:
    """Σ credited ml × each donation's multiplier on `today` (windows exact to the day)."""
    total, windows = 0, []
    for donation, ml in credits:
        multiplier, last_day, after = multiple.multiplier, None, None
        if multiple.window_years is not None:
            end = window_last_day(donation.date, multiple.window_years)
            after = multiple.after_window_multiplier
            if today <= end:
                last_day = end
            else:
                multiplier, after = after or 0, None
        total += ml * multiplier
        windows.append(
            DonationWindow(donation.date, donation.kind, ml, multiplier, last_day, after)
        )
    return total, tuple(windows)


def next_change(
    multiple: Multiple, credits: Credits, windows: Sequence[DonationWindow], used: int
) -> NextChange | None:
    dates = [w.changes_on for w in windows if w.changes_on is not None]
    if not dates:
        return None
    when = min(dates)
    allowance, _ = apply_multiple(multiple, credits, when)
    return NextChange(when, allowance, max(0, allowance - used))


def answer(policy: Policy, relation: str, status: Status, **fields: object) -> Entitlement:
    """An Entitlement carrying the policy's citation and contact, with `fields` set."""
    blank = Entitlement(
        policy_id=policy.id,
        relation=relation,
        status=status,
        allowance_ml=None,
        used_ml=0,
        remaining_ml=None,
        rule_text="",
        citation=policy.source.citation,
        verified=policy.source.verified,
        contact=policy.contact,
    )
    return replace(blank, **fields)  # type: ignore[arg-type]


def not_configured(policy: Policy, relation: str, reason: str = "not_configured") -> Entitlement:
    detail = policy.not_configured_reason if reason == "not_configured" else ""
    return answer(policy, relation, "not_configured", reason=reason, detail=detail)


def platelet_gap(policy: Policy, relation: str) -> Entitlement:
    return answer(policy, relation, "gap", reason="platelet_conversion_unknown")


def evaluate(
    policy: Policy, value: int, credits: Credits, used: int, today: dt.date, relation: str = "self"
) -> Entitlement:
    """The donor rule for a cumulative `value` applied to `credits`, minus `used`."""
    donor = policy.donor
    assert donor is not None
    if value == 0:
        return answer(
            policy,
            relation,
            "ok",
            allowance_ml=0,
            used_ml=used,
            remaining_ml=0,
            reason="no_donations",
        )
    rule = donor.rule_for(value)
    if rule is None:
        return answer(
            policy,
            relation,
            "gap",
            reason="uncovered_band",
            used_ml=used,
            measure_value=value,
            gap=donor.gap_for(value),
        )
    if rule.multiple is None:
        windows = tuple(DonationWindow(d.date, d.kind, ml, None) for d, ml in credits)
        return answer(
            policy,
            relation,
            "ok",
            used_ml=used,
            rule_text=rule.clause,
            measure_value=value,
            windows=windows,
        )
    allowance, windows = apply_multiple(rule.multiple, credits, today)
    return answer(
        policy,
        relation,
        "ok",
        allowance_ml=allowance,
        used_ml=used,
        remaining_ml=max(0, allowance - used),
        rule_text=rule.clause,
        up_to=rule.multiple.up_to,
        measure_value=value,
        windows=windows,
        next_change=next_change(rule.multiple, credits, windows, used),
    )
