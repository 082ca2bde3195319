"""What the console's pages share: the main app's resources and the page scaffolding."""

from __future__ import annotations

from datetime import date
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import CLOCK, SESSIONS, SETTINGS
from bot.clock import Clock, local_now
from bot.console.security import FORM, Staff, current_staff, require
from bot.settings import Settings


def sessions(request: web.Request) -> async_sessionmaker[AsyncSession]:
    return request.config_dict[SESSIONS]


def settings(request: web.Request) -> Settings:
    return request.config_dict[SETTINGS]


def clock(request: web.Request) -> Clock:
    return request.config_dict[CLOCK]


def today(request: web.Request, code: str) -> date:
    return local_now(clock(request), settings(request).jurisdiction(code).timezone).date()


async def staff_for(request: web.Request, *, admin: bool = False) -> tuple[Staff, str]:
    """The logged-in user and the jurisdiction of the URL, if they may see it (else 302/403/404)."""
    code = request.match_info["code"]
    staff = require(await current_staff(request), code, admin=admin)
    if code not in settings(request).jurisdictions:
        raise web.HTTPNotFound(text=f"没有辖区「{code}」。", content_type="text/plain")
    return staff, code


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    return aiohttp_jinja2.render_template(template, request, context, status=status)


def form(request: web.Request) -> Any:
    """The POSTed form, already read (and its CSRF token checked) by the middleware."""
    return request.get(FORM) or MultiDict()  # a POST that is not a form has no fields
