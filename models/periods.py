"""The one period parser: 「3月」「2~9月」「5、9、11月」「全年」… ⇄ a bit set of months.

A plan line's period is stored as an int whose bit m is month m (see `PlanLine.months`), so a
month, a range, a set and the whole year are one representation. Imports and the chat intent
parser both call `parse_months`; replies and reports call `format_months`.
"""

from __future__ import annotations

import re
import unicodedata

from models.plans import ALL_MONTHS

__all__ = [
    "ALL_MONTHS",
    "PeriodError",
    "format_months",
    "month_list",
    "months_csv",
    "parse_months",
]

_WHOLE_YEAR = frozenset({"全年", "全年度", "整年", "1-12", "一-十二"})
_CN_DIGITS = {
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
# range marks seen in notices: 2~9月, 2-9月, 2－9月 (NFKC → -), 2—9月, 1至3月, 1到3月
_RANGE = re.compile(r"^(.+?)(?:~|-|—|–|至|到)(.+)$")
_SEPARATORS = re.compile(r"[,，、;；/]|和|及")
_MONTH_SUFFIX = re.compile(r"(?:月份|月)$")


class PeriodError(ValueError):
    """A period the parser cannot read; the message says what is wrong, in Chinese."""


def parse_months(text: str | int) -> int:
    """「5、9、11月」→ bits 5, 9, 11; PeriodError for month 0 or 13, 「十三月」, empty, garbage."""
    source = str(text)
    cleaned = _clean(source)
    if not cleaned:
        raise PeriodError("月份为空；请写成 3、5,9,11、2-9 或 全年")
    if cleaned in _WHOLE_YEAR:
        return ALL_MONTHS
    bits = 0
    for item in _SEPARATORS.split(cleaned):
        if not item:
            raise PeriodError(f"月份「{source}」中有多余的分隔符")
        bits |= _parse_item(item, source)
    return bits


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"\s+", "", text).strip("()")
    return _MONTH_SUFFIX.sub("", text)


def _parse_item(item: str, source: str) -> int:
    match = _RANGE.match(item)
    if match is None:
        return 1 << _month_number(item, source)
    first = _month_number(match.group(1), source)
    last = _month_number(match.group(2), source)
    if last < first:
        raise PeriodError(f"月份「{source}」的范围 {first}~{last} 倒置（跨年请分成两行）")
    return sum(1 << m for m in range(first, last + 1))


def _month_number(token: str, source: str) -> int:
    token = _MONTH_SUFFIX.sub("", token)
    value = _cn_number(token) if token and not token.isdigit() else _digits(token)
    if value is None:
        raise PeriodError(f"无法识别月份「{source}」；请写成 3、5,9,11、2-9 或 全年")
    if not 1 <= value <= 12:
        raise PeriodError(f"月份「{source}」超出范围：没有 {value} 月（只能是 1 到 12）")
    return value


def _digits(token: str) -> int | None:
    return int(token) if token.isdigit() else None


def _cn_number(token: str) -> int | None:
    """「三」→3, 「十」→10, 「十二」→12, 「十三」→13 (rejected by the caller, not silently)."""
    if token in _CN_DIGITS:
        return _CN_DIGITS[token]
    match = re.fullmatch(r"([一二两三四五六七八九]?)十([一二三四五六七八九]?)", token)
    if match is None:
        return None
    tens = _CN_DIGITS[match.group(1)] if match.group(1) else 1
    ones = _CN_DIGITS[match.group(2)] if match.group(2) else 0
    return tens * 10 + ones


def month_list(bits: int) -> list[int]:
    """The months of a bit set, in calendar order."""
    return [m for m in range(1, 13) if bits & (1 << m)]


def _runs(bits: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for month in month_list(bits):
        if runs and runs[-1][1] == month - 1:
            runs[-1] = (runs[-1][0], month)
        else:
            runs.append((month, month))
    return runs


def format_months(bits: int) -> str:
    """「3月」, 「2~9月」, 「5、9、11月」, 「全年」: how the notices write a period."""
    _check_bits(bits)
    if bits == ALL_MONTHS:
        return "全年"
    parts: list[str] = []
    for first, last in _runs(bits):
        if last - first >= 2:
            parts.append(f"{first}~{last}")
        else:
            parts.extend(str(m) for m in range(first, last + 1))
    return "、".join(parts) + "月"


def months_csv(bits: int) -> str:
    """The canonical file form: `3`, `5,9,11`, `2-9` or `全年` (what `parse_months` reads back)."""
    _check_bits(bits)
    if bits == ALL_MONTHS:
        return "全年"
    runs = _runs(bits)
    if len(runs) == 1 and runs[0][1] > runs[0][0]:
        return f"{runs[0][0]}-{runs[0][1]}"
    return ",".join(str(m) for m in month_list(bits))


def _check_bits(bits: int) -> None:
    if bits <= 0 or bits & ~ALL_MONTHS:
        raise PeriodError(f"不是有效的月份集合：{bits}")
