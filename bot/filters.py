"""Small reusable filters for `@router.message(...)`."""

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


class Text:
    """Matches the normalised text exactly against one of `words`."""

    def __init__(self, *words: str) -> None:
        self.words = frozenset(normalize(w) for w in words)

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

    def __call__(self, message: Message, data: dict[str, Any]) -> bool:
        return data["user"].role in self.roles


class Intent:
    """Passes when the one intent parser (bot/intents.py) reads one of `intents`.

    The parse happens once per message and is shared by every filter and handler
    through `data["query"]`; the handler can ask for it as `query`.
    """

    def __init__(self, *intents: str) -> None:
        self.intents = frozenset(intents)

    def __call__(self, message: Message, data: dict[str, Any]) -> bool:
        query = data.get("query")
        if query is None:
            query = data["query"] = _query_of(message, data["today"])
        return query.intent in self.intents  # the handler gets `query` from data


class Choice:
    """Passes for a bare 「1」「2」 (an answer to a numbered question); hands over `query`."""

    def __call__(self, message: Message, data: dict[str, Any]) -> bool:
        query = data.get("query")
        if query is None:
            query = data["query"] = _query_of(message, data["today"])
        return query.choice is not None


def _query_of(message: Message, today: date) -> Query:
    """The parse of a typed message, or the question a menu button stands for."""
    if message.is_event:
        intent = MENU_KEYS.get(message.event_key, ("none", ""))[0]
        return dataclasses.replace(parse_query("", today=today), intent=intent)
    return parse_query(message.content, today=today)
