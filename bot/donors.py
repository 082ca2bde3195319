"""Donor binding: ID number + name must match a donor record, then a one-time code.

1. 「绑定献血者」 → the bot asks for 「身份证号 姓名」.
2. `start_verification` checks the GB 11643 check digit, matches keyed hashes of the ID
   number and the name against `donors` (never storing or logging either in clear) and
   sends a 6-digit code through a `CodeSender`; only a keyed hash of the code is kept,
   for ten minutes.
3. `confirm_code` → a `donor` binding. Five failures (no matching record, wrong code)
   from one openid within an hour lock donor binding for that openid for an hour.

`CodeSender` is the seam for an SMS provider: the blood station holds the donor's phone
number, so an implementation receives the donor's id and looks the number up itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.privacy import id_number_valid, keyed_hash, mask_name
from bot.settings import Settings
from bot.storage import Storage
from bot.users import forget_user
from models.audit import audit
from models.donations import Donor
from models.users import Binding

log = logging.getLogger(__name__)

MAX_FAILURES = 5
LOCK_SECONDS = 3600.0
CODE_TTL = 600.0
CODE_DIGITS = 6


class CodeSender(Protocol):
    """Delivers a one-time code to the donor by a channel the donor already proved to own.

    An SMS implementation: look up the phone number the blood station registered for
    `donor_id` (never the number the WeChat user types), send `code`, raise on failure
    (the user is then told to try again later). It must not log the code or the number.
    """

    async def send_code(self, *, jurisdiction: str, donor_id: int, openid: str, code: str) -> None:
        """Send `code` to the donor `donor_id`; `openid` only for correlation (hash it)."""
        ...


@dataclass
class SentCode:
    jurisdiction: str
    donor_id: int
    openid: str
    code: str


@dataclass
class LogCodeSender:
    """Development sender: logs that a code was sent (masked unless `reveal`) and keeps it.

    `sent` lets tests (and `donorbot chat`) read the code; never use this in production.
    """

    reveal: bool = False
    sent: list[SentCode] = field(default_factory=list)

    async def send_code(self, *, jurisdiction: str, donor_id: int, openid: str, code: str) -> None:
        self.sent.append(SentCode(jurisdiction, donor_id, openid, code))
        shown = code if self.reveal else "*" * len(code)
        log.info(
            "donor verification code (development sender)",
            extra={
                "jurisdiction": jurisdiction,
                "donor": donor_id,
                "openid_hash": hashlib.sha256(openid.encode()).hexdigest()[:12],
                "code": shown,
            },
        )

    def last_code(self, openid: str) -> str | None:
        return next((s.code for s in reversed(self.sent) if s.openid == openid), None)


@dataclass(frozen=True)
class VerifyResult:
    # sent | locked | bad_checksum | no_name | no_match | no_pending | wrong_code | ok
    status: str
    failures_left: int = 0
    name_masked: str = ""


def _keys(jurisdiction: str, openid: str) -> tuple[str, str, str]:
    return (
        f"donorlock:{jurisdiction}:{openid}",
        f"donorfail:{jurisdiction}:{openid}",
        f"donorcode:{jurisdiction}:{openid}",
    )


def _code_hash(settings: Settings, jurisdiction: str, openid: str, code: str) -> str:
    return keyed_hash(
        settings.id_hash_key.get_secret_value(), f"donorcode:{jurisdiction}:{openid}:{code}"
    )


async def _fail(storage: Storage, jurisdiction: str, openid: str, status: str) -> VerifyResult:
    lock_key, fail_key, code_key = _keys(jurisdiction, openid)
    failures = await storage.incr(fail_key, LOCK_SECONDS)
    if failures >= MAX_FAILURES:
        await storage.set(lock_key, "1", LOCK_SECONDS)
        await storage.delete(code_key)
        return VerifyResult("locked")
    return VerifyResult(status, failures_left=MAX_FAILURES - failures)


async def start_verification(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    sender: CodeSender,
    *,
    jurisdiction: str,
    openid: str,
    id_number: str,
    name: str,
) -> VerifyResult:
    """Match ID number + name to a donor and send a one-time code; counts failures."""
    lock_key, _, code_key = _keys(jurisdiction, openid)
    if await storage.get(lock_key):
        return VerifyResult("locked")
    if not id_number_valid(id_number):
        return VerifyResult("bad_checksum")
    if not name.strip():
        return VerifyResult("no_name")
    key = settings.id_hash_key.get_secret_value()
    donor = await session.scalar(
        select(Donor).where(
            Donor.jurisdiction == jurisdiction,
            Donor.id_hash == keyed_hash(key, id_number),
            Donor.name_hash == keyed_hash(key, name.strip()),
        )
    )
    if donor is None:
        return await _fail(storage, jurisdiction, openid, "no_match")
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    pending = {"donor_id": donor.id, "code": _code_hash(settings, jurisdiction, openid, code)}
    await storage.set_json(code_key, pending, CODE_TTL)
    await sender.send_code(jurisdiction=jurisdiction, donor_id=donor.id, openid=openid, code=code)
    return VerifyResult("sent", name_masked=donor.name_masked or mask_name(name))


async def confirm_code(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    jurisdiction: str,
    openid: str,
    code: str,
) -> VerifyResult:
    """The code the donor received → a `donor` binding; a wrong code counts as a failure."""
    lock_key, fail_key, code_key = _keys(jurisdiction, openid)
    if await storage.get(lock_key):
        return VerifyResult("locked")
    pending = await storage.get_json(code_key)
    if not pending:
        return VerifyResult("no_pending")
    expected = str(pending["code"])
    if not hmac.compare_digest(expected, _code_hash(settings, jurisdiction, openid, code)):
        return await _fail(storage, jurisdiction, openid, "wrong_code")
    donor = await session.get(Donor, int(pending["donor_id"]))
    if donor is None:  # the record was removed meanwhile
        await storage.delete(code_key)
        return VerifyResult("no_pending")
    binding = await session.scalar(
        select(Binding).where(
            Binding.jurisdiction == jurisdiction, Binding.openid == openid, Binding.role == "donor"
        )
    )
    if binding is None:
        binding = Binding(jurisdiction=jurisdiction, openid=openid, role="donor")
        session.add(binding)
    binding.donor_id = donor.id
    await storage.delete(code_key, fail_key)
    await forget_user(storage, jurisdiction, openid)
    audit(session, "wechat", "bind.donor", jurisdiction)
    return VerifyResult("ok", name_masked=donor.name_masked)
