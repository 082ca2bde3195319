"""「退订」 and 「恢复订阅」: a user's say over the office's broadcasts.

Honoured before a broadcast's deliveries are created (and for not-yet-sent ones when
the user opts out later); notices marked critical still reach everyone.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts.service import opt_in, opt_out
from bot.clock import Clock
from bot.dispatcher import HelpEntry, Router
from bot.filters import Text
from bot.render import Renderer
from bot.wechat.message import Message
from models.donor_extras import withdraw_consent

router = Router(name=__name__)
ANYONE = frozenset({"anonymous", "liaison", "donor", "office"})


@router.message(
    Text("退订", "取消订阅", "TD", "td"),
    help=HelpEntry("退订", "不再接收献血办的群发通知（紧急通知除外）", ANYONE),
)
async def unsubscribe(
    message: Message, session: AsyncSession, clock: Clock, render: Renderer, jurisdiction: str
) -> str:
    """「退订」 stops every push the user can stop: broadcasts and emergency calls alike
    (「退订应急」 withdraws only the emergency consent: handlers/donor.py)."""
    withdrawn = await withdraw_consent(session, jurisdiction, message.source, clock.now())
    changed = await opt_out(session, jurisdiction, message.source)
    return render("broadcast_opt_out", changed=changed, withdrawn=withdrawn)


@router.message(Text("恢复订阅", "订阅", "重新订阅"))
async def resubscribe(
    message: Message, session: AsyncSession, render: Renderer, jurisdiction: str
) -> str:
    changed = await opt_in(session, jurisdiction, message.source)
    return render("broadcast_opt_in", changed=changed)
