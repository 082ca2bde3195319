"""The public questions: 「我能免费用多少血」, for the donor, a relative, or a quick figure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date

from bot.policy.engine import (
    Credits,
    Donation,
    DonationWindow,
    Entitlement,
    LedgerEntry,
    MissingFigure,
    NextChange,
    Status,
    answer,
    apply_multiple,
    credits_of,
    evaluate,
    next_change,
    not_configured,
    platelet_gap,
)
from bot.policy.model import RELATIONS, Contact, Policy, Pool


@dataclass(frozen=True)
class FamilyShare:
    """What one relation (or one named relative, for per-person pools) has and has used."""

    relation: str
    person: str
    allowance_ml: int
    used_ml: int
    remaining_ml: int


@dataclass(frozen=True)
class FamilyEntitlement:
    policy_id: str
    status: Status
    relations: tuple[str, ...]  # who qualifies
    pool: Pool | None  # "shared": one 合计 pool for all of them; "each": per person
    allowance_ml: int  # the pool, or each person's allowance
    used_ml: int  # all relatives' use under the rule
    remaining_ml: int | None  # the shared pool's rest (never below 0); None for "each"
    shares: tuple[FamilyShare, ...]
    rule_text: str
    citation: str
    verified: bool
    contact: Contact
    reason: str = ""
    detail: str = ""
    relations_note: str = ""
    multiplier: int = 0
    up_to: bool = False
    windows: tuple[DonationWindow, ...] = ()
    next_change: NextChange | None = None


def entitlement(
    policy: Policy,
    donations: Sequence[Donation],
    ledger: Sequence[LedgerEntry],
    *,
    today: date,
    relation: str = "self",
) -> Entitlement:
    """What `relation` ("self" = the donor) may still use free, from the donor's records."""
    if relation != "self":
        return _relative(
            policy, family_entitlement(policy, donations, ledger, today=today), relation
        )
    if policy.donor is None:
        return not_configured(policy, relation)
    if not policy.effective.covers(today):
        return not_configured(policy, relation, "not_in_effect")
    credits = credits_of(policy, donations, today)
    if credits is None:
        return platelet_gap(policy, relation)
    value = sum(ml for _, ml in credits) if policy.donor.measure == "volume_ml" else len(credits)
    used = sum(e.volume_ml for e in ledger if e.relation == "self" and e.date <= today)
    return evaluate(policy, value, credits, used, today)


def quick_answer(
    policy: Policy, volume_ml: int | None, count: int | None, *, today: date
) -> Entitlement:
    """「献了600毫升能免费用多少血」: as if the volume were donated today, with no records.

    Raises MissingFigure when the rule needs a figure the question lacks (ask back).
    """
    if (volume_ml is not None and volume_ml < 0) or (count is not None and count < 0):
        raise ValueError("a donated volume or count cannot be negative")
    if policy.donor is None:
        return not_configured(policy, "self")
    if not policy.effective.covers(today):
        return not_configured(policy, "self", "not_in_effect")
    value = volume_ml if policy.donor.measure == "volume_ml" else count
    if value is None:
        raise MissingFigure(policy.donor.measure)
    rule = policy.donor.rule_for(value)
    if volume_ml is None and value > 0 and rule is not None and not rule.unlimited:
        raise MissingFigure("volume_ml")
    credits: Credits = []
    if volume_ml:
        credits = [(Donation(today, "whole_blood", volume_ml), volume_ml)]
    return evaluate(policy, value, credits, 0, today)


def family_entitlement(
    policy: Policy,
    donations: Sequence[Donation],
    ledger: Sequence[LedgerEntry],
    *,
    today: date,
) -> FamilyEntitlement:
    """Who in the donor's family qualifies, how much, and whether they share one pool."""
    rule = policy.family
    blank = FamilyEntitlement(
        policy_id=policy.id,
        status="not_configured",
        relations=(),
        pool=None,
        allowance_ml=0,
        used_ml=0,
        remaining_ml=None,
        shares=(),
        rule_text="",
        citation=policy.source.citation,
        verified=policy.source.verified,
        contact=policy.contact,
        reason="not_configured",
        detail=policy.not_configured_reason,
    )
    if rule is None:
        return blank
    if not policy.effective.covers(today):
        return _with(blank, reason="not_in_effect")
    credits = credits_of(policy, donations, today)
    if credits is None:
        return _with(blank, status="gap", reason="platelet_conversion_unknown")
    allowance, windows = apply_multiple(rule.multiple, credits, today)
    entries = [e for e in ledger if e.relation in rule.relations and e.date <= today]
    used = sum(e.volume_ml for e in entries)
    shares = _shares(rule.relations, rule.pool, allowance, entries)
    return FamilyEntitlement(
        policy_id=policy.id,
        status="ok",
        relations=rule.relations,
        pool=rule.pool,
        allowance_ml=allowance,
        used_ml=used,
        remaining_ml=max(0, allowance - used) if rule.pool == "shared" else None,
        shares=shares,
        rule_text=rule.clause,
        citation=policy.source.citation,
        verified=policy.source.verified,
        contact=policy.contact,
        reason="" if credits else "no_donations",
        relations_note=rule.relations_note,
        multiplier=rule.multiple.multiplier,
        up_to=rule.multiple.up_to,
        windows=windows,
        next_change=next_change(
            rule.multiple, credits, windows, used if rule.pool == "shared" else 0
        ),
    )


def _shares(
    relations: tuple[str, ...], pool: Pool, allowance: int, entries: list[LedgerEntry]
) -> tuple[FamilyShare, ...]:
    if pool == "shared":
        used = sum(e.volume_ml for e in entries)
        return tuple(
            FamilyShare(r, "", allowance, _used(entries, r), max(0, allowance - used))
            for r in relations
        )
    out = []
    for relation in relations:
        people = sorted({e.person for e in entries if e.relation == relation}) or [""]
        for person in people:
            used = sum(e.volume_ml for e in entries if (e.relation, e.person) == (relation, person))
            out.append(FamilyShare(relation, person, allowance, used, max(0, allowance - used)))
    return tuple(out)


def _used(entries: list[LedgerEntry], relation: str) -> int:
    return sum(e.volume_ml for e in entries if e.relation == relation)


def _relative(policy: Policy, family: FamilyEntitlement, relation: str) -> Entitlement:
    """One relative's view of the family rule, shaped like the donor's own answer."""
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}")
    if family.status != "ok":
        return answer(policy, relation, family.status, reason=family.reason, detail=family.detail)
    if relation not in family.relations:
        return answer(
            policy, relation, "ok", allowance_ml=0, remaining_ml=0,
            rule_text=family.rule_text, reason="relation_not_covered",
        )  # fmt: skip
    if family.pool == "shared":
        used, remaining = family.used_ml, family.remaining_ml
    else:
        # without a person's name, count every entry of the relation: never overstates the rest
        used = sum(s.used_ml for s in family.shares if s.relation == relation)
        remaining = max(0, family.allowance_ml - used)
    change = family.next_change
    if change is not None:
        change = replace(change, remaining_ml=max(0, change.allowance_ml - used))
    return answer(
        policy, relation, "ok", allowance_ml=family.allowance_ml, used_ml=used,
        remaining_ml=remaining, rule_text=family.rule_text, reason=family.reason,
        up_to=family.up_to, windows=family.windows, next_change=change,
    )  # fmt: skip


def _with(family: FamilyEntitlement, **fields: object) -> FamilyEntitlement:
    return replace(family, **fields)  # type: ignore[arg-type]
