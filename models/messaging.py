"""Outbound messages that must survive a crash, and WeChat's delivery reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped


class OutboundMessage(Timestamped, Base):
    """A customer-service message queued for later delivery (the 5-second fallback).

    Written before the webhook answers ``success``, so a crash after that loses nothing;
    `source_key` (the inbound message's dedup key) makes queuing idempotent.
    """

    __tablename__ = "outbound_messages"
    __table_args__ = (
        UniqueConstraint("source_key"),
        Index("ix_outbound_messages_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16), default="wechat")  # wechat | wecom
    openid: Mapped[str] = mapped_column(String(128))
    msgtype: Mapped[str] = mapped_column(String(16), default="text")
    content: Mapped[str] = mapped_column(Text)
    # the decrypted inbound XML while its handler runs; cleared once the reply is known
    request_xml: Mapped[str | None] = mapped_column(Text, default=None)
    source_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(255), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class TemplateSendEvent(Timestamped, Base):
    """A TEMPLATESENDJOBFINISH report; the broadcast worker matches it to a delivery by msg_id."""

    __tablename__ = "template_send_events"
    __table_args__ = (UniqueConstraint("jurisdiction", "msg_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(String(64))
    msg_id: Mapped[str] = mapped_column(String(64), index=True)
    openid_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(64))
