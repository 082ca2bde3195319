"""The app factory: every shared object under a typed AppKey, one cleanup_ctx per resource."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.channels import Channel, build_channels
from bot.clock import Clock, SystemClock
from bot.dispatcher import Dispatcher, build_dispatcher
from bot.logs import request_id
from bot.metrics import Metrics
from bot.outbox import Outbox, run_worker
from bot.render import Renderer, make_environment
from bot.settings import Settings
from bot.storage import Storage, make_storage
from bot.webhook import Webhook
from bot.wechat.message import Message
from bot.wechat_api import WeChatAPI
from handlers.donor import shipped_policies
from models.db import create_engine, session_factory
from models.migrate import require_current_schema

if TYPE_CHECKING:
    from bot.broadcasts.reminders import ReminderPlanner
    from bot.broadcasts.worker import BroadcastWorker

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
METRICS = web.AppKey("metrics", Metrics)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
CHANNELS = web.AppKey("channels", dict[tuple[str, str], Channel])
RENDER = web.AppKey("render", Renderer)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
STORAGE = web.AppKey("storage", Storage)
HTTP = web.AppKey("http", aiohttp.ClientSession)
APIS = web.AppKey("apis", dict[tuple[str, str], WeChatAPI])
OUTBOX = web.AppKey("outbox", Outbox)
WEBHOOK = web.AppKey("webhook", Webhook)


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database_url)
    try:
        await require_current_schema(engine)
    except Exception:
        await engine.dispose()
        raise
    app[ENGINE] = engine
    app[SESSIONS] = session_factory(engine)
    yield
    await engine.dispose()


async def _storage(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    owned = STORAGE not in app  # a storage handed in by the caller is the caller's to close
    if owned:
        app[STORAGE] = make_storage(settings.redis_url, settings.redis_prefix)
    yield
    if owned:
        await app[STORAGE].close()


async def _wechat_api(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    http = aiohttp.ClientSession()
    app[HTTP] = http
    apis: dict[tuple[str, str], WeChatAPI] = {}
    for (kind, code), channel in app[CHANNELS].items():
        j = settings.jurisdictions[code]
        if kind == "mp" and j.wechat is not None:
            secret = j.wechat.secret.get_secret_value()
            base = settings.wechat_api_base
        elif kind == "wecom" and j.wecom is not None:
            secret = j.wecom.secret.get_secret_value()
            base = settings.wecom_api_base
        else:  # pragma: no cover - build_channels only makes these two kinds
            continue
        apis[(kind, code)] = WeChatAPI(
            http,
            app[STORAGE],
            base_url=base,
            appid=channel.app_id,
            secret=secret,
            kind="wecom" if kind == "wecom" else "mp",
            agent_id=channel.agent_id,
        )
    app[APIS] = apis
    yield
    await http.close()


async def _webhook(app: web.Application) -> AsyncIterator[None]:
    outbox = Outbox(app[SESSIONS], app[CLOCK])
    app[OUTBOX] = outbox
    base = {
        "settings": app[SETTINGS],
        "clock": app[CLOCK],
        "storage": app[STORAGE],
        "sessions": app[SESSIONS],
        "render": app[RENDER],
        "dispatcher": app[DISPATCHER],
        "apis": app[APIS],
        # loaded and validated at start-up: a broken policy file stops the server here
        "policies": shipped_policies(),
    }
    app[WEBHOOK] = Webhook(
        app[SETTINGS],
        app[CLOCK],
        app[STORAGE],
        app[DISPATCHER],
        app[CHANNELS],
        app[RENDER],
        app[METRICS],
        outbox,
        base,
    )
    yield
    await outbox.drain()


def sender(app: web.Application) -> Callable[[Channel, str, str], Awaitable[Any]]:
    async def send(channel: Channel, openid: str, content: str) -> Any:
        return await app[APIS][(channel.kind, channel.jurisdiction)].send_text(openid, content)

    return send


def redispatcher(app: web.Application) -> Callable[[Channel, Message], Awaitable[str | None]]:
    async def redispatch(channel: Channel, message: Message) -> str | None:
        hook = app[WEBHOOK]
        return await hook._dispatch(message, hook._data(channel, message))

    return redispatch


def broadcast_worker(app: web.Application) -> tuple[BroadcastWorker, ReminderPlanner]:
    """The broadcast worker and the reminder planner over the app's shared resources."""
    from bot.broadcasts.reminders import ReminderPlanner
    from bot.broadcasts.worker import BroadcastWorker

    worker = BroadcastWorker(app[SESSIONS], app[SETTINGS], app[CLOCK], app[STORAGE], app[APIS])
    return worker, ReminderPlanner(app[SESSIONS], app[SETTINGS], app[CLOCK])


async def run_workers(app: web.Application, stop: asyncio.Event) -> None:
    """The outbox worker (late replies) and the broadcast worker, until `stop` is set."""
    broadcasts, planner = broadcast_worker(app)
    await asyncio.gather(
        run_worker(app[OUTBOX], app[CHANNELS], sender(app), redispatcher(app), stop),
        broadcasts.run(stop, extra=planner),
    )


async def _embedded_worker(app: web.Application) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_workers(app, stop))
    yield
    stop.set()
    await asyncio.wait_for(task, timeout=10)


def _new_request_ids() -> Iterator[str]:
    """16 hex digits: this process's random half, then a counter (no syscall per request)."""
    process = uuid.uuid4().hex[:8]
    return (f"{process}{n & 0xFFFFFFFF:08x}" for n in itertools.count(secrets.randbits(32)))


_request_ids = _new_request_ids()


def _reset_request_ids() -> None:  # a forked `serve` worker gets its own random half
    global _request_ids
    _request_ids = _new_request_ids()


os.register_at_fork(after_in_child=_reset_request_ids)


@web.middleware
async def _request_id(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request_id.set(request.headers.get("X-Request-Id") or next(_request_ids))
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        async with request.app[ENGINE].connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), 2.0)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        await asyncio.wait_for(request.app[STORAGE].ping(), 2.0)
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"unreachable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if ok else "unavailable", **checks}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})


def _routes(app: web.Application) -> None:
    def view(kind: str, post: bool) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            hook = request.app[WEBHOOK]
            return await (hook.receive(request, kind) if post else hook.verify(request, kind))

        return handle

    app.router.add_get("/wechat/{jurisdiction}", view("mp", False))
    app.router.add_post("/wechat/{jurisdiction}", view("mp", True))
    app.router.add_get("/wecom/{jurisdiction}", view("wecom", False))
    app.router.add_post("/wecom/{jurisdiction}", view("wecom", True))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    storage: Storage | None = None,
    dispatcher: Dispatcher | None = None,
    embedded_worker: bool = True,
    console: bool = True,
) -> web.Application:
    app = web.Application(middlewares=[_request_id], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app[METRICS] = Metrics()
    app[DISPATCHER] = dispatcher or build_dispatcher()
    app[CHANNELS] = build_channels(settings)
    app[RENDER] = Renderer(make_environment())
    if storage is not None:
        app[STORAGE] = storage
    app.cleanup_ctx.extend([_database, _storage, _wechat_api, _webhook])
    if embedded_worker:
        app.cleanup_ctx.append(_embedded_worker)
    app.on_startup.append(_freeze_heap)
    _routes(app)
    if console:
        from bot.console import create_console

        app.add_subapp("/console/", create_console(settings))
    return app


GC_THRESHOLDS = (10_000, 20, 20)


async def _freeze_heap(app: web.Application) -> None:
    """Move everything loaded at start-up out of the cyclic GC's reach.

    Each full collection otherwise rescans the ~130k objects SQLAlchemy, pydantic and
    Jinja2 leave behind at import time: 75-120 ms pauses, the webhook's p99 under load.

    Then collect the young generation less often: a message allocates a few hundred
    objects that reference counting frees, and the default threshold (700) ran a
    collection every couple of messages; a young collection costs about the objects
    still alive (the messages in flight), so fewer of them cost less in all.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
