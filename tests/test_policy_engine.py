"""The engine's answers and the loader's refusals, on small policies written for the test."""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from bot.policy import (
    Donation,
    Ineligible,
    LedgerEntry,
    MissingFigure,
    Policy,
    PolicyError,
    entitlement,
    family_entitlement,
    honours,
    load_policies,
    next_eligible,
    next_honour,
    quick_answer,
)

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "policies"
TODAY = date(2026, 3, 15)

VALID = """\
id = "test"
name = "测试政策"
inherits = ["gb18467-2011", "national-honours"]

[source]
title = "测试文件"
issuer = "测试"
year = 2020
citation = "《测试文件》第一条"

[effective]
from = 2020-01-01

[contact]
name = "测试献血办"

[conversion]
platelet_unit_ml = 400

[donor]
measure = "volume_ml"

[[donor.rules]]
clause = "累计1000毫升以上终身"
min = 1000
unlimited = true

[[donor.rules]]
clause = "不足1000毫升，最高可按5倍，5年后等量"
min = 1
max = 999
multiplier = 5
up_to = true
window_years = 5
after_window_multiplier = 1

[family]
clause = "配偶、子女各自等量"
relations = ["spouse", "children"]
pool = "each"
multiplier = 1
"""


def write(tmp_path: Path, text: str, name: str = "test") -> Path:
    for base in ("gb18467-2011.toml", "national-honours.toml"):
        shutil.copy(SHIPPED / base, tmp_path / base)
    (tmp_path / f"{name}.toml").write_text(text, encoding="utf-8")
    return tmp_path


def load(tmp_path: Path, text: str = VALID) -> Policy:
    return load_policies(write(tmp_path, text))["test"]


def refusal(tmp_path: Path, text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        load_policies(write(tmp_path, text))
    assert caught.value.file == tmp_path / "test.toml"
    return caught.value


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


# ---- bad input: each refusal names the file and the line -------------------------------


def test_a_typo_in_a_key_is_refused_at_its_line(tmp_path: Path) -> None:
    text = VALID.replace("window_years = 5", "windows_years = 5")
    error = refusal(tmp_path, text)
    assert error.line == line_of(text, "windows_years")
    assert "unknown key" in error.message and "window_years" in error.message


def test_overlapping_thresholds_are_refused_at_the_later_rule(tmp_path: Path) -> None:
    text = VALID.replace("max = 999", "max = 1000")
    error = refusal(tmp_path, text)
    assert "overlaps" in error.message
    assert error.line == line_of(text, "min = 1000")


def test_a_missing_source_is_refused(tmp_path: Path) -> None:
    start, end = VALID.index("[source]"), VALID.index("[effective]")
    error = refusal(tmp_path, VALID[:start] + VALID[end:])
    assert "source" in error.message and error.line == 1


def test_a_missing_citation_is_refused_at_the_source_table(tmp_path: Path) -> None:
    text = VALID.replace('citation = "《测试文件》第一条"\n', "")
    error = refusal(tmp_path, text)
    assert "citation" in error.message and error.line == line_of(text, "[source]")


def test_a_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    text = VALID.replace('name = "测试献血办"', 'name = "测试献血办')
    assert refusal(tmp_path, text).line == line_of(text, 'name = "测试献血办')


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("multiplier = 5\n", "multiplier = 5\nunlimited = true\n"), "either unlimited"),
        (("after_window_multiplier = 1\n", ""), "go together"),
        (('relations = ["spouse", "children"]', 'relations = ["spouse", "cousins"]'), "cousins"),
        (('id = "test"', 'id = "other"'), "file name"),
        (('"national-honours"]', '"national-honour"]'), "no base file"),
        (("year = 2020", 'year = "2020"'), "integer"),
    ],
)
def test_other_schema_errors_are_refused(
    tmp_path: Path, change: tuple[str, str], words: str
) -> None:
    assert words in refusal(tmp_path, VALID.replace(*change)).message


def test_gaps_are_reported_on_load_not_refused(tmp_path: Path) -> None:
    policy = load(tmp_path, VALID.replace("max = 999", "max = 799"))
    assert [(g.low, g.high) for g in policy.gaps] == [(800, 999)]


# ---- entitlement -----------------------------------------------------------------------


def test_ledger_reduces_the_remaining_allowance_and_never_below_zero(tmp_path: Path) -> None:
    policy = load(tmp_path)
    donations = [Donation(date(2025, 1, 1), "whole_blood", 400)]
    ledger = [LedgerEntry(date(2025, 6, 1), 1500), LedgerEntry(date(2025, 7, 1), 300, "spouse")]
    mine = entitlement(policy, donations, ledger, today=TODAY)
    assert (mine.allowance_ml, mine.used_ml, mine.remaining_ml, mine.up_to) == (
        2000,
        1500,
        500,
        True,
    )
    ledger.append(LedgerEntry(date(2026, 1, 1), 5000))
    assert entitlement(policy, donations, ledger, today=TODAY).remaining_ml == 0


def test_each_window_and_the_next_change_are_given(tmp_path: Path) -> None:
    policy = load(tmp_path)
    donations = [
        Donation(date(2020, 2, 29), "whole_blood", 200),
        Donation(date(2022, 5, 10), "whole_blood", 400),
    ]
    answer = entitlement(policy, donations, [], today=date(2025, 2, 28))
    windows = {w.date: w for w in answer.windows}
    assert windows[date(2020, 2, 29)].last_day == date(2025, 2, 28)  # no 29 February in 2025
    assert windows[date(2020, 2, 29)].changes_on == date(2025, 3, 1)
    assert answer.next_change is not None
    assert (answer.next_change.date, answer.next_change.allowance_ml) == (date(2025, 3, 1), 2200)


def test_future_donations_and_ledger_entries_do_not_count_yet(tmp_path: Path) -> None:
    policy = load(tmp_path)
    donations = [Donation(date(2027, 1, 1), "whole_blood", 400)]
    answer = entitlement(policy, donations, [LedgerEntry(date(2027, 1, 1), 100)], today=TODAY)
    assert (answer.allowance_ml, answer.used_ml, answer.reason) == (0, 0, "no_donations")


def test_policy_not_yet_in_effect_is_not_configured(tmp_path: Path) -> None:
    policy = load(tmp_path)
    answer = quick_answer(policy, 400, None, today=date(2019, 12, 31))
    assert (answer.status, answer.reason) == ("not_configured", "not_in_effect")


def test_per_person_family_pool_and_relations_not_covered(tmp_path: Path) -> None:
    policy = load(tmp_path)
    donations = [Donation(date(2025, 1, 1), "whole_blood", 400)]
    ledger = [
        LedgerEntry(date(2025, 3, 1), 300, "children", "大女儿"),
        LedgerEntry(date(2025, 4, 1), 100, "children", "小儿子"),
    ]
    family = family_entitlement(policy, donations, ledger, today=TODAY)
    rest = {(s.relation, s.person): s.remaining_ml for s in family.shares}
    assert rest == {("spouse", ""): 400, ("children", "大女儿"): 100, ("children", "小儿子"): 300}
    assert (
        entitlement(policy, donations, ledger, today=TODAY, relation="spouse").remaining_ml == 400
    )
    parents = entitlement(policy, donations, ledger, today=TODAY, relation="parents")
    assert (parents.allowance_ml, parents.reason) == (0, "relation_not_covered")


def test_quick_answer_asks_back_for_a_missing_volume_and_refuses_negatives(tmp_path: Path) -> None:
    policy = load(tmp_path)
    with pytest.raises(MissingFigure):
        quick_answer(policy, None, 2, today=TODAY)
    with pytest.raises(ValueError):
        quick_answer(policy, -200, None, today=TODAY)
    assert quick_answer(policy, 600, None, today=TODAY).allowance_ml == 3000


# ---- honours and eligibility -----------------------------------------------------------


def test_fengxian_counts_200ml_as_one_and_a_platelet_unit_as_one(tmp_path: Path) -> None:
    policy = load(tmp_path)
    donations = [Donation(date(2010 + n, 1, 1), "whole_blood", 400) for n in range(15)]
    donations += [Donation(date(2010 + n, 6, 1), "platelets", 250, 1) for n in range(3)]
    donations.append(Donation(date(2009, 6, 1), "whole_blood", 300))
    earned = honours(policy, donations)
    gold = next(h for h in earned if h.id == "fengxian-gold")
    assert (gold.count, gold.remaining) == (Decimal("34.5"), Decimal("5.5"))
    nxt = next_honour(earned, "fengxian")
    assert nxt is not None and nxt.id == "fengxian-gold"


def test_next_eligible_follows_gb18467_intervals(tmp_path: Path) -> None:
    policy = load(tmp_path)
    whole = [Donation(date(2026, 1, 31), "whole_blood", 400)]
    assert next_eligible(policy, whole, today=TODAY) == {
        "whole_blood": date(2026, 7, 31),  # ≥ 6 months
        "platelets": date(2026, 4, 30),  # whole blood → platelets ≥ 3 months (30 April)
    }
    platelets = [Donation(date(2026, 3, 10), "platelets", 250, 1)]
    assert next_eligible(policy, platelets, today=TODAY) == {
        "whole_blood": date(2026, 4, 7),  # platelets → whole blood ≥ 4 weeks
        "platelets": date(2026, 3, 24),  # ≥ 2 weeks
    }


def test_24_platelet_donations_a_year_wait_for_next_year(tmp_path: Path) -> None:
    policy = load(tmp_path)
    donations = [Donation(date(2026, 1, 1 + n), "platelets", 250, 1) for n in range(24)]
    result = next_eligible(policy, donations, today=date(2026, 3, 1))
    assert result["platelets"] == date(2027, 1, 1)


def test_age_limits_18_to_55_and_60_for_repeat_donors(tmp_path: Path) -> None:
    policy = load(tmp_path)
    assert next_eligible(policy, [], today=TODAY, birth_date=date(2010, 6, 1))["whole_blood"] == (
        date(2028, 6, 1)
    )
    first_timer = next_eligible(policy, [], today=TODAY, birth_date=date(1970, 3, 15))
    assert isinstance(first_timer["whole_blood"], Ineligible)
    assert first_timer["whole_blood"].age_limit == 55
    repeat = [Donation(date(2020, 1, 1), "whole_blood", 400)]
    assert next_eligible(policy, repeat, today=TODAY, birth_date=date(1970, 3, 15)) == {
        "whole_blood": TODAY,
        "platelets": TODAY,
    }
    old = next_eligible(policy, repeat, today=TODAY, birth_date=date(1965, 3, 15))
    assert isinstance(old["platelets"], Ineligible) and old["platelets"].age_limit == 60


def test_a_misspelt_section_is_refused_at_its_header(tmp_path: Path) -> None:
    text = VALID.replace("[family]", "[famly]")
    error = refusal(tmp_path, text)
    assert error.line == line_of(text, "[famly]") and "family" in error.message


def test_an_error_in_a_base_file_names_the_base_file(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    base = tmp_path / "gb18467-2011.toml"
    base.write_text(base.read_text(encoding="utf-8").replace("weeks = 2", "weekz = 2"))
    with pytest.raises(PolicyError) as caught:
        load_policies(tmp_path)
    assert caught.value.file == base and "weekz" in caught.value.message


def test_an_unknown_relation_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        entitlement(load(tmp_path), [], [], today=TODAY, relation="neighbour")
