"""Every shipped policy loads, and says what its own text says (one test per clause)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from bot.policy import (
    Donation,
    Gap,
    LedgerEntry,
    Policy,
    entitlement,
    family_entitlement,
    honours,
    load_policies,
    perks,
    quick_answer,
)

POLICIES = Path(__file__).resolve().parent.parent / "data" / "policies"
TODAY = date(2026, 3, 15)
SHIPPED = {
    "luquan-2016",
    "yuxi",
    "hunan-2015",
    "jiangsu-2017",
    "shanghai-1998",
    "beijing-2021",
    "zhejiang-2020",
    "qingdao-2020",
}


@pytest.fixture(scope="module")
def policies() -> dict[str, Policy]:
    return load_policies(POLICIES)


def quick(policy: Policy, ml: int) -> int | None:
    answer = quick_answer(policy, ml, None, today=TODAY)
    assert answer.status == "ok", answer
    return answer.allowance_ml


def whole(day: date, ml: int) -> Donation:
    return Donation(day, "whole_blood", ml)


def test_every_shipped_policy_loads_with_source_contact_and_intervals(
    policies: dict[str, Policy],
) -> None:
    assert set(policies) == SHIPPED
    for policy in policies.values():
        assert policy.source.citation and policy.source.title and policy.contact.name
        assert policy.eligibility is not None, policy.id  # inherited from gb18467-2011
        assert {h.id for h in policy.honours} >= {"fengxian-bronze", "fengxian-gold"}


def test_unchecked_wording_is_flagged_to_users(policies: dict[str, Policy]) -> None:
    """A citation whose clause was not checked against the original says 「以原文为准」."""
    for policy in policies.values():
        assert policy.source.verified or policy.source.citation.endswith("以原文为准）"), policy.id
    assert {pid for pid, p in policies.items() if p.source.verified} == {"luquan-2016", "yuxi"}


def test_only_luquan_has_a_gap_and_it_is_800_to_999_ml(policies: dict[str, Policy]) -> None:
    gaps = {pid: p.gaps for pid, p in policies.items() if p.gaps}
    assert gaps == {"luquan-2016": (Gap("volume_ml", 800, 999),)}


def test_seed_jurisdictions_map_to_their_policies(policies: dict[str, Policy]) -> None:
    owners = {j: pid for pid, p in policies.items() for j in p.jurisdictions}
    assert owners == {
        "luquan": "luquan-2016",
        "yuxi": "yuxi",
        "zhangjiajie": "hunan-2015",
        "rugao": "jiangsu-2017",
        "qingpu": "shanghai-1998",
    }


# ---- 禄劝 2016, 附件1 四（四）1–3 ------------------------------------------------------


def test_luquan_1000ml_or_more_is_lifetime_free(policies: dict[str, Policy]) -> None:
    """「献血量达1000毫升以上（含1000毫升），终生享受免费用血」"""
    assert quick(policies["luquan-2016"], 1000) is None


def test_luquan_under_800ml_is_3x_for_5_years_then_equal(policies: dict[str, Policy]) -> None:
    """「未达到800毫升，5年内按本人献血量的3倍…5年后按本人献血量的多少」"""
    policy = policies["luquan-2016"]
    donations = [whole(date(2021, 3, 15), 400)]
    on_last_day = entitlement(policy, donations, [], today=date(2026, 3, 15))
    after = entitlement(policy, donations, [], today=date(2026, 3, 16))
    assert (on_last_day.allowance_ml, after.allowance_ml) == (1200, 400)
    assert on_last_day.next_change is not None
    assert (on_last_day.next_change.date, on_last_day.next_change.allowance_ml) == (
        date(2026, 3, 16),
        400,
    )


def test_luquan_800_to_999ml_is_reported_as_a_gap_with_whom_to_ask(
    policies: dict[str, Policy],
) -> None:
    """The notice covers ≥1000 ml and <800 ml only."""
    answer = quick_answer(policies["luquan-2016"], 900, None, today=TODAY)
    assert answer.status == "gap" and answer.allowance_ml is None
    assert answer.gap == Gap("volume_ml", 800, 999)
    assert "卫计局" in answer.contact.name


def test_luquan_family_gets_equal_volume_in_total(policies: dict[str, Policy]) -> None:
    """「家庭成员需要用血，其累计免费用血按献血量等量提供」"""
    ledger = [
        LedgerEntry(date(2025, 1, 1), 200, "spouse"),
        LedgerEntry(date(2025, 2, 1), 100, "children"),
    ]
    family = family_entitlement(
        policies["luquan-2016"], [whole(date(2024, 5, 1), 400)], ledger, today=TODAY
    )
    assert (family.pool, family.allowance_ml, family.used_ml, family.remaining_ml) == (
        "shared",
        400,
        300,
        100,
    )


def test_luquan_leave_and_subsidy_are_perks_for_every_donor(policies: dict[str, Policy]) -> None:
    """「可安排1—3天休假」「发放100—300元的营养补贴」"""
    got = {p.id: p for p in perks(policies["luquan-2016"], [])}
    assert got["leave"].days == (1, 3)
    assert got["nutrition-subsidy"].amount_yuan == (100, 300)


# ---- 玉溪, 四、表扬先进 -----------------------------------------------------------------


def test_yuxi_free_blood_is_not_configured_and_says_whom_to_ask(
    policies: dict[str, Policy],
) -> None:
    answer = quick_answer(policies["yuxi"], 400, None, today=TODAY)
    assert answer.status == "not_configured"
    assert answer.detail and "玉溪" in answer.contact.name
    assert family_entitlement(policies["yuxi"], [], [], today=TODAY).status == "not_configured"


def test_yuxi_10_donations_earn_the_commendation(policies: dict[str, Policy]) -> None:
    """「每两年对在本市献血满10次及以上的…予以通报表扬」"""
    nine = [whole(date(2020, 1, 1 + n), 200) for n in range(9)]
    by_id = {h.id: h for h in honours(policies["yuxi"], nine)}
    assert by_id["yuxi-commendation-donations"].remaining == 1
    by_id = {h.id: h for h in honours(policies["yuxi"], [*nine, whole(date(2021, 1, 1), 200)])}
    assert by_id["yuxi-commendation-donations"].achieved is True
    assert by_id["yuxi-commendation-volunteer"].achieved is None  # hours are not in the records


def test_yuxi_honour_holders_get_parks_transit_outpatient_and_checkup(
    policies: dict[str, Policy],
) -> None:
    """「荣获市级及以上无偿献血奉献奖的献血者…」; every donor gets 1—2 days' leave."""
    policy = policies["yuxi"]
    assert [p.id for p in perks(policy, honours(policy, []))] == ["leave-and-allowance"]
    bronze = honours(policy, [whole(date(2000 + n, 1, 1), 400) for n in range(10)])
    assert {p.kind for p in perks(policy, bronze)} == {
        "leave",
        "parks",
        "transit",
        "outpatient",
        "checkup",
    }


# ---- 湖南 2015 (张家界), 江苏 (如皋), 上海 (青浦) -------------------------------------


@pytest.mark.parametrize(
    ("ml", "allowance"),
    [(200, 400), (599, 1198), (600, 1800), (899, 2697), (900, None), (1200, None)],
)
def test_hunan_900_lifetime_600_to_899_3x_under_600_2x(
    policies: dict[str, Policy], ml: int, allowance: int | None
) -> None:
    """≥900 ml 终身; 600–899 ml 3倍; <600 ml 2倍."""
    assert quick(policies["hunan-2015"], ml) == allowance


def test_hunan_platelets_count_400ml_per_therapeutic_unit(policies: dict[str, Policy]) -> None:
    answer = entitlement(
        policies["hunan-2015"], [Donation(date(2025, 1, 1), "platelets", 250, 1)], [], today=TODAY
    )
    assert (answer.measure_value, answer.allowance_ml) == (400, 800)


@pytest.mark.parametrize(("ml", "allowance"), [(400, 1200), (799, 2397), (800, None)])
def test_jiangsu_800_lifetime_otherwise_3x(
    policies: dict[str, Policy], ml: int, allowance: int | None
) -> None:
    assert quick(policies["jiangsu-2017"], ml) == allowance


def test_jiangsu_relatives_listed_share_one_equal_pool(policies: dict[str, Policy]) -> None:
    """配偶、父母、子女、兄弟姐妹、配偶的父母 合计等量."""
    family = family_entitlement(
        policies["jiangsu-2017"], [whole(date(2025, 1, 1), 400)], [], today=TODAY
    )
    assert set(family.relations) == {"spouse", "parents", "children", "siblings", "spouse_parents"}
    assert (family.pool, family.allowance_ml) == ("shared", 400)


def test_jiangsu_platelets_without_a_stated_conversion_are_a_gap(
    policies: dict[str, Policy],
) -> None:
    answer = entitlement(
        policies["jiangsu-2017"], [Donation(date(2025, 1, 1), "platelets", 250, 1)], [], today=TODAY
    )
    assert (answer.status, answer.reason) == ("gap", "platelet_conversion_unknown")


def test_shanghai_5x_within_5_years_then_equal(policies: dict[str, Policy]) -> None:
    policy = policies["shanghai-1998"]
    donations = [whole(date(2020, 6, 1), 400), whole(date(2023, 6, 1), 200)]
    now = entitlement(policy, donations, [], today=date(2025, 6, 1))
    later = entitlement(policy, donations, [], today=date(2025, 6, 2))
    assert (now.allowance_ml, later.allowance_ml) == (3000, 400 + 1000)
    assert family_entitlement(policy, donations, [], today=TODAY).status == "not_configured"


# ---- 北京 2021, 浙江 2020, 青岛 2020 (SPEC §5) ------------------------------------------


def test_beijing_donor_lifetime_relatives_equal_platelets_400(policies: dict[str, Policy]) -> None:
    policy = policies["beijing-2021"]
    platelets = [Donation(date(2025, 1, 1), "platelets", 250, 2)]
    assert entitlement(policy, platelets, [], today=TODAY).unlimited
    assert family_entitlement(policy, platelets, [], today=TODAY).allowance_ml == 800


def test_zhejiang_400_lifetime_else_5x_then_equal(policies: dict[str, Policy]) -> None:
    policy = policies["zhejiang-2020"]
    assert quick(policy, 400) is None
    donations = [whole(date(2021, 3, 15), 300)]
    assert entitlement(policy, donations, [], today=date(2026, 3, 15)).allowance_ml == 1500
    assert entitlement(policy, donations, [], today=date(2026, 3, 16)).allowance_ml == 300


def test_zhejiang_spouse_parents_children_2x_within_5_years(policies: dict[str, Policy]) -> None:
    policy = policies["zhejiang-2020"]
    donations = [whole(date(2021, 3, 15), 400)]
    inside = family_entitlement(policy, donations, [], today=date(2026, 3, 15))
    outside = family_entitlement(policy, donations, [], today=date(2026, 3, 16))
    assert set(inside.relations) == {"spouse", "parents", "children"}
    assert (inside.allowance_ml, outside.allowance_ml) == (800, 0)


def test_zhejiang_platelets_count_800ml(policies: dict[str, Policy]) -> None:
    answer = entitlement(
        policies["zhejiang-2020"],
        [Donation(date(2025, 1, 1), "platelets", 250, 1)],
        [],
        today=TODAY,
    )
    assert answer.measure_value == 800 and answer.unlimited


@pytest.mark.parametrize(("ml", "allowance"), [(400, 2000), (999, 4995), (1000, None)])
def test_qingdao_1000_lifetime_else_5x(
    policies: dict[str, Policy], ml: int, allowance: int | None
) -> None:
    assert quick(policies["qingdao-2020"], ml) == allowance


def test_qingdao_relatives_together_equal_platelets_800(policies: dict[str, Policy]) -> None:
    family = family_entitlement(
        policies["qingdao-2020"], [Donation(date(2025, 1, 1), "platelets", 250, 1)], [], today=TODAY
    )
    assert (family.pool, family.allowance_ml) == ("shared", 800)
