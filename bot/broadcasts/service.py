"""Create, inspect, cancel and retry broadcasts (the CLI and the console call these).

A broadcast and one delivery row per recipient are written in one transaction, after
「退订」 is applied (critical notices excepted), so a broadcast either exists with every
recipient or not at all. Its idempotency key makes creating it twice create it once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts.compose import Composer, shown
from bot.errors import DonorbotError
from models.audit import audit
from models.broadcasts import DELIVERY_STATUSES, Broadcast, BroadcastOptOut, Delivery
from models.plans import JurisdictionRow

if TYPE_CHECKING:
    from models.audiences import AudienceSpec, Recipient

_INSERT_CHUNK = 5000


class BroadcastError(DonorbotError):
    """A broadcast request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class Created:
    id: int  # 0 for a dry run
    created: bool  # False: the idempotency key named an existing broadcast
    total: int
    opted_out: int
    audience: str
    sample: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (who, shown)


@dataclass(frozen=True)
class Progress:
    id: int
    jurisdiction: str
    status: str  # active | cancelled
    audience: str
    channel: str
    send_at: datetime
    counts: dict[str, int]
    errors: list[tuple[str, int]]  # (reason, deliveries), most frequent first

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> bool:
        return self.counts["pending"] == 0 and self.counts["sending"] == 0


def spec_data(spec: AudienceSpec) -> dict[str, Any]:
    return {k: v for k, v in asdict(spec).items() if v not in (None, False)}


async def opted_out(session: AsyncSession, jurisdiction: str) -> set[str]:
    rows = await session.scalars(
        select(BroadcastOptOut.openid).where(BroadcastOptOut.jurisdiction == jurisdiction)
    )
    return set(rows)


async def find(session: AsyncSession, jurisdiction: str, key: str) -> Broadcast | None:
    return await session.scalar(
        select(Broadcast).where(
            Broadcast.jurisdiction == jurisdiction, Broadcast.idempotency_key == key
        )
    )


async def create_broadcast(
    session: AsyncSession,
    *,
    spec: AudienceSpec,
    composer: Composer,
    send_at: datetime,
    today: date,
    creator: str,
    critical: bool = False,
    key: str | None = None,
    url: str = "",
    kind: str = "manual",
    dry_run: bool = False,
    people: Sequence[Recipient] | None = None,
) -> Created:
    """Write the broadcast and its deliveries in one transaction (committed here).

    `people` overrides the audience query (reminders pass the recipients they computed).
    An empty audience is refused: there would be nothing to send and nothing to track.
    """
    key = key or f"manual:{uuid.uuid4().hex}"
    if len(key) > 128:
        raise BroadcastError("幂等键不能超过 128 个字符")
    if (existing := await find(session, spec.jurisdiction, key)) is not None:
        return Created(
            existing.id, False, existing.total, existing.opted_out, existing.audience_text
        )
    if people is None:
        from models.audiences import AudienceError, recipients

        try:
            people = await recipients(session, spec, today=today)
        except AudienceError as exc:
            raise BroadcastError(str(exc)) from None
    place = await session.get(JurisdictionRow, spec.jurisdiction)
    described = spec.describe(place.name if place else None)
    skip = set() if critical else await opted_out(session, spec.jurisdiction)
    chosen = [r for r in people if r.openid not in skip]
    if not chosen:
        why = "（其余均已退订）" if people else ""
        raise BroadcastError(f"受众「{described}」中没有可发送的人{why}，未创建群发")
    payloads = [composer.render(r.params) for r in chosen]  # a bad template fails here
    sample = [
        (_who(r), shown(p, composer.channel)) for r, p in zip(chosen[:5], payloads[:5], strict=True)
    ]
    result = Created(0, True, len(chosen), len(people) - len(chosen), described, sample)
    if dry_run:
        await session.rollback()
        return result
    row = Broadcast(
        jurisdiction=spec.jurisdiction,
        idempotency_key=key,
        audience=spec_data(spec),
        audience_text=described[:255],
        channel=composer.channel,
        template_id=composer.template_id,
        params=composer.fields,
        url=url,
        send_at=send_at,
        critical=critical,
        creator=creator,
        kind=kind,
        total=len(chosen),
        opted_out=len(people) - len(chosen),
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:  # another process created the same key just now
        await session.rollback()
        again = await find(session, spec.jurisdiction, key)
        if again is None:  # pragma: no cover - the conflict was on something else
            raise
        return Created(again.id, False, again.total, again.opted_out, again.audience_text)
    await _insert_deliveries(
        session, row.id, spec.jurisdiction, critical, send_at, chosen, payloads
    )
    audit(
        session,
        creator,
        "broadcast.create",
        spec.jurisdiction,
        broadcast=row.id,
        key=key,
        audience=spec_data(spec),
        channel=composer.channel,
        recipients=len(chosen),
        opted_out=len(people) - len(chosen),
        critical=critical,
        kind=kind,
    )
    await session.commit()
    return Created(row.id, True, result.total, result.opted_out, result.audience, sample)


_COLUMNS = (
    "broadcast_id",
    "jurisdiction",
    "critical",
    "openid",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
)


async def _insert_deliveries(
    session: AsyncSession,
    broadcast_id: int,
    jurisdiction: str,
    critical: bool,
    send_at: datetime,
    people: Sequence[Recipient],
    payloads: Sequence[dict[str, str]],
) -> None:
    """One row per recipient, in the caller's transaction: COPY on PostgreSQL (a 100k
    broadcast in about a second), a Core executemany elsewhere."""
    conn = await session.connection()
    pairs = zip(people, payloads, strict=True)
    if conn.dialect.name == "postgresql":
        rows = [
            (broadcast_id, jurisdiction, critical, r.openid, _json(p), "pending", 0, send_at)
            for r, p in pairs
        ]
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.copy_records_to_table("deliveries", records=rows, columns=_COLUMNS)
        return
    common = {
        "broadcast_id": broadcast_id,
        "jurisdiction": jurisdiction,
        "critical": critical,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": send_at,
    }
    values = [{**common, "openid": r.openid, "payload": p} for r, p in pairs]
    for start in range(0, len(values), _INSERT_CHUNK):
        await conn.execute(insert(Delivery), values[start : start + _INSERT_CHUNK])


def _json(payload: dict[str, str]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _who(r: Recipient) -> str:
    return f"{r.unit or r.role} · {r.openid[:6]}…"


async def progress(session: AsyncSession, broadcast_id: int) -> Progress:
    row = await session.get(Broadcast, broadcast_id)
    if row is None:
        raise BroadcastError(f"没有编号为 {broadcast_id} 的群发")
    counts = dict.fromkeys(DELIVERY_STATUSES, 0)
    found = await session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.broadcast_id == broadcast_id)
        .group_by(Delivery.status)
    )
    for status, n in found:
        counts[status] = n
    errors = await session.execute(
        select(Delivery.error, func.count().label("n"))
        .where(Delivery.broadcast_id == broadcast_id, Delivery.status == "failed")
        .group_by(Delivery.error)
        .order_by(func.count().desc())
        .limit(10)
    )
    return Progress(
        row.id,
        row.jurisdiction,
        row.status,
        row.audience_text,
        row.channel,
        row.send_at,
        counts,
        [(e or "未知原因", n) for e, n in errors],
    )


async def list_broadcasts(
    session: AsyncSession, jurisdiction: str | None = None, limit: int = 50
) -> list[Broadcast]:
    query = select(Broadcast).order_by(Broadcast.id.desc()).limit(limit)
    if jurisdiction:
        query = query.where(Broadcast.jurisdiction == jurisdiction)
    return list(await session.scalars(query))


async def cancel(session: AsyncSession, broadcast_id: int, actor: str) -> int:
    """Stop a broadcast: deliveries not yet sent become `skipped`; returns how many."""
    row = await session.get(Broadcast, broadcast_id)
    if row is None:
        raise BroadcastError(f"没有编号为 {broadcast_id} 的群发")
    if row.status == "cancelled":
        raise BroadcastError(f"群发 {broadcast_id} 已经取消过了")
    row.status = "cancelled"
    done = await session.execute(
        update(Delivery)
        .where(Delivery.broadcast_id == broadcast_id, Delivery.status == "pending")
        .values(status="skipped", error="群发已取消")
    )
    skipped = int(done.rowcount or 0)  # type: ignore[attr-defined]
    audit(session, actor, "broadcast.cancel", row.jurisdiction, broadcast=row.id, skipped=skipped)
    await session.commit()
    return skipped


async def retry_failed(session: AsyncSession, broadcast_id: int, actor: str, now: datetime) -> int:
    """Queue the failed deliveries again (e.g. after the office fixed a template)."""
    row = await session.get(Broadcast, broadcast_id)
    if row is None:
        raise BroadcastError(f"没有编号为 {broadcast_id} 的群发")
    if row.status == "cancelled":
        raise BroadcastError(f"群发 {broadcast_id} 已取消，不能重试")
    done = await session.execute(
        update(Delivery)
        .where(Delivery.broadcast_id == broadcast_id, Delivery.status == "failed")
        .values(status="pending", attempts=0, error=None, next_attempt_at=now)
    )
    queued = int(done.rowcount or 0)  # type: ignore[attr-defined]
    audit(
        session, actor, "broadcast.retry_failed", row.jurisdiction, broadcast=row.id, queued=queued
    )
    await session.commit()
    return queued


async def opt_out(session: AsyncSession, jurisdiction: str, openid: str) -> bool:
    """「退订」: True if the user was subscribed until now."""
    if await session.scalar(
        select(BroadcastOptOut.id).where(
            BroadcastOptOut.jurisdiction == jurisdiction, BroadcastOptOut.openid == openid
        )
    ):
        return False
    session.add(BroadcastOptOut(jurisdiction=jurisdiction, openid=openid))
    # not-yet-sent, non-critical deliveries to this user are dropped too
    await session.execute(
        update(Delivery)
        .where(
            Delivery.jurisdiction == jurisdiction,
            Delivery.openid == openid,
            Delivery.status == "pending",
            Delivery.critical.is_(False),
        )
        .values(status="skipped", error="用户已退订")
    )
    return True


async def opt_in(session: AsyncSession, jurisdiction: str, openid: str) -> bool:
    """「恢复订阅」: True if the user had opted out."""
    found = await session.scalar(
        select(BroadcastOptOut).where(
            BroadcastOptOut.jurisdiction == jurisdiction, BroadcastOptOut.openid == openid
        )
    )
    if found is None:
        return False
    await session.delete(found)
    return True


async def forget_recipient(session: AsyncSession, jurisdiction: str, openid: str) -> int:
    """The user unfollowed: drop their opt-out and skip what was still to be sent to them."""
    opted = await session.scalar(
        select(BroadcastOptOut).where(
            BroadcastOptOut.jurisdiction == jurisdiction, BroadcastOptOut.openid == openid
        )
    )
    if opted is not None:
        await session.delete(opted)
    done = await session.execute(
        update(Delivery)
        .where(
            Delivery.jurisdiction == jurisdiction,
            Delivery.openid == openid,
            Delivery.status == "pending",
        )
        .values(status="skipped", error="用户已取消关注")
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


# TEMPLATESENDJOBFINISH statuses other than "success"
_REPORTED = {
    "failed:user block": "用户拒收（模板消息回执）",
    "failed: system failed": "微信发送失败（模板消息回执）",
}


async def record_report(session: AsyncSession, jurisdiction: str, msgid: str, status: str) -> int:
    """WeChat's delivery report for a template message: kept on its delivery row."""
    values: dict[str, Any] = {"report": status[:64]}
    if status != "success":
        values.update(status="failed", error=_REPORTED.get(status, f"微信回执：{status}")[:255])
    done = await session.execute(
        update(Delivery)
        .where(Delivery.jurisdiction == jurisdiction, Delivery.msgid == msgid)
        .values(**values)
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]
