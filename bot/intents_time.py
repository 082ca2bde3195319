"""Time expressions in a question → (year, months, period), resolved against ``today``.

「本月」「上上个月」「3月」「2~9月」「一季度」「上半年」「去年」「2018年3月」「截至目前」…
Explicit month tokens go through the project's one period parser (`models.periods.parse_months`),
so 「十二月」 is read, and 「13月」 refused, exactly as an import reads a plan file.
Used only by `bot.intents`; the text arrives NFKC-normalised with whitespace removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

from models.periods import ALL_MONTHS, PeriodError, parse_months

__all__ = ["Period", "TimeSlots", "parse_time"]

Period = Literal["", "month", "months", "quarter", "half", "year", "ytd"]

_DIGIT = r"[\d〇零一二两三四五六七八九十]"
_NUM = r"(?:\d{1,2}|[〇零一二两三四五六七八九十]{1,3})"
_SEP = r"[~\-—–至到、,/和及]"
# One alternation scanned left to right; at each position the first alternative that matches
# wins, so longer forms come first (「上半年」 before 「上年」, 「今年度」 before 「年度」).
_TIME = re.compile(
    "|".join(
        [
            r"(?P<ytd>(?:截[至止]到?|到)(?:目前|现在|今天|今日|当前)(?:为止)?"
            r"|截[至止]到?本月|目前为止|迄今(?:为止)?|至今|累计)",
            r"(?P<half>[上下]半年)",
            r"(?<!\d)(?P<year4>\d{4})年度?",
            r"(?P<yearcn>[〇零一二三四五六七八九]{4})年度?",
            # 「18年3月」: a two-digit year only right before a month, never 「献血10年」
            rf"(?<!\d)(?P<year2>\d{{2}})年(?={_NUM}月)",
            r"(?P<ryear>今年度?|本年度?|去年度?|上一?年度?|前年|明年|来年|下一年)",
            r"(?P<wyear>全年度?|年度|整年)",
            r"(?P<rquarter>本季度?|这一?个?季度|当季度?|[上下]一?个?季度)",
            r"(?P<quarter>第?(?:[一二三四五六七八九十]|\d{1,2})季度)",
            r"(?<![a-zA-Z0-9])[qQ](?P<qnum>\d{1,2})(?!\d)",
            r"(?P<this>本月份?|这一?个?月份?|当月份?|此月)",
            # 「马上月底」「剩下月份」 are not 上月/下月
            r"(?<![马剩留])(?P<shift>上+|下+)一?个?月份?",
            # 「统一月底」「每一月」 are not January; a numeral before is part of the number, and a
            # numeral after 「1、」 is inside a list already tried: with the possessive *+ that
            # keeps 「1、1、1、…」 without 月 linear instead of quadratic
            rf"(?<![\d〇零一二两三四五六七八九十统每单同唯万])(?<!{_DIGIT}{_SEP})"
            rf"(?P<months>{_NUM}(?:(?:月份?)?{_SEP}{_NUM})*+月份?)",
        ]
    )
)
# every alternative of _TIME holds one of these; without one, the scan (the parser's costliest
# step, ~0.4 µs a character) is skipped: most long messages are chit-chat
_HINT = re.compile(r"[月年季至止今累现目当qQ]")
_CN_DIGIT = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5}
_CN_DIGIT |= {"六": 6, "七": 7, "八": 8, "九": 9}
_RELATIVE_YEAR = {"今": 0, "本": 0, "去": -1, "上": -1, "前": -2, "明": 1, "来": 1, "下": 1}
_QUARTER_NUM = {"一": 1, "二": 2, "三": 3, "四": 4}
_MAX_SHIFT = 2  # 「上上个月」 is how far back people count; 「上上上个月」 is a typo or a test
_FIRST_YEAR, _LAST_YEAR = 1990, 2099


@dataclass(frozen=True, slots=True)
class TimeSlots:
    """What the time expressions of one message say; ``rest`` is the text with each replaced."""

    year: int | None = None
    months: int = 0
    period: Period = ""
    bad_text: str = ""  # the offending expression as typed (「13月」), "" when all are valid
    rest: str = ""  # the input with every time expression replaced by "|"
    found: bool = False


@dataclass(slots=True)
class _Found:
    year: int | None = None  # said outright: 2018年, 去年
    implied_year: int | None = None  # from a relative month or quarter that crossed a year
    months: int = 0
    quarter: int = 0
    half: int = 0
    ytd: bool = False
    whole_year: bool = False
    bad: str = ""


def _bits(first: int, last: int) -> int:
    return sum(1 << m for m in range(first, last + 1))


def _shift_month(today: date, delta: int) -> tuple[int, int]:
    index = today.year * 12 + today.month - 1 + delta
    return index // 12, index % 12 + 1


def _quarter_bits(quarter: int) -> int:
    return _bits(quarter * 3 - 2, quarter * 3)


def _month_bits(token: str) -> int:
    """「7、8月」「2到9月」 via `parse_months`; 「七八月」「三四月」 (neighbours) are read here."""
    core = token.rstrip("份").rstrip("月")
    if len(core) == 2 and all(c in _CN_DIGIT for c in core):
        first, second = _CN_DIGIT[core[0]], _CN_DIGIT[core[1]]
        if first >= 1 and second == first + 1:
            return _bits(first, second)
    return parse_months(token)


def _year(value: int, text: str, found: _Found) -> None:
    if _FIRST_YEAR <= value <= _LAST_YEAR:
        found.year = value
    else:
        found.bad = found.bad or text


def _take(match: re.Match[str], today: date, found: _Found) -> None:
    kind, text = match.lastgroup, match.group(0)
    value = match.group(kind) if kind else ""
    if kind == "ytd":
        found.ytd = True
    elif kind == "half":
        found.half = _bits(1, 6) if value[0] == "上" else _bits(7, 12)
    elif kind == "year4":
        _year(int(value), text, found)
    elif kind == "yearcn":
        _year(int("".join(str(_CN_DIGIT[c]) for c in value)), text, found)
    elif kind == "year2":
        _year(2000 + int(value), text, found)
    elif kind == "ryear":
        found.year = today.year + _RELATIVE_YEAR[value[0]]
    elif kind == "wyear":
        found.whole_year = True
    elif kind == "rquarter":
        _relative_quarter(value, today, found)
    elif kind in ("quarter", "qnum"):
        digit = value.removeprefix("第").removesuffix("季度")
        number = int(digit) if digit.isdigit() else _QUARTER_NUM.get(digit, 0)
        if 1 <= number <= 4:
            found.quarter |= _quarter_bits(number)
        else:
            found.bad = found.bad or text
    elif kind in ("this", "shift"):
        _relative_month(value, text, today, found)
    elif kind == "months":
        try:
            found.months |= _month_bits(value)
        except PeriodError:
            found.bad = found.bad or text


def _relative_month(value: str, text: str, today: date, found: _Found) -> None:
    steps = 0 if value[0] not in "上下" else len(value) * (-1 if value[0] == "上" else 1)
    if abs(steps) > _MAX_SHIFT:
        found.bad = found.bad or text
        return
    year, month = _shift_month(today, steps)
    found.months |= 1 << month
    found.implied_year = year


def _relative_quarter(value: str, today: date, found: _Found) -> None:
    steps = {"上": -1, "下": 1}.get(value[0], 0)
    index = today.year * 4 + (today.month - 1) // 3 + steps
    found.quarter |= _quarter_bits(index % 4 + 1)
    found.implied_year = index // 4


def _resolve(found: _Found, today: date) -> tuple[int | None, int, Period]:
    """The finest period said wins: months, then quarter, half, year-to-date, whole year."""
    year = found.year if found.year is not None else found.implied_year
    if found.months:
        return year, found.months, "month" if found.months.bit_count() == 1 else "months"
    if found.quarter:
        return year, found.quarter, "quarter"
    if found.half:
        return year, found.half, "half"
    if found.ytd:
        year = today.year if year is None else year
        return year, _bits(1, today.month) if year == today.year else ALL_MONTHS, "ytd"
    if found.whole_year or found.year is not None:
        return year, ALL_MONTHS, "year"
    return year, 0, ""


def parse_time(text: str, today: date) -> TimeSlots:
    """Every time expression in ``text`` (normalised, no spaces), combined and resolved."""
    if _HINT.search(text) is None:
        return TimeSlots(rest=text)
    found = _Found()
    pieces: list[str] = []
    last = 0
    for match in _TIME.finditer(text):
        _take(match, today, found)
        pieces.append(text[last : match.start()])
        last = match.end()
    if not pieces:
        return TimeSlots(rest=text)
    rest = "|".join(pieces) + "|" + text[last:]
    if found.bad:
        return TimeSlots(bad_text=found.bad, rest=rest, found=True)
    year, months, period = _resolve(found, today)
    return TimeSlots(year=year, months=months, period=period, rest=rest, found=True)
