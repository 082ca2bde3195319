"""The one period parser: every form the notices use, and clear errors for the rest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.periods import (
    ALL_MONTHS,
    PeriodError,
    format_months,
    month_list,
    months_csv,
    parse_months,
)


@pytest.mark.parametrize(
    ("text", "months"),
    [
        ("3", [3]),
        ("5,9,11", [5, 9, 11]),
        ("2-9", list(range(2, 10))),
        ("全年", list(range(1, 13))),
        ("2~9月", list(range(2, 10))),
        ("5、9、11月", [5, 9, 11]),
        ("3月", [3]),
        ("三月", [3]),
        ("十月", [10]),
        ("十二月", [12]),
        ("八-九月", [8, 9]),
        ("1至3月", [1, 2, 3]),
        ("１２", [12]),  # full-width digits, as Excel on Chinese Windows types them
        ("1－2月", [1, 2]),  # full-width hyphen (玉溪 「1－2月」)
        ("1—2月", [1, 2]),  # em dash (玉溪 「1—2次」 style)
        ("7、8月", [7, 8]),
        (" 4 , 10 ", [4, 10]),
        ("1-12", list(range(1, 13))),
        (7, [7]),
    ],
)
def test_parses_every_form_of_the_notices(text: str | int, months: list[int]) -> None:
    assert month_list(parse_months(text)) == months


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("13", "没有 13 月"),
        ("十三月", "没有 13 月"),
        ("0", "没有 0 月"),
        ("", "月份为空"),
        ("   ", "月份为空"),
        ("下半年", "无法识别月份「下半年」"),
        ("9-2", "倒置"),
        ("5,,9", "多余的分隔符"),
    ],
)
def test_rejects_with_a_clear_chinese_message(text: str, message: str) -> None:
    with pytest.raises(PeriodError, match=message):
        parse_months(text)


@pytest.mark.parametrize(
    ("months", "shown", "canonical"),
    [
        ([3], "3月", "3"),
        (list(range(2, 10)), "2~9月", "2-9"),
        ([5, 9, 11], "5、9、11月", "5,9,11"),
        (list(range(1, 13)), "全年", "全年"),
        ([8, 9], "8、9月", "8-9"),
        ([1, 2, 3, 7], "1~3、7月", "1,2,3,7"),
    ],
)
def test_formats_as_the_notices_write_it(months: list[int], shown: str, canonical: str) -> None:
    bits = sum(1 << m for m in months)
    assert format_months(bits) == shown
    assert months_csv(bits) == canonical


def test_the_whole_year_is_the_models_constant() -> None:
    assert parse_months("全年") == ALL_MONTHS


@pytest.mark.parametrize("bits", [0, 1, 1 << 13])
def test_formatting_refuses_what_is_not_a_set_of_months(bits: int) -> None:
    with pytest.raises(PeriodError):
        format_months(bits)


@given(st.sets(st.integers(min_value=1, max_value=12), min_size=1))
def test_both_forms_read_back_to_the_same_months(months: set[int]) -> None:
    bits = sum(1 << m for m in months)
    assert parse_months(format_months(bits)) == bits
    assert parse_months(months_csv(bits)) == bits
