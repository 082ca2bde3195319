"""Login, logout and the landing page."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import select

from bot.console.common import clock, form, page, sessions, settings
from bot.console.security import (
    Staff,
    current_staff,
    dummy_hash,
    login_delay,
    password_ok,
    start_session,
)
from models.audit import audit
from models.console import ConsoleUser

# how long a failed attempt is held before it answers (slows guessing a little more)
FAILED_PAUSE = 0.3


async def login_form(request: web.Request) -> web.Response:
    if await current_staff(request) is not None:
        raise web.HTTPFound("/console/")
    return page(request, "login.html", error=None, username="")


async def login(request: web.Request) -> web.Response:
    data = form(request)
    username = str(data.get("username", "")).strip()[:64]
    password = str(data.get("password", ""))
    now = clock(request).now()
    async with sessions(request)() as s:
        user = await s.scalar(select(ConsoleUser).where(ConsoleUser.username == username))
        if user is not None:
            wait = login_delay(user.failed_logins, user.last_failed_at, now)
            if wait > 0:
                msg = f"登录失败次数过多，请 {int(wait) + 1} 秒后再试。"
                return page(request, "login.html", status=429, error=msg, username=username)
        ok = password_ok(user.password_hash if user else dummy_hash(), password)
        if user is None or not ok or user.disabled:
            if user is not None:
                user.failed_logins += 1
                user.last_failed_at = now
                audit(s, f"console:{username}", "console.login_failed", user.jurisdiction)
                await s.commit()
            await asyncio.sleep(FAILED_PAUSE)
            return page(
                request, "login.html", status=401, error="用户名或密码不正确。", username=username
            )
        user.failed_logins = 0
        user.last_failed_at = None
        audit(s, f"console:{username}", "console.login", user.jurisdiction)
        staff = Staff(user.id, user.username, user.role, user.jurisdiction)
        await s.commit()
    await start_session(request, staff)
    raise web.HTTPFound("/console/")


async def logout(request: web.Request) -> web.Response:
    from aiohttp_session import get_session

    (await get_session(request)).invalidate()
    raise web.HTTPFound("/console/login")


async def home(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    if staff is None:
        raise web.HTTPFound("/console/login")
    if not staff.is_admin and staff.jurisdiction:
        raise web.HTTPFound(f"/console/j/{staff.jurisdiction}/")
    return page(request, "home.html", places=settings(request).jurisdictions)


def register(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
