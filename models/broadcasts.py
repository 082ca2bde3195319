"""Broadcasts: one row per broadcast, one delivery row per recipient (a transactional outbox).

The broadcast and all its deliveries are written in one transaction, so a broadcast either
exists with every recipient or not at all. Workers lease due deliveries (`status` sending,
`locked_until`), send, and record the outcome; a lease that runs out hands the row to
another worker, so a worker killed at any point loses nothing. Each delivery carries a
`client_msg_id` derived from its id, which WeChat uses to drop a repeated template send.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped

# What a delivery can be; `sending` means leased to a worker right now.
DELIVERY_STATUSES = ("pending", "sending", "sent", "failed", "skipped")
CHANNELS = ("template", "custom", "subscribe")


class Broadcast(Timestamped, Base):
    __tablename__ = "broadcasts"
    __table_args__ = (UniqueConstraint("jurisdiction", "idempotency_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(String(64))
    # the same key twice creates one broadcast; reminders use "reminder:<kind>:<period>:<unit>"
    idempotency_key: Mapped[str] = mapped_column(String(128))
    audience: Mapped[dict[str, Any]] = mapped_column(JSON)  # the AudienceSpec, as data
    audience_text: Mapped[str] = mapped_column(String(255), default="")
    channel: Mapped[str] = mapped_column(String(16))  # template | custom | subscribe
    template_id: Mapped[str] = mapped_column(String(128), default="")
    params: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # Jinja strings
    url: Mapped[str] = mapped_column(String(512), default="")  # template url / subscribe page
    send_at: Mapped[datetime]
    critical: Mapped[bool] = mapped_column(default=False)  # ignores 「退订」 and quiet hours
    creator: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="manual")  # manual | reminder
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | cancelled
    total: Mapped[int] = mapped_column(default=0)
    opted_out: Mapped[int] = mapped_column(default=0)  # recipients left out for 「退订」


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "openid"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_msgid", "jurisdiction", "msgid"),
        Index("ix_deliveries_openid", "openid"),  # 「退订」 drops pending rows
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    # copied from the broadcast so a claim needs no join
    jurisdiction: Mapped[str] = mapped_column(String(64))
    critical: Mapped[bool] = mapped_column(default=False)
    openid: Mapped[str] = mapped_column(String(128))
    # what this recipient gets: template data fields, or {"content": text} for custom
    payload: Mapped[dict[str, str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    msgid: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(String(255), default=None)
    report: Mapped[str | None] = mapped_column(String(64), default=None)  # TEMPLATESENDJOBFINISH
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class BroadcastOptOut(Timestamped, Base):
    """A user who sent 「退订」: no broadcasts except those marked critical."""

    __tablename__ = "broadcast_opt_outs"
    __table_args__ = (UniqueConstraint("jurisdiction", "openid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(String(64))
    openid: Mapped[str] = mapped_column(String(128))
