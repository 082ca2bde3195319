"""The console's locks: password hashes, sessions, CSRF tokens, login throttling, scope.

- Passwords: argon2id (argon2-cffi, its recommended parameters), never stored or logged.
- Sessions: aiohttp-session — in Redis when there is one (scale-out), otherwise an
  encrypted cookie (Fernet); HttpOnly, SameSite=Strict, Secure when `console_https`.
- CSRF: a random token per session; every POST must carry it (form field `_csrf` or
  header `X-CSRF-Token`), compared in constant time.
- Five failed logins in a row → each further attempt waits (the delay doubles).
- An office user sees only their jurisdiction; an admin sees all.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp_session import get_session
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.errors import DonorbotError
from bot.settings import Settings

CONSOLE_SETTINGS = web.AppKey("console_settings", Settings)
FORM: web.RequestKey[Any] = web.RequestKey("console_form")  # the POSTed form, read once
_hasher = PasswordHasher()
FREE_FAILURES = 5  # failed logins before attempts are slowed down
MAX_DELAY = 300.0
MIN_PASSWORD = 10
ROLES = ("office", "admin")


class ConsoleError(DonorbotError):
    """A console account operation that cannot be done (shown as one line by the CLI)."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ConsoleError(f"密码至少需要 {MIN_PASSWORD} 个字符")
    return _hasher.hash(password)


def password_ok(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
    """A hash to verify against when the username does not exist, so both paths cost the
    same (made on first use: an argon2 hash at import would slow every CLI command)."""
    return _hasher.hash(secrets.token_urlsafe(16))


def login_delay(failures: int, last_failed_at: datetime | None, now: datetime) -> float:
    """Seconds the account must still wait before the next attempt (0 = may try now)."""
    if failures < FREE_FAILURES or last_failed_at is None:
        return 0.0
    wait = min(MAX_DELAY, 2.0 ** (failures - FREE_FAILURES + 1))
    if last_failed_at.tzinfo is None:  # SQLite hands back naive UTC
        last_failed_at = last_failed_at.replace(tzinfo=UTC)
    left = (last_failed_at + timedelta(seconds=wait) - now).total_seconds()
    return max(0.0, left)


def session_key(settings: Settings) -> bytes:
    """The 32 raw bytes of the Fernet key for cookie sessions (embedded mode)."""
    secret = settings.console_secret_key.get_secret_value()
    if not secret:
        base = settings.id_hash_key.get_secret_value().encode()
        secret = hmac.new(base, b"donorbot console sessions", hashlib.sha256).hexdigest()
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class Staff:
    """The logged-in console user, as the views see them."""

    id: int
    username: str
    role: str
    jurisdiction: str | None  # None for an admin

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_see(self, code: str) -> bool:
        return self.is_admin or self.jurisdiction == code


STAFF_KEY = "staff"
CSRF_KEY = "csrf"


async def current_staff(request: web.Request) -> Staff | None:
    session = await get_session(request)
    data = session.get(STAFF_KEY)
    if not isinstance(data, dict):
        return None
    return Staff(int(data["id"]), str(data["username"]), str(data["role"]), data.get("j"))


async def start_session(request: web.Request, staff: Staff) -> None:
    session = await get_session(request)
    session.invalidate()  # a fresh session id on login (no fixation)
    session = await get_session(request)
    session[STAFF_KEY] = {
        "id": staff.id,
        "username": staff.username,
        "role": staff.role,
        "j": staff.jurisdiction,
    }
    session[CSRF_KEY] = secrets.token_urlsafe(32)


async def csrf_token(request: web.Request) -> str:
    session = await get_session(request)
    token = session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return token


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every state-changing request carries the session's CSRF token.

    Forms are read here once (uploads up to `console_max_upload_mb`; larger → 413 with a
    clear message) and left in `request[FORM]` for the view.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return await handler(request)
    session = await get_session(request)
    expected = session.get(CSRF_KEY)
    given = request.headers.get("X-CSRF-Token")
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        settings = request.config_dict[CONSOLE_SETTINGS]
        limit = settings.console_max_upload_mb * 1024 * 1024
        try:
            form = await request.clone(client_max_size=limit).post()
        except web.HTTPRequestEntityTooLarge:
            raise web.HTTPRequestEntityTooLarge(
                max_size=limit,
                actual_size=request.content_length or 0,
                text=f"文件太大：上传不能超过 {settings.console_max_upload_mb} MB。",
                content_type="text/plain",
            ) from None
        request[FORM] = form
        value = form.get("_csrf")
        given = given or (value if isinstance(value, str) else None)
    if not isinstance(expected, str) or not given or not hmac.compare_digest(expected, given):
        _close_uploads(request.get(FORM))
        raise web.HTTPForbidden(
            text="请求缺少有效的安全令牌（CSRF），或登录已过期：请刷新页面后重试。",
            content_type="text/plain",
        )
    return await handler(request)


def _close_uploads(form: Any) -> None:
    """A refused request's uploaded files are closed now, not left to the collector."""
    for value in (form or {}).values():
        if isinstance(value, web.FileField):
            value.file.close()


def require(staff: Staff | None, code: str | None = None, *, admin: bool = False) -> Staff:
    """The staff member, if they may see `code` (or are an admin when `admin`); else 403/302."""
    if staff is None:
        raise web.HTTPFound("/console/login")
    if admin and not staff.is_admin:
        raise web.HTTPForbidden(text="只有管理员可以访问此页面。", content_type="text/plain")
    if code is not None and not staff.may_see(code):
        raise web.HTTPForbidden(
            text=f"您的账号只能查看本辖区的数据，不能访问「{code}」。", content_type="text/plain"
        )
    return staff


def audit_actor(staff: Staff) -> str:
    return f"console:{staff.username}"
