"""Conversation state per user (a pending choice, the next page of a long reply)."""

from __future__ import annotations

from typing import Any

from bot.storage import Storage

STATE_TTL = 600.0


class State:
    """The state of one user's conversation, read and written under that user's lock."""

    def __init__(self, storage: Storage, jurisdiction: str, openid: str) -> None:
        self.storage = storage
        self.key = f"state:{jurisdiction}:{openid}"
        self.more_key = f"more:{jurisdiction}:{openid}"

    async def get(self) -> dict[str, Any]:
        return await self.storage.get_json(self.key) or {}

    async def set(self, data: dict[str, Any], ttl: float = STATE_TTL) -> None:
        await self.storage.set_json(self.key, data, ttl)

    async def clear(self) -> None:
        await self.storage.delete(self.key)

    async def push_pages(self, pages: list[str]) -> None:
        """Keep the rest of a long reply for 「更多」."""
        if pages:
            await self.storage.set_json(self.more_key, pages, STATE_TTL)
        else:
            await self.storage.delete(self.more_key)

    async def pop_page(self) -> str | None:
        pages = await self.storage.get_json(self.more_key)
        if not pages:
            return None
        await self.push_pages(pages[1:])
        return str(pages[0])
