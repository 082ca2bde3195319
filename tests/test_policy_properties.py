"""Properties of the engine over every shipped policy (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bot.policy import (
    Donation,
    LedgerEntry,
    Policy,
    entitlement,
    family_entitlement,
    load_policies,
    local_date,
    quick_answer,
)
from bot.policy.dates import add_years
from bot.policy.model import DonorRule, DonorRules, Multiple
from bot.policy.sections import uncovered_bands

POLICIES = load_policies(Path(__file__).resolve().parent.parent / "data" / "policies")
WITH_RULES = sorted(pid for pid, p in POLICIES.items() if p.donor is not None)
WINDOWED = sorted(
    pid
    for pid, p in POLICIES.items()
    if p.donor and any(r.multiple and r.multiple.window_years for r in p.donor.rules)
)
TODAY = date(2026, 3, 15)

days = st.dates(min_value=date(1990, 1, 1), max_value=TODAY)
whole_blood = st.builds(Donation, days, st.just("whole_blood"), st.sampled_from([200, 300, 400]))
platelets = st.builds(
    Donation, days, st.just("platelets"), st.just(250), st.sampled_from([1, 1.5, 2])
)
donations = st.lists(st.one_of(whole_blood, platelets), max_size=12)
relations = st.sampled_from(["self", "spouse", "parents", "children", "siblings"])
ledger = st.lists(st.builds(LedgerEntry, days, st.integers(0, 20_000), relations), max_size=8)


def at_least(a: int | None, b: int | None) -> bool:
    """a ≥ b where None is unlimited."""
    return a is None or (b is not None and a >= b)


@given(st.sampled_from(WITH_RULES), st.integers(0, 5000), st.integers(0, 5000))
def test_more_volume_never_lowers_the_quick_allowance(pid: str, a: int, b: int) -> None:
    low, high = sorted((a, b))
    small = quick_answer(POLICIES[pid], low, None, today=TODAY)
    large = quick_answer(POLICIES[pid], high, None, today=TODAY)
    if small.status == large.status == "ok":
        assert at_least(large.allowance_ml, small.allowance_ml)


@given(st.sampled_from(WITH_RULES), donations, whole_blood)
def test_another_donation_never_lowers_the_allowance(
    pid: str, records: list[Donation], extra: Donation
) -> None:
    policy = POLICIES[pid]
    before = entitlement(policy, records, [], today=TODAY)
    after = entitlement(policy, [*records, extra], [], today=TODAY)
    if before.status == after.status == "ok":
        assert at_least(after.allowance_ml, before.allowance_ml)


small_recent = st.builds(
    Donation,
    st.dates(min_value=date(2017, 1, 1), max_value=TODAY),
    st.just("whole_blood"),
    st.sampled_from([200, 300]),
)


@given(st.sampled_from(WINDOWED), small_recent)
def test_a_window_boundary_is_exact_to_the_day(pid: str, donation: Donation) -> None:
    """Last day N years on (month end if that date does not exist); the next day changes."""
    policy = POLICIES[pid]
    assert policy.donor is not None
    rule = policy.donor.rule_for(donation.volume_ml)
    assert rule is not None and rule.multiple is not None
    years = rule.multiple.window_years
    assert years is not None
    last = add_years(donation.date, years)
    assert last.month == donation.date.month and last.day <= donation.date.day
    inside = entitlement(policy, [donation], [], today=last)
    outside = entitlement(policy, [donation], [], today=last + timedelta(days=1))
    assert inside.windows[0].multiplier == rule.multiple.multiplier
    assert inside.windows[0].changes_on == last + timedelta(days=1)
    assert outside.windows[0].multiplier == rule.multiple.after_window_multiplier
    assert inside.next_change is not None
    assert inside.next_change.allowance_ml == outside.allowance_ml


@given(st.sampled_from(WITH_RULES), st.lists(platelets, min_size=1, max_size=6))
def test_platelet_conversion_is_applied_once(pid: str, records: list[Donation]) -> None:
    policy = POLICIES[pid]
    answer = entitlement(policy, records, [], today=TODAY)
    if policy.platelet_unit_ml is None:
        assert (answer.status, answer.reason) == ("gap", "platelet_conversion_unknown")
        return
    credited = [int(d.therapeutic_units * policy.platelet_unit_ml) for d in records]
    as_whole = [
        Donation(d.date, "whole_blood", ml) for d, ml in zip(records, credited, strict=True)
    ]
    same = entitlement(policy, as_whole, [], today=TODAY)
    assert answer.measure_value == sum(credited) == same.measure_value
    assert (answer.status, answer.allowance_ml) == (same.status, same.allowance_ml)
    assert [w.credited_ml for w in answer.windows] == [w.credited_ml for w in same.windows]


@given(st.sampled_from(sorted(POLICIES)), donations, ledger, relations)
def test_the_ledger_never_drives_remaining_below_zero(
    pid: str, records: list[Donation], used: list[LedgerEntry], relation: str
) -> None:
    policy = POLICIES[pid]
    answer = entitlement(policy, records, used, today=TODAY, relation=relation)
    if answer.status == "ok" and answer.allowance_ml is not None:
        assert answer.remaining_ml == max(0, answer.allowance_ml - answer.used_ml)
    family = family_entitlement(policy, records, used, today=TODAY)
    assert family.remaining_ml is None or family.remaining_ml >= 0
    assert all(share.remaining_ml >= 0 for share in family.shares)


@given(st.integers(800, 999))
def test_luquan_gap_is_always_reported(ml: int) -> None:
    answer = quick_answer(POLICIES["luquan-2016"], ml, None, today=TODAY)
    assert answer.status == "gap" and answer.allowance_ml is None
    assert answer.gap is not None and (answer.gap.low, answer.gap.high) == (800, 999)


@st.composite
def bands(draw: st.DrawFn) -> list[tuple[int, int | None]]:
    """Sorted, non-overlapping bands with random holes; the last may be open-ended."""
    cuts = sorted(draw(st.sets(st.integers(1, 3000), min_size=2, max_size=8)))
    out: list[tuple[int, int | None]] = []
    for low, high in zip(cuts[::2], cuts[1::2], strict=False):
        out.append((low, high))
    if draw(st.booleans()):
        out[-1] = (out[-1][0], None)
    return out


@given(bands(), st.integers(1, 4000))
def test_a_gap_is_always_reported_never_filled(
    spans: list[tuple[int, int | None]], value: int
) -> None:
    rules = [DonorRule(f"{lo}-{hi}", lo, hi, False, Multiple(2)) for lo, hi in spans]
    base: Policy = POLICIES["hunan-2015"]
    policy = replace(
        base, donor=DonorRules("volume_ml", tuple(rules), uncovered_bands("volume_ml", rules))
    )
    answer = quick_answer(policy, value, None, today=TODAY)
    covered = any(rule.contains(value) for rule in rules)
    assert (answer.status == "ok") == covered
    if not covered:
        assert answer.gap is not None and answer.gap.low <= value
        assert answer.gap.high is None or value <= answer.gap.high
        assert answer.allowance_ml is None


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)))
def test_today_is_the_local_date_in_the_jurisdictions_timezone(moment: datetime) -> None:
    """China has no DST: the local date is the UTC instant + 8 h, so 16:00 UTC is tomorrow."""
    instant = moment.replace(tzinfo=UTC)
    assert local_date(instant, "Asia/Shanghai") == (moment + timedelta(hours=8)).date()
