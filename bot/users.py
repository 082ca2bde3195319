"""Who is writing: anonymous, donor, liaison or office staff, from the bindings table.

The answer is cached in the shared storage for a few minutes because every message
needs it; binding, unbinding and unsubscribing call `forget_user`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage import Storage
from models.users import Binding

ROLE_ORDER = ("office", "liaison", "donor")
CACHE_TTL = 300.0


@dataclass(frozen=True, slots=True)
class User:
    openid: str
    jurisdiction: str
    role: str = "anonymous"  # the strongest role: office > liaison > donor > anonymous
    unit_id: int | None = None
    donor_id: int | None = None

    @property
    def is_bound(self) -> bool:
        return self.role != "anonymous"


def _cache_key(jurisdiction: str, openid: str) -> str:
    return f"user:{jurisdiction}:{openid}"


# Cached users as read from the storage, by their JSON text: memory storage hands back
# the very string it was given, so a user seen before costs a dict lookup, not a parse.
_PARSED: dict[str, User] = {}
_PARSED_MAX = 4096


def _parsed(raw: str) -> User:
    user = _PARSED.get(raw)
    if user is None:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        user = _PARSED[raw] = User(**json.loads(raw))
    return user


async def resolve_user(
    storage: Storage, sessions: async_sessionmaker[AsyncSession], jurisdiction: str, openid: str
) -> User:
    raw = await storage.get(_cache_key(jurisdiction, openid))
    if raw is not None:
        return _parsed(raw)
    async with sessions() as session:
        rows = (
            await session.scalars(
                select(Binding).where(
                    Binding.jurisdiction == jurisdiction, Binding.openid == openid
                )
            )
        ).all()
    user = User(openid, jurisdiction)
    by_role = {b.role: b for b in rows}
    for role in ROLE_ORDER:
        if role in by_role:
            user = User(
                openid,
                jurisdiction,
                role,
                unit_id=by_role.get("liaison", by_role[role]).unit_id,
                donor_id=by_role["donor"].donor_id if "donor" in by_role else None,
            )
            break
    await storage.set_json(_cache_key(jurisdiction, openid), asdict(user), CACHE_TTL)
    return user


async def forget_user(storage: Storage, jurisdiction: str, openid: str) -> None:
    await storage.delete(
        _cache_key(jurisdiction, openid),
        f"state:{jurisdiction}:{openid}",
        f"more:{jurisdiction}:{openid}",
    )


async def erase_user(
    session: AsyncSession, storage: Storage, jurisdiction: str, openid: str
) -> int:
    """On unsubscribe: delete every binding and all conversation state of that user."""
    result = await session.execute(
        delete(Binding).where(Binding.jurisdiction == jurisdiction, Binding.openid == openid)
    )
    await forget_user(storage, jurisdiction, openid)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
