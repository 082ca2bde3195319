"""Account events: follow, unfollow, delivery reports."""

from __future__ import annotations

import hashlib
import logging
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts.service import forget_recipient, record_report
from bot.dispatcher import Router
from bot.render import Renderer
from bot.storage import Storage
from bot.users import erase_user
from bot.wechat.message import Message
from models.donor_extras import erase_consent
from models.messaging import TemplateSendEvent
from models.users import SubscriberDaily

router = Router(name=__name__)
log = logging.getLogger(__name__)


async def _count(session: AsyncSession, jurisdiction: str, day: date, field: str) -> None:
    row = await session.scalar(
        select(SubscriberDaily).where(
            SubscriberDaily.jurisdiction == jurisdiction, SubscriberDaily.day == day
        )
    )
    if row is None:
        row = SubscriberDaily(jurisdiction=jurisdiction, day=day, subscribes=0, unsubscribes=0)
        session.add(row)
    setattr(row, field, getattr(row, field) + 1)


@router.event("subscribe", "subscribe_scan")
async def welcome(
    session: AsyncSession, render: Renderer, jurisdiction: str, jurisdiction_name: str, today: date
) -> str:
    """Greets a new follower."""
    await _count(session, jurisdiction, today, "subscribes")
    return render("welcome", jurisdiction_name=jurisdiction_name)


@router.event("unsubscribe")
async def farewell(
    message: Message, session: AsyncSession, storage: Storage, jurisdiction: str, today: date
) -> None:
    """Deletes what we hold about a user who unfollows, keeping only anonymised counts."""
    removed = await erase_user(session, storage, jurisdiction, message.source)
    removed += await erase_consent(session, jurisdiction, message.source)
    skipped = await forget_recipient(session, jurisdiction, message.source)
    await _count(session, jurisdiction, today, "unsubscribes")
    log.info(
        "unsubscribe erased user data",
        extra={"bindings_removed": removed, "deliveries_skipped": skipped},
    )
    return None


@router.event("templatesendjobfinish")
async def template_report(message: Message, session: AsyncSession, jurisdiction: str) -> None:
    """Records WeChat's delivery report for a template message on its delivery row."""
    msg_id = str(message.raw.get("MsgID") or message.raw.get("MsgId") or "")
    status = str(message.raw.get("Status") or "")[:64]
    await record_report(session, jurisdiction, msg_id, status)
    exists = await session.scalar(
        select(TemplateSendEvent.id).where(
            TemplateSendEvent.jurisdiction == jurisdiction, TemplateSendEvent.msg_id == msg_id
        )
    )
    if exists is None:
        session.add(
            TemplateSendEvent(
                jurisdiction=jurisdiction,
                msg_id=msg_id,
                openid_hash=hashlib.sha256(message.source.encode()).hexdigest(),
                status=status,
            )
        )
    return None
