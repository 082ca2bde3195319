"""The broadcast worker: lease due deliveries, send them, record what WeChat said.

Claiming sets `status = sending` and a lease (`locked_until`) in one statement
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, so two workers never take the same row; on
SQLite the single writer makes the UPDATE … RETURNING atomic). A worker killed while
holding rows loses nothing: the lease runs out and another worker takes them again.
Only those in-flight rows can be sent twice, and template sends carry a
`client_msg_id` derived from the delivery's id, so WeChat drops such a repeat.

Outcomes: sent (with WeChat's msgid); a transient error (-1, 45011, timeouts, 5xx, a
storage hiccup) goes back to `pending` with capped exponential backoff and jitter; the
daily quota (45009) waits for the next Beijing day; anything else is `failed` with a
reason a person can act on. Quiet hours hold non-critical rows in the database (they
are simply not claimed) until the morning.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError
from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.broadcasts.quiet import parse_quiet_hours, quiet_until
from bot.clock import Clock
from bot.errors import WeChatAPIError, WeChatTransportError, classify_error
from bot.settings import Settings
from bot.storage import Storage
from bot.wechat_api import WeChatAPI
from models.broadcasts import Broadcast, Delivery

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
SEND_TIMEOUT = 5.0  # seconds: WeChatAPI's default timeout per call
MAX_BACKOFF = 600.0
BEIJING = ZoneInfo("Asia/Shanghai")  # WeChat's quota day


def backoff(attempts: int) -> float:
    """Seconds before retry `attempts` + 1: capped exponential, with jitter."""
    return min(MAX_BACKOFF, 2.0 ** min(attempts, 16)) * random.uniform(0.5, 1.0)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    broadcast_id: int
    jurisdiction: str
    openid: str
    payload: Mapping[str, str]
    attempts: int
    lease_until: datetime  # this worker's lease; after it the row may be another's


@dataclass(frozen=True, slots=True)
class _How:
    channel: str
    template_id: str
    url: str


class RateLimiter:
    """At most `rate` sends per second per account, counted in the shared storage.

    The counter is keyed by the wall-clock second, so every process of every machine
    (clocks in sync) shares one budget per account.
    """

    def __init__(self, storage: Storage, rate: float) -> None:
        self.storage = storage
        self.rate = rate

    async def acquire(self, account: str, too_late: Callable[[], bool] = lambda: False) -> bool:
        """Wait for a send slot; False (no slot taken) once `too_late()` says to give up."""
        if self.rate <= 0:
            return not too_late()
        while True:
            if too_late():
                return False
            now = time.time()
            second = int(now)
            if await self.storage.incr(f"bcast:rate:{account}:{second}", ttl=5) <= self.rate:
                return True
            await asyncio.sleep(second + 1 - now)


class BroadcastWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        clock: Clock,
        storage: Storage,
        apis: dict[tuple[str, str], WeChatAPI],
        *,
        name: str = "worker",
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        self.apis = apis
        self.name = name
        self.limiter = RateLimiter(storage, settings.broadcast_rate)
        self.lease = timedelta(seconds=settings.broadcast_lease_seconds)
        # a send may take up to the API timeout; never start one that could end after the lease
        self.send_margin = min(timedelta(seconds=SEND_TIMEOUT + 1), self.lease / 2)
        self.storage_trouble = ""
        # no more rows than the rate lets this worker send well within its lease
        self.batch = max(1, settings.broadcast_batch)
        if settings.broadcast_rate > 0:
            fits = settings.broadcast_rate * settings.broadcast_lease_seconds / 2
            self.batch = max(1, min(self.batch, int(fits)))
        self._how: dict[int, _How] = {}
        self._quiet = {
            code: parse_quiet_hours(j.quiet_hours) for code, j in settings.jurisdictions.items()
        }
        self.wakeup = asyncio.Event()
        self.sent = 0

    # -- claiming -----------------------------------------------------------------------

    def quiet_now(self, now: datetime) -> list[str]:
        """Jurisdictions in their quiet hours right now."""
        out = []
        for code, span in self._quiet.items():
            tz = ZoneInfo(self.settings.jurisdictions[code].timezone)
            if quiet_until(now.astimezone(tz), span) is not None:
                out.append(code)
        return out

    async def claim(self, limit: int | None = None) -> list[Claimed]:
        now = self.clock.now()
        until = now + self.lease
        claimable = or_(
            and_(Delivery.status == "pending", Delivery.next_attempt_at <= now),
            and_(Delivery.status == "sending", Delivery.locked_until < now),
        )
        quiet = self.quiet_now(now)
        if quiet:
            claimable = and_(
                claimable, or_(Delivery.critical.is_(True), Delivery.jurisdiction.not_in(quiet))
            )
        due = (
            select(Delivery.id)
            .where(claimable)
            .order_by(Delivery.id)
            .limit(limit or self.batch)
            .with_for_update(skip_locked=True)
        )
        async with self.sessions() as session:
            # look first: an idle worker never writes (SQLite has one write lock)
            if await session.scalar(select(Delivery.id).where(claimable).limit(1)) is None:
                return []
            rows = (
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(due.scalar_subquery()))
                    .values(
                        status="sending",
                        locked_until=until,
                        attempts=Delivery.attempts + 1,
                    )
                    .returning(
                        Delivery.id,
                        Delivery.broadcast_id,
                        Delivery.jurisdiction,
                        Delivery.openid,
                        Delivery.payload,
                        Delivery.attempts,
                    )
                )
            ).all()
            await session.commit()
        return [Claimed(*r, lease_until=until) for r in rows]

    async def _ways(self, ids: set[int]) -> None:
        missing = ids - self._how.keys()
        if not missing:
            return
        async with self.sessions() as session:
            found = await session.execute(
                select(Broadcast.id, Broadcast.channel, Broadcast.template_id, Broadcast.url).where(
                    Broadcast.id.in_(missing)
                )
            )
            for bid, channel, template_id, url in found:
                self._how[bid] = _How(channel, template_id, url)

    # -- sending ------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim one batch, send it, record the outcomes; returns how many were claimed."""
        rows = await self.claim()
        if not rows:
            return 0
        await self._ways({r.broadcast_id for r in rows})
        gate = asyncio.Semaphore(max(1, self.settings.broadcast_concurrency))

        async def one(row: Claimed) -> dict[str, Any]:
            async with gate:
                return await self.send(row)

        self.storage_trouble = ""
        outcomes = await asyncio.gather(*(one(r) for r in rows))
        if self.storage_trouble:  # once per batch, not once per row
            log.warning("broadcast sends deferred: storage unavailable (%s)", self.storage_trouble)
        await self.record(outcomes)
        self.sent += sum(1 for o in outcomes if o["status"] == "sent")
        return len(rows)

    async def send(self, row: Claimed) -> dict[str, Any]:
        """Send one delivery; the values to record (never raises)."""
        now = self.clock.now
        how = self._how.get(row.broadcast_id)
        api = self.apis.get(("mp", row.jurisdiction))
        base: dict[str, Any] = {
            "b_id": row.id,
            "lease_until": row.lease_until,
            "msgid": None,
            "sent_at": None,
        }
        if how is None or api is None:
            return {**base, **_failed(row, "该辖区没有配置公众号，无法发送", now())}
        try:

            def too_late() -> bool:
                return now() + self.send_margin >= row.lease_until

            if not await self.limiter.acquire(row.jurisdiction, too_late):
                # the rate limit held this row until its lease was nearly over: another
                # worker may own it soon, so it is not sent here (a custom message has no
                # client_msg_id for WeChat to drop a repeat by)
                return {**base, **_later(row, now(), "租约将到期，未发送，稍后重试")}
            answer = await _send(api, how, row)
        except (WeChatAPIError, WeChatTransportError) as exc:
            kind, reason = classify_error(exc)
            if kind == "transient":
                return {**base, **self._retry(row, reason)}
            if kind == "quota":
                return {**base, **_later(row, _next_beijing_day(now()), reason)}
            return {**base, **_failed(row, reason, now())}
        except (RedisError, OSError) as exc:  # shared storage away: try again shortly
            self.storage_trouble = type(exc).__name__
            return {**base, **_later(row, now() + timedelta(seconds=2), "共享存储暂不可用")}
        msgid = answer.get("msgid")
        return {
            **base,
            "status": "sent",
            "attempts": row.attempts,
            "next_attempt_at": now(),
            "error": None,
            "msgid": str(msgid) if msgid is not None else None,
            "sent_at": now(),
        }

    def _retry(self, row: Claimed, reason: str) -> dict[str, Any]:
        if row.attempts >= MAX_ATTEMPTS:
            return _failed(row, f"重试 {row.attempts} 次仍失败：{reason}", self.clock.now())
        retry_at = self.clock.now() + timedelta(seconds=backoff(row.attempts))
        return {
            "status": "pending",
            "attempts": row.attempts,
            "next_attempt_at": retry_at,
            "error": reason[:255],
        }

    async def record(self, outcomes: list[dict[str, Any]]) -> None:
        """Write every outcome of a batch in one executemany (only rows still leased)."""
        table = cast(Table, Delivery.__table__)
        statement = (
            update(table)
            .where(
                table.c.id == bindparam("b_id"),
                table.c.status == "sending",
                # a worker whose lease ran out writes nothing: the row is someone else's now
                table.c.locked_until == bindparam("lease_until"),
            )
            .values(
                status=bindparam("status"),
                attempts=bindparam("attempts"),
                next_attempt_at=bindparam("next_attempt_at"),
                error=bindparam("error"),
                msgid=bindparam("msgid"),
                sent_at=bindparam("sent_at"),
                locked_until=None,
            )
        )
        async with self.sessions() as session:
            conn = await session.connection()
            await conn.execute(statement, outcomes)
            await session.commit()

    # -- the loop -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, idle: float = 1.0, extra: Any = None) -> None:
        """Send until `stop` is set; `extra` (e.g. the reminder planner) runs between batches."""
        while not stop.is_set():
            claimed = 0
            try:
                if extra is not None:
                    await extra()
                claimed = await self.run_once()
            except Exception:
                log.exception("broadcast worker iteration failed")
            if claimed == 0:
                self.wakeup.clear()
                await _first(stop.wait(), self.wakeup.wait(), timeout=idle)


async def _send(api: WeChatAPI, how: _How, row: Claimed) -> dict[str, Any]:
    if how.channel == "custom":
        return await api.send_text(row.openid, row.payload["content"])
    if how.channel == "subscribe":
        return await api.send_subscribe(
            row.openid, how.template_id, dict(row.payload), page=how.url or None
        )
    return await api.send_template(
        row.openid,
        how.template_id,
        dict(row.payload),
        url=how.url or None,
        client_msg_id=f"donorbot-{row.id}",
    )


def _failed(row: Claimed, reason: str, now: datetime) -> dict[str, Any]:
    return {
        "status": "failed",
        "attempts": row.attempts,
        "next_attempt_at": now,
        "error": reason[:255],
    }


def _later(row: Claimed, when: datetime, reason: str) -> dict[str, Any]:
    # not the recipient's fault: this try does not count against MAX_ATTEMPTS
    return {
        "status": "pending",
        "attempts": row.attempts - 1,
        "next_attempt_at": when,
        "error": reason[:255],
    }


def _next_beijing_day(now: datetime) -> datetime:
    local = now.astimezone(BEIJING)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), BEIJING)
    return midnight + timedelta(seconds=random.uniform(60, 600))


async def _first(*aws: Any, timeout: float) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
