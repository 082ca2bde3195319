"""Outer middlewares, run around every handler in this order: lock → user → session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.state import State
from bot.users import resolve_user
from bot.wechat.message import Message

Next = Callable[[Message, dict[str, Any]], Awaitable[str | None]]


async def user_lock(nxt: Next, message: Message, data: dict[str, Any]) -> str | None:
    """One message per user at a time, so state is read after the previous write."""
    storage = data["storage"]
    async with storage.lock(f"user:{data['jurisdiction']}:{message.source}", timeout=10.0):
        return await nxt(message, data)


async def resolve_sender(nxt: Next, message: Message, data: dict[str, Any]) -> str | None:
    data["user"] = await resolve_user(
        data["storage"], data["sessions"], data["jurisdiction"], message.source
    )
    data["state"] = State(data["storage"], data["jurisdiction"], message.source)
    return await nxt(message, data)


class LazySession:
    """A database session opened only if a handler asks for one; committed if it succeeds."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.session: AsyncSession | None = None

    async def get(self) -> AsyncSession:
        if self.session is None:
            self.session = self._sessions()
        return self.session


async def db_session(nxt: Next, message: Message, data: dict[str, Any]) -> str | None:
    holder = LazySession(data["sessions"])
    data["_session"] = data["lazy_session"] = holder  # `lazy_session`: opened on first get()
    try:
        result = await nxt(message, data)
        if holder.session is not None:
            await holder.session.commit()
        return result
    finally:
        if holder.session is not None:
            await holder.session.close()  # rolls back anything uncommitted


async def lazy_session(data: dict[str, Any]) -> AsyncSession:
    holder: LazySession = data["_session"]
    return await holder.get()


MIDDLEWARES = [user_lock, resolve_sender, db_session]
