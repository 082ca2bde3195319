"""Invite codes and bindings: who may see a unit's numbers.

A code is six digits, printed once by `donorbot invite`, stored only as a keyed hash
that includes the jurisdiction (so a code of another jurisdiction never matches).
Five wrong codes from one openid within an hour lock that openid for an hour.
A liaison from the office's directory may add the phone's last four digits
(「绑定 483920 5678」) to be linked to that entry — never bind by phone alone.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import DonorbotError
from bot.privacy import keyed_hash
from bot.settings import Settings
from bot.storage import Storage
from bot.users import forget_user
from models.audit import audit
from models.invites import Invite
from models.people import Liaison
from models.plans import Unit
from models.units import UnitRef
from models.users import Binding

MAX_FAILURES = 5
LOCK_SECONDS = 3600.0
_DURATION = re.compile(r"^(\d+)\s*([dhm])$")


class BadDuration(DonorbotError):
    pass


def parse_ttl(text: str) -> timedelta:
    """「7d」「12h」「30m」 → a timedelta (at most a year)."""
    m = _DURATION.match(text.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise BadDuration(f"有效期「{text}」看不懂：请写成 7d、12h 或 30m")
    n, unit = int(m.group(1)), m.group(2)
    ttl = {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]
    if ttl > timedelta(days=366):
        raise BadDuration("有效期最长一年")
    return ttl


def code_hash(settings: Settings, jurisdiction: str, code: str) -> str:
    return keyed_hash(settings.id_hash_key.get_secret_value(), f"invite:{jurisdiction}:{code}")


def openid_hash(openid: str) -> str:
    return hashlib.sha256(openid.encode()).hexdigest()


@dataclass(frozen=True)
class NewInvite:
    code: str
    role: str
    unit: UnitRef | None
    expires_at: datetime


async def create_invite(
    session: AsyncSession,
    settings: Settings,
    *,
    jurisdiction: str,
    role: str,
    unit: UnitRef | None,
    ttl: timedelta,
    actor: str,
    now: datetime,
) -> NewInvite:
    """A fresh code (shown once) for a unit's liaison or for office staff; audited."""
    if role == "liaison" and unit is None:
        raise DonorbotError("联络员邀请码必须指定单位")
    for _ in range(20):  # 10^6 codes: a collision with a live one is rare, but possible
        code = f"{secrets.randbelow(10**6):06d}"
        digest = code_hash(settings, jurisdiction, code)
        if await session.scalar(select(Invite.id).where(Invite.code_hash == digest)) is None:
            break
    else:  # pragma: no cover - would need ~10^6 live codes
        raise DonorbotError("暂时无法生成邀请码，请稍后再试")
    expires = now + ttl
    session.add(
        Invite(
            jurisdiction=jurisdiction,
            role=role,
            unit_id=unit.id if unit else None,
            code_hash=digest,
            expires_at=expires,
            created_by=actor,
        )
    )
    audit(
        session, actor, "invite.create", jurisdiction, role=role, unit=unit.name if unit else None
    )
    return NewInvite(code, role, unit, expires)


@dataclass(frozen=True)
class BindResult:
    status: str  # ok | invalid | expired | used | locked | phone_mismatch
    role: str = ""
    unit_id: int | None = None
    unit_name: str = ""
    failures_left: int = 0


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they are stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def redeem(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    jurisdiction: str,
    openid: str,
    code: str,
    phone_last4: str,
    now: datetime,
) -> BindResult:
    """Bind `openid` with a code; counts failures and locks after five in an hour."""
    lock_key, fail_key = f"bindlock:{jurisdiction}:{openid}", f"bindfail:{jurisdiction}:{openid}"
    if await storage.get(lock_key):
        return BindResult("locked")
    invite = await session.scalar(
        select(Invite).where(Invite.code_hash == code_hash(settings, jurisdiction, code))
    )
    status = _check(invite, now)
    liaison_id = None
    if status == "ok" and invite is not None and phone_last4:
        liaison_id = await session.scalar(
            select(Liaison.id).where(
                Liaison.unit_id == invite.unit_id, Liaison.phone_last4 == phone_last4
            )
        )
        status = "ok" if liaison_id is not None else "phone_mismatch"
    if status != "ok" or invite is None:
        failures = await storage.incr(fail_key, LOCK_SECONDS)
        if failures >= MAX_FAILURES:
            await storage.set(lock_key, "1", LOCK_SECONDS)
            return BindResult("locked")
        return BindResult(status, failures_left=MAX_FAILURES - failures)
    claimed = await session.execute(  # atomically: two people racing for one code
        update(Invite)
        .where(Invite.id == invite.id, Invite.used_at.is_(None))
        .values(used_at=now, used_by=openid_hash(openid))
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        return BindResult("used")
    await _bind(session, jurisdiction, openid, invite, liaison_id)
    await storage.delete(fail_key)
    await forget_user(storage, jurisdiction, openid)
    unit = await session.get(Unit, invite.unit_id) if invite.unit_id else None
    audit(
        session, "wechat", "bind", jurisdiction, role=invite.role, unit=unit.name if unit else None
    )
    return BindResult("ok", invite.role, invite.unit_id, unit.name if unit else "")


def _check(invite: Invite | None, now: datetime) -> str:
    if invite is None or invite.revoked:
        return "invalid"
    if invite.used_at is not None:
        return "used"
    if _aware(invite.expires_at) <= now:
        return "expired"
    return "ok"


async def _bind(
    session: AsyncSession, jurisdiction: str, openid: str, invite: Invite, liaison_id: int | None
) -> None:
    """One binding per role: a new liaison code moves the user to the new unit."""
    existing = await session.scalar(
        select(Binding).where(
            Binding.jurisdiction == jurisdiction,
            Binding.openid == openid,
            Binding.role == invite.role,
        )
    )
    if existing is None:
        existing = Binding(jurisdiction=jurisdiction, openid=openid, role=invite.role)
        session.add(existing)
    existing.unit_id = invite.unit_id
    existing.liaison_id = liaison_id


async def unbind(session: AsyncSession, storage: Storage, jurisdiction: str, openid: str) -> int:
    """Remove the user's liaison and office bindings (a donor binding stays)."""
    result = await session.execute(
        delete(Binding).where(
            Binding.jurisdiction == jurisdiction,
            Binding.openid == openid,
            Binding.role.in_(("liaison", "office")),
        )
    )
    await forget_user(storage, jurisdiction, openid)
    if result.rowcount:  # type: ignore[attr-defined]
        audit(session, "wechat", "unbind", jurisdiction)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
