"""Small reusable filters for `@router.message(...)`."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

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

    def __call__(self, message: Message, data: dict[str, Any]) -> Mapping[str, Any] | bool:
        query = data.get("query")
        if query is None:
            from bot.intents import parse_query

            query = data["query"] = parse_query(message.content, today=data["today"])
        return {"query": query} if query.intent in self.intents else False
