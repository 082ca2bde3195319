"""`/wechat/{jurisdiction}` and `/wecom/{jurisdiction}`: verify, decrypt, dedup, dispatch, reply.

Each step that can refuse a request raises a typed error; `_respond_error` turns it
into the one HTTP answer for it (403 with no detail, 400, 404, 413).  A handler that
has not finished within the budget is answered `success` now and later through the
customer-service API; its message is recorded in the database first (bot/outbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Coroutine, Generator
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import reply_cache
from bot.channels import Channel
from bot.clock import Clock, local_now
from bot.dispatcher import Dispatcher
from bot.errors import BadMessage, InvalidSignature, ReplayedRequest, StaleRequest
from bot.metrics import Metrics
from bot.outbox import Outbox
from bot.render import Renderer
from bot.reply_templates import ReplyTemplates, for_renderer
from bot.settings import Settings
from bot.state import State
from bot.storage import Storage
from bot.wechat.message import Message, parse_message, parse_xml
from bot.wechat.reply import split_text, text_reply
from bot.wechat.signature import signature_ok

log = logging.getLogger(__name__)

_TIMESTAMP = re.compile(r"^\d{1,12}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MORE_HINT = "（回复「更多」查看下一页）"
PENDING = "P"


_ENCRYPT = re.compile(rb"<Encrypt><!\[CDATA\[([A-Za-z0-9+/=]+)\]\]></Encrypt>")


def _encrypt_field(body: bytes) -> str | None:
    """The envelope's Encrypt; a regex for WeChat's fixed form, the parser for anything else.

    The envelope is parsed once more than the message in safe mode; this saves that parse.
    """
    m = _ENCRYPT.search(body)
    if m is not None and body.count(b"<Encrypt>") == 1:
        return m.group(1).decode()
    value = parse_xml(body).get("Encrypt")
    return value if isinstance(value, str) else None


class _Inline:
    """Runs a coroutine in the awaiting task, up to a budget, without a task of its own.

    A message usually completes without waiting for I/O (memory storage, cached
    answers); creating a Task, a waiter and a timer for it costs more than the rest of
    its dispatch.  So the coroutine is driven here, by hand: if it finishes without
    suspending, `done` is True at once.  If it waits for a future, this waits with it
    (the budget's timer starts then); a cancellation of the awaiting task is passed on
    to what the coroutine waits for, as a Task would.  If the budget runs out first, the
    coroutine moves to a Task of its own (`task`), which first waits for the very future
    the coroutine is waiting on, then carries on driving it.
    """

    __slots__ = ("_expired", "_waiter", "coro", "result", "seconds", "task")

    def __init__(self, coro: Coroutine[Any, Any, Any], seconds: float) -> None:
        self.coro = coro
        self.seconds = seconds
        self.result: Any = None
        self.task: asyncio.Task[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._expired = False

    def _wake(self, _: object = None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _expire(self) -> None:
        self._expired = True
        self._wake()

    def __await__(self) -> Generator[Any, None, bool]:
        coro = self.coro
        try:
            pending = coro.send(None)
        except StopIteration as stop:
            self.result = stop.value
            return True
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.seconds, self._expire)
        try:
            while True:
                throw: BaseException | None = None
                blocking = getattr(pending, "_asyncio_future_blocking", None)
                if pending is None:  # a bare yield (sleep(0)): give the loop one turn
                    try:
                        yield None
                    except GeneratorExit:  # the awaiting coroutine is being closed
                        coro.close()
                        raise
                    except BaseException as exc:  # the task was cancelled: pass it on
                        throw = exc
                elif blocking and not self._expired:
                    fut: asyncio.Future[Any] = pending
                    fut._asyncio_future_blocking = False
                    waiter = self._waiter = loop.create_future()
                    fut.add_done_callback(self._wake)
                    try:
                        yield from waiter
                    except GeneratorExit:
                        coro.close()
                        raise
                    except BaseException as exc:  # the task was cancelled: pass it on
                        if not fut.cancel():  # as Task.cancel(): cancel what it waits on
                            throw = exc
                    finally:
                        fut.remove_done_callback(self._wake)
                        self._waiter = None
                    if throw is None and not fut.done():  # the budget is spent
                        fut._asyncio_future_blocking = True
                        self.task = asyncio.ensure_future(_resume(coro, fut))
                        return False
                else:  # spent already, or something only a Task can judge
                    self.task = asyncio.ensure_future(_resume(coro, pending))
                    return False
                try:
                    pending = coro.throw(throw) if throw is not None else coro.send(None)
                except StopIteration as stop:
                    self.result = stop.value
                    return True
        finally:
            timer.cancel()


class _Resume:
    """The rest of a coroutine that `_Inline` drove: first `pending` (what it waits on)."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro, self.pending = coro, pending

    def __await__(self) -> Generator[Any, None, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # the task was cancelled: pass it on
                step = partial(coro.throw, exc)
            else:
                step = partial(coro.send, None)
            try:
                pending = step()
            except StopIteration as stop:
                return stop.value


async def _resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Any:
    return await _Resume(coro, pending)


async def _within(task: asyncio.Task[Any], seconds: float) -> bool:
    """Wait up to `seconds` for `task` without cancelling it; True if it finished."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(seconds, wake)
    task.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    return task.done()


@dataclass
class Webhook:
    settings: Settings
    clock: Clock
    storage: Storage
    dispatcher: Dispatcher
    channels: dict[tuple[str, str], Channel]
    render: Renderer
    metrics: Metrics
    outbox: Outbox
    base_data: dict[str, Any]
    # Drive the dispatch in the request's own task (see _Inline) when storage is in this
    # process; with Redis each message waits on the network anyway.
    _inline: bool = field(init=False, default=False)
    _per_channel: dict[tuple[str, str], dict[str, Any]] = field(init=False, default_factory=dict)
    _days: dict[str, tuple[int, date]] = field(init=False, default_factory=dict)
    templates: ReplyTemplates = field(init=False)  # the offices' edited reply templates

    def __post_init__(self) -> None:
        self._inline = bool(getattr(self.storage, "in_process", False))
        with contextlib.suppress(TypeError):  # a storage that cannot be weakly referenced
            reply_cache.watch(self.storage)  # imports in this process reach its answers
        sessions = self.base_data.get("sessions")
        engine = getattr(sessions, "kw", {}).get("bind")
        if isinstance(engine, AsyncEngine):  # and so does any write through the app's engine
            reply_cache.follow_writes(engine, self.storage)
        self.templates = for_renderer(self.render, self.storage, self.base_data.get("sessions"))

    # ---- request checks -------------------------------------------------------------
    def _channel(self, request: web.Request, kind: str) -> Channel:
        channel = self.channels.get((kind, request.match_info["jurisdiction"]))
        if channel is None:
            raise web.HTTPNotFound(text="unknown jurisdiction")
        return channel

    def _fresh_params(self, request: web.Request) -> tuple[str, str]:
        ts, nonce = request.query.get("timestamp", ""), request.query.get("nonce", "")
        if not _TIMESTAMP.match(ts) or not _NONCE.match(nonce):
            raise InvalidSignature()
        if abs(self.clock.timestamp() - int(ts)) > self.settings.freshness_seconds:
            raise StaleRequest()
        return ts, nonce

    # ---- GET: URL verification ------------------------------------------------------
    async def verify(self, request: web.Request, kind: str) -> web.StreamResponse:
        try:
            channel = self._channel(request, kind)
            ts, nonce = self._fresh_params(request)
            echostr = request.query.get("echostr", "")
            if kind == "wecom":
                assert channel.crypto is not None
                channel.crypto.check(request.query.get("msg_signature", ""), ts, nonce, echostr)
                return web.Response(body=channel.crypto.decrypt(echostr))
            if not signature_ok((channel.token, ts, nonce), request.query.get("signature", "")):
                raise InvalidSignature()
            return web.Response(text=echostr)
        except (InvalidSignature, StaleRequest, BadMessage) as exc:
            return self._respond_error(request, exc)

    # ---- POST: a message ------------------------------------------------------------
    async def receive(self, request: web.Request, kind: str) -> web.StreamResponse:
        started = time.perf_counter()
        outcome = "error"
        try:
            channel = self._channel(request, kind)
            response, outcome = await self._receive(request, channel)
            return response
        except (InvalidSignature, StaleRequest, ReplayedRequest, BadMessage) as exc:
            outcome = type(exc).__name__
            return self._respond_error(request, exc)
        except web.HTTPException as exc:
            outcome = str(exc.status)
            raise
        finally:
            self.metrics.observe(kind, outcome, time.perf_counter() - started)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
        return body

    async def _receive(self, request: web.Request, channel: Channel) -> tuple[web.Response, str]:
        ts, nonce = self._fresh_params(request)
        q = request.query
        if channel.kind == "mp" and not signature_ok(
            (channel.token, ts, nonce), q.get("signature", "")
        ):
            raise InvalidSignature()
        body = await self._read_body(request)
        encrypted = channel.crypto is not None and (
            channel.kind == "wecom" or q.get("encrypt_type") == "aes" or channel.mode == "safe"
        )
        if encrypted:
            assert channel.crypto is not None
            cipher_text = _encrypt_field(body)
            if not isinstance(cipher_text, str) or not cipher_text:
                raise BadMessage("this account requires encrypted messages")
            channel.crypto.check(q.get("msg_signature", ""), ts, nonce, cipher_text)
            plain = channel.crypto.decrypt(cipher_text)
        else:
            plain = body
        await self._check_replay(channel, ts, nonce, plain)
        message = parse_message(plain)
        reply_text, outcome = await self._answer(channel, message, plain)
        if reply_text is None:
            return web.Response(text="success"), outcome
        xml = text_reply(message.source, message.target, reply_text, int(self.clock.timestamp()))
        if encrypted:
            assert channel.crypto is not None
            xml = channel.crypto.wrap(xml, ts, nonce)
        return web.Response(body=xml, content_type="application/xml"), outcome

    async def _check_replay(self, channel: Channel, ts: str, nonce: str, plain: bytes) -> None:
        """A (timestamp, nonce) seen with another body is a replay; with the same, a retry."""
        digest = hashlib.sha1(plain).hexdigest()  # noqa: S324 - equality check, not security
        key = f"nonce:{channel.kind}:{channel.jurisdiction}:{ts}:{nonce}"
        ttl = 2 * self.settings.freshness_seconds + 60
        if not await self.storage.add(key, digest, ttl) and await self.storage.get(key) != digest:
            raise ReplayedRequest()

    async def _answer(
        self, channel: Channel, message: Message, plain: bytes
    ) -> tuple[str | None, str]:
        key = f"dedup:{channel.kind}:{channel.jurisdiction}:{message.dedup_key}"
        ttl = self.settings.dedup_ttl_seconds
        if not await self.storage.add(key, PENDING, ttl):
            self.metrics.duplicates.inc()
            previous = await self.storage.get(key)
            if previous and previous.startswith("R:") and len(previous) > 2:
                return previous[2:], "duplicate"
            return None, "duplicate"

        data = self._data(channel, message)
        budget = self.settings.reply_budget_seconds
        if self._inline:
            run = _Inline(self._dispatch(message, data), budget)
            finished = await run
            reply, task = run.result, run.task
        else:  # every message awaits Redis: a task costs less than a hand-driven wait each
            task = asyncio.ensure_future(self._dispatch(message, data))
            finished = await _within(task, budget)
            reply = task.result() if finished else None
        if not finished:
            assert task is not None
            self.metrics.budget_overruns.inc()
            await self.outbox.hold_late_reply(channel, message, plain, key, task)
            return None, "late"
        if reply is None:
            await self.storage.set(key, "R:", ttl)
            return None, "ok"
        reply = await self._paginate(reply, channel, message)
        await self.storage.set(key, "R:" + reply, ttl)
        return reply, "ok"

    def _data(self, channel: Channel, message: Message) -> dict[str, Any]:
        code = channel.jurisdiction
        base = self._per_channel.get((channel.kind, code))
        if base is None or base["channel"] is not channel:
            base = self._per_channel[(channel.kind, code)] = {
                **self.base_data,
                "render": self.templates.local(code),  # this office's edits first
                "jurisdiction": code,
                "jurisdiction_name": channel.name,
                "timezone": channel.timezone,
                "channel": channel,
            }
        data = base.copy()
        data["today"] = self._today(channel)
        return data

    def _today(self, channel: Channel) -> date:
        """The local date; worked out once per second of the clock, not per message."""
        second = int(self.clock.timestamp())
        known = self._days.get(channel.timezone)
        if known is not None and known[0] == second:
            return known[1]
        today = local_now(self.clock, channel.timezone).date()
        self._days[channel.timezone] = (second, today)
        return today

    async def _dispatch(self, message: Message, data: dict[str, Any]) -> str | None:
        """The dispatcher's reply; an unexpected error becomes a polite apology, and is logged."""
        try:
            if self.templates.next_check <= time.monotonic():  # edits: a look every ~2 s
                await self.templates.refresh()
            return await self.dispatcher.feed(message, data)
        except Exception:
            self.metrics.handler_errors.inc()
            log.exception("handler failed", extra={"msg_type": message.msg_type})
            return data["render"]("busy")

    async def _paginate(self, reply: str, channel: Channel, message: Message) -> str:
        """The first page of a long reply; the rest waits for 「更多」."""
        pages = split_text(reply, self.settings.text_limit_bytes, MORE_HINT)
        if len(pages) > 1:
            await State(self.storage, channel.jurisdiction, message.source).push_pages(pages[1:])
        return pages[0]

    def _respond_error(self, request: web.Request, exc: Exception) -> web.Response:
        if isinstance(exc, BadMessage):
            log.info("bad message refused", extra={"reason": str(exc)[:120]})
            return web.Response(status=400, text="bad request")
        log.info("request refused", extra={"reason": type(exc).__name__})
        return web.Response(status=403, text="forbidden")
