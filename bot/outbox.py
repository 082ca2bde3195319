"""Late replies that must not be lost: held in the database, sent by the outbox worker.

When a handler overruns the webhook's budget, `hold_late_reply` writes the inbound
message to `outbound_messages` (status `processing`, with a lease) *before* the
webhook answers `success`.  When the handler finishes, the reply is stored and the
row becomes `pending`; the worker sends it through the customer-service API.  If
the process dies first, the lease expires and a worker runs the message again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import Channel
from bot.clock import Clock
from bot.errors import TRANSIENT_ERRCODES, WeChatAPIError, WeChatTransportError
from bot.wechat.message import Message, parse_message
from models.messaging import OutboundMessage

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 8
MAX_BACKOFF = 300.0

Sender = Callable[[Channel, str, str], Awaitable[Any]]  # (channel, openid, text)
Redispatch = Callable[[Channel, Message], Awaitable[str | None]]


def backoff(attempts: int) -> float:
    """Capped exponential backoff with full jitter, in seconds."""
    return random.uniform(0.5, 1.0) * min(MAX_BACKOFF, 2.0**attempts)


class Outbox:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock
        self.tasks: set[asyncio.Task[Any]] = set()
        self.wakeup = asyncio.Event()

    async def hold_late_reply(
        self, channel: Channel, message: Message, plain: bytes, key: str, task: asyncio.Task[Any]
    ) -> None:
        """Record the message durably, then let the still-running handler fill in the reply."""
        now = self.clock.now()
        async with self.sessions() as session:
            row = OutboundMessage(
                jurisdiction=channel.jurisdiction,
                channel=channel.kind,
                openid=message.source,
                content="",
                request_xml=plain.decode("utf-8", "replace"),
                source_key=key,
                status="processing",
                attempts=0,
                next_attempt_at=now,
                locked_until=now + LEASE,
            )
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:  # a retry of a message already held
                return
            row_id = row.id
        finisher = asyncio.ensure_future(self._finish(row_id, task))
        self.tasks.add(finisher)
        finisher.add_done_callback(self.tasks.discard)

    async def _finish(self, row_id: int, task: asyncio.Task[Any]) -> None:
        reply = await task
        await self.fill(row_id, reply)

    async def fill(self, row_id: int, reply: str | None) -> None:
        async with self.sessions() as session:
            await session.execute(
                update(OutboundMessage)
                .where(OutboundMessage.id == row_id)
                .values(
                    content=reply or "",
                    status="pending" if reply else "done",
                    request_xml=None,
                    locked_until=None,
                    next_attempt_at=self.clock.now(),
                )
            )
            await session.commit()
        self.wakeup.set()

    async def claim(self, limit: int = 50) -> list[OutboundMessage]:
        """Due rows, leased to this worker (SKIP LOCKED on PostgreSQL; one writer on SQLite)."""
        now = self.clock.now()
        claimable = or_(
            (OutboundMessage.status == "pending")
            & (OutboundMessage.next_attempt_at <= now)
            & (OutboundMessage.locked_until.is_(None) | (OutboundMessage.locked_until < now)),
            (OutboundMessage.status == "processing") & (OutboundMessage.locked_until < now),
        )
        due = (
            select(OutboundMessage.id)
            .where(claimable)
            .order_by(OutboundMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self.sessions() as session:
            # Look before taking a lease: an idle worker then never writes, so it does not
            # contend with imports for SQLite's single write lock.
            if await session.scalar(select(OutboundMessage.id).where(claimable).limit(1)) is None:
                return []
            rows = (
                await session.scalars(
                    update(OutboundMessage)
                    .where(OutboundMessage.id.in_(due.scalar_subquery()))
                    .values(locked_until=now + LEASE)
                    .returning(OutboundMessage)
                )
            ).all()
            await session.commit()
        return list(rows)

    async def deliver(
        self, row: OutboundMessage, channel: Channel | None, send: Sender, redispatch: Redispatch
    ) -> str:
        """Send one claimed row and record the result; returns the new status."""
        values: dict[str, Any] = {"locked_until": None}
        if channel is None:
            values.update(status="failed", last_error="account no longer configured")
        else:
            if row.status == "processing":  # its server died before the handler finished
                assert row.request_xml is not None
                reply = await redispatch(channel, parse_message(row.request_xml.encode()))
                row.content = reply or ""
                values.update(content=row.content, request_xml=None)
                if not reply:
                    values.update(status="done")
            if values.get("status") != "done":
                values.update(await self._send(row, channel, send))
        async with self.sessions() as session:
            await session.execute(
                update(OutboundMessage).where(OutboundMessage.id == row.id).values(**values)
            )
            await session.commit()
        return str(values["status"])

    async def _send(self, row: OutboundMessage, channel: Channel, send: Sender) -> dict[str, Any]:
        attempts = row.attempts + 1
        try:
            await send(channel, row.openid, row.content)
        except (WeChatAPIError, WeChatTransportError) as exc:
            transient = isinstance(exc, WeChatTransportError) or exc.errcode in TRANSIENT_ERRCODES
            if transient and attempts < MAX_ATTEMPTS:
                retry_at = self.clock.now() + timedelta(seconds=backoff(attempts))
                return {
                    "status": "pending",
                    "attempts": attempts,
                    "next_attempt_at": retry_at,
                    "last_error": str(exc)[:255],
                }
            return {"status": "failed", "attempts": attempts, "last_error": str(exc)[:255]}
        return {"status": "sent", "attempts": attempts, "sent_at": self.clock.now()}

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for late handlers still running (graceful shutdown)."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)


async def run_worker(
    outbox: Outbox,
    channels: dict[tuple[str, str], Channel],
    send: Sender,
    redispatch: Redispatch,
    stop: asyncio.Event,
    idle: float = 1.0,
) -> None:
    """Send due rows until `stop` is set; errors are logged and the loop goes on."""
    while not stop.is_set():
        try:
            rows = await outbox.claim()
            for row in rows:
                status = await outbox.deliver(
                    row, channels.get((row.channel, row.jurisdiction)), send, redispatch
                )
                log.info("outbox delivery", extra={"row": row.id, "status": status})
        except Exception:
            log.exception("outbox worker iteration failed")
            rows = []
        if not rows:
            outbox.wakeup.clear()
            waiters = [
                asyncio.ensure_future(outbox.wakeup.wait()),
                asyncio.ensure_future(stop.wait()),
            ]
            _, pending = await asyncio.wait(
                waiters, timeout=idle, return_when=asyncio.FIRST_COMPLETED
            )
            for w in pending:
                w.cancel()
