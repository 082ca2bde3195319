"""`/wechat/{jurisdiction}` and `/wecom/{jurisdiction}`: verify, decrypt, dedup, dispatch, reply.

Each step that can refuse a request raises a typed error; `_respond_error` turns it
into the one HTTP answer for it (403 with no detail, 400, 404, 413).  A handler that
has not finished within the budget is answered `success` now and later through the
customer-service API; its message is recorded in the database first (bot/outbox.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.channels import Channel
from bot.clock import Clock, local_now
from bot.dispatcher import Dispatcher
from bot.errors import BadMessage, InvalidSignature, ReplayedRequest, StaleRequest
from bot.metrics import Metrics
from bot.outbox import Outbox
from bot.render import Renderer
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


async def _within(task: asyncio.Task[Any], seconds: float) -> bool:
    """Wait up to `seconds` for `task` without cancelling it; True if it finished.

    asyncio.wait does the same with more bookkeeping; this runs for every message.
    """
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
        task = asyncio.ensure_future(self._dispatch(message, data))
        if not await _within(task, self.settings.reply_budget_seconds):
            self.metrics.budget_overruns.inc()
            await self.outbox.hold_late_reply(channel, message, plain, key, task)
            return None, "late"
        reply = task.result()
        if reply is None:
            await self.storage.set(key, "R:", ttl)
            return None, "ok"
        reply = await self._paginate(reply, channel, message)
        await self.storage.set(key, "R:" + reply, ttl)
        return reply, "ok"

    def _data(self, channel: Channel, message: Message) -> dict[str, Any]:
        data = dict(self.base_data)
        data["jurisdiction"] = channel.jurisdiction
        data["jurisdiction_name"] = channel.name
        data["timezone"] = channel.timezone
        data["channel"] = channel
        data["today"] = local_now(self.clock, channel.timezone).date()
        return data

    async def _dispatch(self, message: Message, data: dict[str, Any]) -> str | None:
        """The dispatcher's reply; an unexpected error becomes a polite apology, and is logged."""
        try:
            return await self.dispatcher.feed(message, data)
        except Exception:
            self.metrics.handler_errors.inc()
            log.exception("handler failed", extra={"msg_type": message.msg_type})
            return self.render("busy")

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
