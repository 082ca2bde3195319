"""Small reusable filters for `@router.message(...)`.

Most of them also declare a `screen`: a (key, accepted) pair, where `key(message, data)`
is a value shared by every filter of that kind and worked out once per message, and
the filter passes exactly when that value is in `accepted`.  The dispatcher then skips
a handler by a set lookup instead of calling its filters one by one (bot/dispatcher.py).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Mapping
from datetime import date
from typing import Any

from bot.intents import Query, parse_query
from bot.menu import MENU_KEYS
from bot.wechat.message import Message


def normalize(text: str) -> str:
    """Full-width → half-width, lower case, outer spaces and end punctuation removed."""
    return unicodedata.normalize("NFKC", text).strip().strip("。.!！?？~～ ").lower()


def _normalized_text(message: Message, data: dict[str, Any]) -> str:
    return normalize(message.content)


def _role(message: Message, data: dict[str, Any]) -> str:
    return str(data["user"].role)


def _query(message: Message, data: dict[str, Any]) -> Query:
    """The one parse of the message, kept in `data["query"]` for filters and handlers."""
    query: Query | None = data.get("query")
    if query is None:
        query = data["query"] = _query_of(message, data["today"])
    return query


def _intent(message: Message, data: dict[str, Any]) -> str:
    return _query(message, data).intent


def _is_choice(message: Message, data: dict[str, Any]) -> bool:
    return _query(message, data).choice is not None


class Text:
    """Matches the normalised text exactly against one of `words`."""

    def __init__(self, *words: str) -> None:
        self.words = frozenset(normalize(w) for w in words)
        self.screen = (_normalized_text, self.words)

    def __call__(self, message: Message, data: dict[str, Any]) -> bool:
        return normalize(message.content) in self.words


class Regex:
    """Matches a regular expression; named groups become handler arguments."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern = re.compile(pattern, flags)

    def __call__(self, message: Message, data: dict[str, Any]) -> Mapping[str, Any] | bool:
        m = self.pattern.search(normalize(message.content))
        if m is None:
            return False
        return {k: v for k, v in m.groupdict().items()} or True


class Role:
    """Passes when the sender has one of `roles` (anonymous, donor, liaison, office)."""

    def __init__(self, *roles: str) -> None:
        self.roles = frozenset(roles)
        self.screen = (_role, self.roles)

    def __call__(self, message: Message, data: dict[str, Any]) -> bool:
        return data["user"].role in self.roles


class Intent:
    """Passes when the one intent parser (bot/intents.py) reads one of `intents`.

    The parse happens once per message and is shared by every filter and handler
    through `data["query"]`; the handler can ask for it as `query`.
    """

    def __init__(self, *intents: str) -> None:
        self.intents = frozenset(intents)
        self.screen = (_intent, self.intents)

    def __call__(self, message: Message, data: dict[str, Any]) -> bool:
        return _intent(message, data) in self.intents  # the handler gets `query` from data


class Choice:
    """Passes for a bare 「1」「2」 (an answer to a numbered question); hands over `query`."""

    screen = (_is_choice, frozenset({True}))

    def __call__(self, message: Message, data: dict[str, Any]) -> bool:
        return _is_choice(message, data)


# Recent parses by (text, day): people send the same few questions over and over
# (「这个月还差多少」「帮助」, menu buttons). A Query is immutable, so sharing one is safe.
_PARSES: dict[tuple[str, date], Query] = {}
_PARSES_MAX = 4096
_PARSED_CHARS = 64  # longer messages are seldom repeated word for word


def _query_of(message: Message, today: date) -> Query:
    """The parse of a typed message, or the question a menu button stands for."""
    if message.is_event:
        intent = MENU_KEYS.get(message.event_key, ("none", ""))[0]
        return dataclasses.replace(_parse("", today), intent=intent)
    return _parse(message.content, today)


def _parse(text: str, today: date) -> Query:
    if len(text) > _PARSED_CHARS:
        return parse_query(text, today=today)
    key = (text, today)
    query = _PARSES.get(key)
    if query is None:
        if len(_PARSES) >= _PARSES_MAX:
            _PARSES.clear()
        query = _PARSES[key] = parse_query(text, today=today)
    return query
