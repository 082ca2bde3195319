"""Binding: 「绑定 483920」, 「解绑」, 「我是谁」."""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from bot.binding import redeem, unbind
from bot.clock import Clock
from bot.dispatcher import HelpEntry, Router
from bot.filters import Intent
from bot.intents import Query
from bot.render import Renderer
from bot.settings import Settings
from bot.storage import Storage
from bot.users import User
from bot.wechat.message import Message
from models.plans import Unit
from models.progress import year_to_date

router = Router(name=__name__)
ANYONE = frozenset({"anonymous", "liaison", "donor", "office"})
BOUND = frozenset({"liaison", "office"})


@router.message(
    Intent("bind"),
    help=HelpEntry("绑定 邀请码", "单位联络员用献血办发的邀请码绑定本单位", ANYONE),
)
async def bind(
    message: Message,
    query: Query,
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    clock: Clock,
    render: Renderer,
    jurisdiction: str,
    today: date,
) -> str:
    """Redeems an invite code and confirms the unit and this year's plan."""
    if not query.code:
        return render("bind_usage")
    result = await redeem(
        session,
        storage,
        settings,
        jurisdiction=jurisdiction,
        openid=message.source,
        code=query.code,
        phone_last4=query.phone_last4,
        now=clock.now(),
    )
    if result.status != "ok":
        return render("bind_failed", status=result.status, failures_left=result.failures_left)
    year = None
    if result.unit_id is not None:
        year = await year_to_date(session, jurisdiction, result.unit_id, today=today)
    return render("bind_ok", role=result.role, unit_name=result.unit_name, year=year)


@router.message(Intent("unbind"), help=HelpEntry("解绑", "解除与单位的绑定", BOUND))
async def unbind_me(
    message: Message, session: AsyncSession, storage: Storage, render: Renderer, jurisdiction: str
) -> str:
    """Removes this user's liaison/office binding."""
    removed = await unbind(session, storage, jurisdiction, message.source)
    return render("unbind", removed=removed)


@router.message(
    Intent("whoami"), events=("click",), help=HelpEntry("我是谁", "查看我绑定的单位", BOUND)
)
async def whoami(user: User, session: AsyncSession, render: Renderer) -> str:
    """Shows what this user is bound to."""
    unit = await session.get(Unit, user.unit_id) if user.unit_id else None
    return render("whoami", role=user.role, unit_name=unit.name if unit else "")
