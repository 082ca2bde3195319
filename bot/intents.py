"""The one intent + slot parser every handler uses: a chat message → `Query`.

「这个月还差几个」→ remaining, March; 「慈利县三月还差多少」→ remaining, March, unit 「慈利县」;
「绑定 483920」→ bind, code 483920; 「13月」→ bad_time. Pure and fast: no I/O, no state,
regexes compiled at import (`bot.intents_words`, `bot.intents_time`), and only the first
200 characters read, so a pasted essay costs what a short question does. Unit names are
returned as typed; `models.units` resolves them. Donor questions (「我能免费用多少血」) are
`none` here: the donor parser takes them first in the dispatcher.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal, get_args

from bot import intents_words as words
from bot.intents_time import Period, TimeSlots, parse_time

__all__ = ["INTENTS", "PERIODS", "Intent", "Period", "Query", "parse_query"]

Intent = Literal[
    "remaining",
    "progress",
    "month_plan",
    "year",
    "schedule",
    "plan_lines",
    "office_summary",
    "behind",
    "more",
    "bind",
    "unbind",
    "whoami",
    "help",
    "bad_time",
    "none",
]
INTENTS: Final[tuple[Intent, ...]] = get_args(Intent)
PERIODS: Final[tuple[Period, ...]] = get_args(Period)

MAX_CHARS: Final = 200  # a question fits in far less; the rest of a pasted text is not read
_SPACES = re.compile(r"\s+")
# punctuation, symbols and emoji go; "|" marks a time expression; brackets and 、 stay because
# unit names carry them (「金泽镇（西岑）」 is not 「金泽镇（金泽地区）」)
_NOISE = re.compile(r"[^\w|()、·]+")
# a pasted table (from Excel: tab stops; from a notice: several lines of numbers) is no question,
# however many month names its header holds; a question typed over three lines still is one
_TABLE_ROW = re.compile(r"^[^\n]*\d[^\n\d]+\d[^\n]*$", re.MULTILINE)
# the unit intents, tried in this order: the more specific request wins (「哪些单位落后」 is
# `behind` even though it names no time; 「我们是哪个月的任务」 is `schedule`, not `month_plan`)
_ORDERED: Final[tuple[tuple[Intent, re.Pattern[str]], ...]] = (
    ("behind", words.BEHIND),
    ("office_summary", words.OFFICE_SUMMARY),
    ("schedule", words.SCHEDULE),
    ("plan_lines", words.PLAN_LINES),
    ("remaining", words.REMAINING),
    ("month_plan", words.MONTH_PLAN),
    ("progress", words.PROGRESS),
)
_YEARLY: Final = frozenset({"year", "ytd"})
_MONTHLY: Final = frozenset({"month", "months", "quarter", "half"})
_PER_UNIT: Final = frozenset({"remaining", "progress", "month_plan", "year"})
_NAMES_A_UNIT: Final = _PER_UNIT | {"schedule", "plan_lines"}


@dataclass(frozen=True, slots=True)
class Query:
    """What the sender asked, with every slot resolved against the day it was asked."""

    # plain str (one of INTENTS / PERIODS) so callers may build a Query from a menu key's name
    intent: str
    year: int | None  # absolute year; None = not said (the caller uses today's)
    months: int  # bit m = month m (0 = not said); 「一季度」→ bits 1..3
    period: str
    unit_text: str  # a unit named in the text, as typed (resolved later by models.units)
    code: str  # the invite code of 「绑定 483920」, ASCII digits
    phone_last4: str  # 「绑定 483920 5678」, the liaison-directory form
    choice: int | None  # a bare 「1」「2」 answering a numbered question
    raw: str
    bad_text: str = ""  # for bad_time: the expression as typed (「13月」), for the reply


def parse_query(text: str, *, today: date) -> Query:
    """Classifies one message; never raises, whatever the text (empty, emoji, 5,000 chars)."""
    # NFKC can lengthen text (「㈠」→「(一)」), so the bound is applied again after it
    head = unicodedata.normalize("NFKC", text[:MAX_CHARS])[:MAX_CHARS]
    squeezed = _SPACES.sub("", head).replace("|", "")
    if not squeezed or "\t" in head or len(_TABLE_ROW.findall(head)) >= 2:
        return _query("none", text)
    bare = _NOISE.sub("", squeezed)
    command = _command(head, squeezed, bare, text)
    if command is not None:
        return command
    if not bare:  # emoji, stickers' alt text, punctuation: nothing to read
        return _query("none", text)
    time = parse_time(squeezed, today)
    if time.bad_text:
        return _query("bad_time", text, bad_text=time.bad_text)
    compact = _NOISE.sub("", time.rest)
    intent = _classify(compact, time)
    if intent == "none":  # a time word in chit-chat (「今年天气真怪」) is not a slot
        return _query("none", text)
    unit = _unit_text(compact) if intent in _NAMES_A_UNIT else ""
    return Query(intent, time.year, time.months, time.period, unit, "", "", None, text)


def _query(
    intent: Intent,
    raw: str,
    *,
    code: str = "",
    phone_last4: str = "",
    choice: int | None = None,
    bad_text: str = "",
) -> Query:
    """A query with no time or unit slots: commands, replies, refusals and chit-chat."""
    return Query(intent, None, 0, "", "", code, phone_last4, choice, raw, bad_text)


def _command(head: str, squeezed: str, bare: str, raw: str) -> Query | None:
    """Commands and replies that are not questions: 「1」, 「?」, 绑定/解绑/我是谁, 「更多」."""
    choice = words.CHOICE.fullmatch(head)
    if choice is not None:
        return _query("none", raw, choice=int(choice.group(1)))
    if words.QUESTION_HELP.fullmatch(squeezed):
        return _query("help", raw)
    if words.UNBIND.search(bare):
        return _query("unbind", raw)
    if words.WHOAMI.search(bare):
        return _query("whoami", raw)
    if words.BIND.search(bare):
        code = words.BIND_CODE.search(head)
        if code is None:
            return _query("bind", raw)
        return _query("bind", raw, code=code.group(1), phone_last4=(code.group(2) or "")[-4:])
    if words.MORE.fullmatch(bare):
        return _query("more", raw)
    return None


def _classify(compact: str, time: TimeSlots) -> Intent:
    """The intent of a question (commands already handled), from its words and its period."""
    if words.DONOR.search(compact):
        return "none"
    if words.HELP.search(compact):
        return "help"
    for intent, pattern in _ORDERED:
        if pattern.search(compact):
            return _by_period(intent, time.period)
    if words.PROGRESS_WEAK.search(compact) and words.PROGRESS_CONTEXT.search(compact):
        return _by_period("progress", time.period)
    if words.PLAN_MENTION.search(compact):
        # 「六月的任务」 asks for June's line; 「我们的计划」「全年计划」 for the whole list
        return "month_plan" if time.period in _MONTHLY else "plan_lines"
    if time.found and words.FILLER_ONLY.fullmatch(compact):
        # a follow-up naming only a period: 「今年呢」「那上个月的呢」
        return _by_period("month_plan", time.period)
    return "none"


def _by_period(intent: Intent, period: str) -> Intent:
    """A per-unit question about a whole year or year-to-date is the `year` question."""
    return "year" if intent in _PER_UNIT and period in _YEARLY else intent


def _unit_text(compact: str) -> str:
    """「慈利县三月还差多少」→「慈利县」: the noun phrase before the first question word."""
    cut = words.UNIT_CUT.search(compact)
    before = compact[: cut.start()] if cut is not None else compact
    for piece in before.split("|"):
        name = words.LEAD_FILLER.sub("", piece).removesuffix("的")
        if (
            2 <= len(name) <= 30
            and words.UNIT_SUFFIX.search(name)
            and not words.NOT_A_UNIT.search(name)
        ):
            return name
    return ""
