"""The office console at /console/: server-rendered pages (aiohttp-jinja2), Chinese UI.

`create_console(settings)` builds the sub-application that `bot.app.create_app` mounts.
It reaches the main app's shared objects (database sessions, storage, clock, WeChat
APIs, renderer) through `request.config_dict`, so the webhook's hot path pays nothing
for the console: sessions and CSRF run only under /console/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import setup as setup_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from bot.console.security import (
    CONSOLE_SETTINGS,
    csrf_middleware,
    csrf_token,
    current_staff,
    session_key,
)
from bot.settings import Settings

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "console"
STATIC = Path(__file__).with_name("static")
COOKIE = "donorbot_console"


async def _context(request: web.Request) -> dict[str, Any]:
    """What every page's template may use: who is logged in, the CSRF token, the place."""
    return {
        "staff": await current_staff(request),
        "csrf": await csrf_token(request),
        "code": request.match_info.get("code"),
        "jurisdictions": request.config_dict[CONSOLE_SETTINGS].jurisdictions,
        "path": request.path,
    }


def create_console(settings: Settings) -> web.Application:
    console = web.Application()
    console[CONSOLE_SETTINGS] = settings
    max_age = int(settings.console_session_hours * 3600)
    cookie: dict[str, Any] = {
        "cookie_name": COOKIE,
        "max_age": max_age,
        "httponly": True,
        "samesite": "Strict",
        "secure": settings.console_https,
        "path": "/console/",
    }
    if settings.redis_url:
        from aiohttp_session.redis_storage import RedisStorage
        from redis.asyncio import Redis

        client = Redis.from_url(settings.redis_url)
        storage: Any = RedisStorage(client, **cookie)

        async def close_redis(app: web.Application) -> AsyncIterator[None]:
            yield
            await client.aclose()

        console.cleanup_ctx.append(close_redis)
    else:
        storage = EncryptedCookieStorage(session_key(settings), **cookie)
    setup_session(console, storage)
    console.middlewares.append(csrf_middleware)
    env = aiohttp_jinja2.setup(
        console,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True),
        context_processors=[_context],
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = _num
    from bot.console import views

    views.register(console)
    console.router.add_static("/static/", STATIC, name="static")
    return console


def _num(value: Any) -> str:
    from bot.render import number

    return number(value)
