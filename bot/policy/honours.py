"""Honours earned, the perks they bring, and when a donor may give blood again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from bot.policy.dates import add_months, add_years
from bot.policy.engine import Donation
from bot.policy.model import KINDS, HonourRule, Kind, Perk, Policy


@dataclass(frozen=True)
class Honour:
    rule: HonourRule
    count: Decimal | None  # so far; None when donations cannot tell (volunteer hours, awards)
    achieved: bool | None  # None: decided by an office, not by the records
    remaining: Decimal | None  # to reach this level (0 once achieved)

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def name(self) -> str:
        return self.rule.name


@dataclass(frozen=True)
class Ineligible:
    """Why no date can be given for the next donation of a kind."""

    reason: str  # over_age | not_configured
    age_limit: int | None
    clause: str


def fengxian_count(policy: Policy, donations: Sequence[Donation]) -> Decimal:
    """奉献奖 counts: whole blood by volume (200 ml = 1, so 400 ml = 2), platelets by 治疗量."""
    counting = policy.counting
    if counting is None:
        return Decimal(0)
    total = Decimal(0)
    for donation in donations:
        if donation.kind == "whole_blood":
            total += Decimal(donation.volume_ml) / counting.whole_blood_ml_per_count
        else:
            units = Decimal(str(donation.therapeutic_units))
            total += units / counting.platelet_units_per_count
    return total


def honours(policy: Policy, donations: Sequence[Donation]) -> list[Honour]:
    """Every honour of the policy with the count so far and how many to reach it."""
    fengxian = fengxian_count(policy, donations)
    out = []
    for rule in policy.honours:
        count: Decimal | None
        if rule.measure == "fengxian_count":
            count = fengxian
        elif rule.measure == "donations":
            count = Decimal(len(donations))
        else:
            out.append(Honour(rule, None, None, None))
            continue
        assert rule.threshold is not None
        remaining = max(Decimal(0), rule.threshold - count)
        out.append(Honour(rule, count, remaining == 0, remaining))
    return out


def next_honour(earned: Sequence[Honour], scheme: str) -> Honour | None:
    """The lowest level of `scheme` not yet reached (「离金奖还差几次」 asks for one by name)."""
    pending = [h for h in earned if h.rule.scheme == scheme and h.achieved is False]
    return min(pending, key=lambda h: h.rule.threshold or 0, default=None)


def perks(policy: Policy, earned: Sequence[Honour]) -> list[Perk]:
    """Perks for every donor, plus those whose honour (any one of those listed) is achieved."""
    achieved = {h.id for h in earned if h.achieved}
    return [p for p in policy.perks if not p.requires_honours or achieved & set(p.requires_honours)]


def next_eligible(
    policy: Policy,
    donations: Sequence[Donation],
    *,
    today: date,
    birth_date: date | None = None,
) -> dict[Kind, date | Ineligible]:
    """For each kind, the first day (from today) the intervals and age limits allow."""
    rules = policy.eligibility
    if rules is None:
        missing = Ineligible("not_configured", None, "")
        return dict.fromkeys(KINDS, missing)
    past = sorted((d for d in donations if d.date <= today), key=lambda d: d.date)
    last = {kind: max((d.date for d in past if d.kind == kind), default=None) for kind in KINDS}
    out: dict[Kind, date | Ineligible] = {}
    for kind in KINDS:
        earliest = today
        for interval in rules.intervals:
            previous = last[interval.after]
            if interval.next == kind and previous is not None:
                allowed = add_months(previous, interval.months) + _days(interval.days)
                earliest = max(earliest, allowed)
        if kind == "platelets" and rules.platelets_per_year:
            while sum(1 for d in past if d.kind == kind and d.date.year == earliest.year) >= (
                rules.platelets_per_year
            ):
                earliest = date(earliest.year + 1, 1, 1)
        out[kind] = _age_check(earliest, birth_date, bool(past), policy)
    return out


def _age_check(
    earliest: date, birth: date | None, repeat: bool, policy: Policy
) -> date | Ineligible:
    rules = policy.eligibility
    assert rules is not None
    if birth is None:
        return earliest
    earliest = max(earliest, add_years(birth, rules.min_age))
    limit = rules.repeat_donor_max_age if repeat else rules.max_age
    # 「55周岁」 lasts until the day before the 56th birthday
    if earliest >= add_years(birth, limit + 1):
        return Ineligible("over_age", limit, rules.clause)
    return earliest


def _days(days: int) -> timedelta:
    return timedelta(days=days)
