"""The one intent + slot parser: the corpus targets, every time expression, commands, bad input.

The corpus `tests/data/liaison_utterances.csv` is labelled against the reference date
2026-03-15 (「上个月」 = 2026-02, 「截至目前」 = January–March 2026); see
bench/intent_accuracy.py, whose `evaluate` this test shares so the two cannot disagree.
Speed is reported by the bench, not tested here.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.intent_accuracy import (
    INTENT_TARGET,
    OVERALL_TARGET,
    REFERENCE_DATE,
    evaluate,
    load_corpus,
)
from bot.intents import INTENTS, MAX_CHARS, PERIODS, Query, parse_query
from models.periods import ALL_MONTHS, month_list

MARCH = REFERENCE_DATE  # 2026-03-15
JANUARY = date(2026, 1, 10)
DECEMBER = date(2026, 12, 20)


def ask(text: str, today: date = MARCH) -> Query:
    return parse_query(text, today=today)


def months(*numbers: int) -> int:
    return sum(1 << m for m in numbers)


# -- the corpus ------------------------------------------------------------------------------


def test_corpus_is_big_and_honest_enough() -> None:
    rows = load_corpus()
    assert len(rows) >= 220
    assert sum(r.intent == "none" for r in rows) >= 40
    assert {r.intent for r in rows} == set(INTENTS)
    assert {r.role for r in rows} == {"liaison", "office"}
    assert all(r.period in PERIODS for r in rows)
    texts = {r.text for r in rows}
    issue_examples = {
        "这个月还差几个",
        "还剩多少人没献",
        "本月任务完成没",
        "我们单位啥时候献血",
        "3月份的任务多少",
        "今年一共要多少人",
        "进度咋样",
        "还差多少人次",
        "慈利县三月还差多少",
        "市财政局今年完成了吗",
        "本月全市进度",
        "哪些单位落后",
        "绑定 483920",
        "绑定483920",
        "解绑",
        "我是谁",
        "13月还差多少",
        "上上上个月完成了吗",
        "{{7*7}}",
    }
    assert issue_examples <= texts


def test_corpus_accuracy_meets_the_targets() -> None:
    report = evaluate(load_corpus())
    misread = "\n".join(
        f"{r.row.text!r}: expected {r.row.intent}, got {r.query.intent}"
        for r in report.results
        if not r.intent_ok
    )
    assert report.overall() >= OVERALL_TARGET, misread
    for intent, (right, total) in report.per_intent().items():
        assert right / total >= INTENT_TARGET, f"{intent}: {right}/{total}\n{misread}"


def test_corpus_slots_are_read() -> None:
    """Slots on the corpus: the same ≥ 95 % bar as intents, per slot."""
    report = evaluate(load_corpus())
    for slot, (right, total, _, _) in report.slot_accuracy().items():
        assert right / total >= OVERALL_TARGET, (slot, [r.row.text for r in report.misread()])


# -- the issue's examples --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("这个月还差几个", "remaining"),
        ("还剩多少人没献", "remaining"),
        ("还差多少人次", "remaining"),
        ("本月任务完成没", "progress"),
        ("进度咋样", "progress"),
        ("我们单位啥时候献血", "schedule"),
        ("3月份的任务多少", "month_plan"),
        ("今年一共要多少人", "year"),
        ("我们的计划", "plan_lines"),
        ("本月全市进度", "office_summary"),
        ("哪些单位落后", "behind"),
        ("更多", "more"),
        ("下一页", "more"),
        ("帮助", "help"),
        ("?", "help"),
        ("菜单", "help"),
    ],
)
def test_issue_phrases(text: str, intent: str) -> None:
    assert ask(text).intent == intent


def test_office_question_names_the_unit_and_period() -> None:
    q = ask("慈利县三月还差多少")
    assert (q.intent, q.unit_text, q.months, q.period, q.year) == (
        "remaining",
        "慈利县",
        months(3),
        "month",
        None,
    )
    q = ask("市财政局今年完成了吗")
    assert (q.intent, q.unit_text, q.year, q.period) == ("year", "市财政局", 2026, "year")


@pytest.mark.parametrize(
    "text",
    ["这个月我们单位还差多少人献血啊", "本单位本月还差多少", "我们这个月还差几", "我们局还差多少"],
)
def test_own_unit_is_not_a_unit_mention(text: str) -> None:
    assert ask(text).unit_text == ""


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("三月份慈利县还差多少", "慈利县"),  # unit after the time
        ("查一下吉首大学的进度", "吉首大学"),  # polite verb and 的 stripped
        ("市卫生计生委及二级机构这个月还差多少", "市卫生计生委及二级机构"),
        ("金泽镇（西岑）这个月还差多少", "金泽镇(西岑)"),  # the bracket tells two lines apart
        ("张家界新纪元石化有限公司今年完成了吗", "张家界新纪元石化有限公司"),  # 有 is no cut
    ],
)
def test_unit_mention_as_typed(text: str, unit: str) -> None:
    assert ask(text).unit_text == unit


# -- time expressions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "today", "year", "bits", "period"),
    [
        ("本月还差多少", MARCH, 2026, months(3), "month"),
        ("这个月还差多少", MARCH, 2026, months(3), "month"),
        ("当月还差多少", MARCH, 2026, months(3), "month"),
        ("这月还差多少", MARCH, 2026, months(3), "month"),
        ("上个月完成了吗", MARCH, 2026, months(2), "month"),
        ("上个月完成了吗", JANUARY, 2025, months(12), "month"),  # crosses the year
        ("上月完成了吗", JANUARY, 2025, months(12), "month"),
        ("上上个月完成了吗", JANUARY, 2025, months(11), "month"),
        ("上上个月完成了吗", MARCH, 2026, months(1), "month"),
        ("下个月任务多少", MARCH, 2026, months(4), "month"),
        ("下月任务多少", DECEMBER, 2027, months(1), "month"),
        ("3月还差多少", MARCH, None, months(3), "month"),
        ("三月还差多少", MARCH, None, months(3), "month"),
        ("十二月任务多少", MARCH, None, months(12), "month"),
        ("12月份任务多少", MARCH, None, months(12), "month"),
        ("３月份还差多少", MARCH, None, months(3), "month"),  # full-width digit
        ("2~9月一共要多少", MARCH, None, months(*range(2, 10)), "months"),
        ("7、8月份任务多少", MARCH, None, months(7, 8), "months"),
        ("今年完成几个了", MARCH, 2026, ALL_MONTHS, "year"),
        ("全年任务多少", MARCH, None, ALL_MONTHS, "year"),
        ("年度任务完成情况", MARCH, None, ALL_MONTHS, "year"),
        ("去年完成了吗", MARCH, 2025, ALL_MONTHS, "year"),
        ("前年完成了吗", MARCH, 2024, ALL_MONTHS, "year"),
        ("2018年的任务是多少", MARCH, 2018, ALL_MONTHS, "year"),
        ("2018年3月的任务", MARCH, 2018, months(3), "month"),
        ("去年12月完成了多少", JANUARY, 2025, months(12), "month"),
        ("一季度完成多少", MARCH, None, months(1, 2, 3), "quarter"),
        ("第一季度完成多少", MARCH, None, months(1, 2, 3), "quarter"),
        ("1季度完成多少", MARCH, None, months(1, 2, 3), "quarter"),
        ("第二季度完成多少", MARCH, None, months(4, 5, 6), "quarter"),
        ("Q2完成多少", MARCH, None, months(4, 5, 6), "quarter"),
        ("上季度完成多少", JANUARY, 2025, months(10, 11, 12), "quarter"),
        ("上半年任务多少", MARCH, None, months(*range(1, 7)), "half"),
        ("下半年任务多少", MARCH, None, months(*range(7, 13)), "half"),
        ("截至目前完成了多少", MARCH, 2026, months(1, 2, 3), "ytd"),
        ("到目前为止完成了多少", MARCH, 2026, months(1, 2, 3), "ytd"),
        ("至今完成了多少", JANUARY, 2026, months(1), "ytd"),
        ("还差多少", MARCH, None, 0, ""),  # nothing said: the caller uses today
    ],
)
def test_time_expressions(text: str, today: date, year: int | None, bits: int, period: str) -> None:
    q = ask(text, today)
    assert (q.year, month_list(q.months), q.period) == (year, month_list(bits), period)


@pytest.mark.parametrize(
    ("text", "offending"),
    [
        ("13月还差多少", "13月"),
        ("十三月的任务", "十三月"),
        ("上上上个月完成了吗", "上上上个月"),
        ("0月份进度", "0月份"),
        ("第五季度完成多少", "第五季度"),
        ("3000年完成了吗", "3000年"),
    ],
)
def test_impossible_time_is_bad_time_with_the_offending_text(text: str, offending: str) -> None:
    q = ask(text)
    assert (q.intent, q.bad_text, q.months, q.period) == ("bad_time", offending, 0, "")


@pytest.mark.parametrize("text", ["几月份献血", "这个月还差几个", "每个月的任务", "统一月底前完成"])
def test_question_words_are_not_months(text: str) -> None:
    """「几月」 asks which month; 「统一月底」 holds no January; neither is a bad time."""
    assert ask(text).intent != "bad_time"
    assert ask(text).months in (0, months(3))


# -- commands and replies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "last4"),
    [
        ("绑定 483920", "483920", ""),
        ("绑定483920", "483920", ""),
        ("绑定　４８３９２０", "483920", ""),  # full-width space and digits
        ("绑定：483920", "483920", ""),
        ("绑定 483920 5678", "483920", "5678"),
        ("绑定 483920，5678", "483920", "5678"),
        ("绑定 483920 13812345678", "483920", "5678"),  # a full phone: only its last four
        ("你好 绑定 274615", "274615", ""),
        ("我要绑定单位", "", ""),
    ],
)
def test_bind(text: str, code: str, last4: str) -> None:
    q = ask(text)
    assert (q.intent, q.code, q.phone_last4) == ("bind", code, last4)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("解绑", "unbind"),
        ("解除绑定", "unbind"),
        ("取消绑定", "unbind"),
        ("我是谁", "whoami"),
        ("我绑定的是哪个单位", "whoami"),
    ],
)
def test_binding_commands(text: str, intent: str) -> None:
    assert ask(text).intent == intent


@pytest.mark.parametrize(("text", "choice"), [("1", 1), ("2", 2), (" 3 ", 3), ("第2个", 2)])
def test_bare_number_is_a_choice(text: str, choice: int) -> None:
    q = ask(text)
    assert (q.intent, q.choice) == ("none", choice)


@pytest.mark.parametrize("text", ["483920", "1111111", "这个月还差3个"])
def test_other_numbers_are_no_choice(text: str) -> None:
    assert ask(text).choice is None


@pytest.mark.parametrize(
    "text",
    ["我能免费用多少血", "献了600毫升能免多少", "附近哪里能献血", "我下次什么时候能献血"],
)
def test_donor_questions_are_left_to_the_donor_parser(text: str) -> None:
    assert ask(text).intent == "none"


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "😀🙏👍",
        "'; DROP TABLE units;--",
        "{{7*7}}",
        "{% for x in range(10**9) %}",
        "序号\t单位\t3月\n1\t慈利县\t200",
        "单位,3月,4月\n慈利县,200,600\n桑植县,150,300",
        "\ud800",  # a lone surrogate, as a broken client may send
        "Hello",
    ],
)
def test_bad_input_is_none_and_keeps_the_raw_text(text: str) -> None:
    q = ask(text)
    assert (q.intent, q.months, q.unit_text, q.code) == ("none", 0, "", "")
    assert q.raw == text


def test_a_question_over_several_lines_is_still_a_question() -> None:
    assert ask("李老师好\n这个月还差几个\n谢谢").intent == "remaining"


def test_long_text_is_read_only_at_its_start() -> None:
    question = "这个月还差多少"
    assert ask(question + "啊" * 4993).intent == "remaining"
    buried = "啊" * MAX_CHARS + question
    assert ask(buried).intent == "none"
    assert ask(buried).raw == buried


def test_query_is_immutable_and_hashable() -> None:
    q = ask("这个月还差多少")
    with pytest.raises(AttributeError):
        q.intent = "none"  # type: ignore[misc]
    assert hash(q) == hash(ask("这个月还差多少"))


@given(st.text(max_size=400), st.dates())
def test_any_text_gives_a_query(text: str, today: date) -> None:
    q = parse_query(text, today=today)
    assert q.intent in INTENTS
    assert q.period in PERIODS
    assert q.months & ~ALL_MONTHS == 0
    assert (q.months == 0) == (q.period == "")
    assert q.raw == text
