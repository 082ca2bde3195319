"""Sites: 「附近哪里能献血」 asks for a location; a location answers with the nearest sites.

A location message (or the LOCATION event of an account that reports location) gets the
three nearest sites open now, in the jurisdiction's timezone, with distance and hours,
then the nearest closed ones with their hours (bot/sites.py).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock, local_now
from bot.dispatcher import HelpEntry, Router
from bot.donor_intents import DonorIntent
from bot.render import Renderer
from bot.sites import nearest_sites
from bot.wechat.message import Message

router = Router(name=__name__)
SHOWN = 3
APPROXIMATE = "示意"


@router.message(
    DonorIntent("sites"), help=HelpEntry("附近哪里能献血", "发送位置，查找最近的献血屋和采血车")
)
async def ask_location(render: Renderer) -> str:
    """Asks the user to send their location."""
    return render("site_ask_location")


@router.message(types=("location",), events=("location",))
async def nearest(
    message: Message,
    session: AsyncSession,
    clock: Clock,
    timezone: str,
    render: Renderer,
    jurisdiction: str,
) -> str | None:
    """The nearest sites open now, then the nearest closed ones, with distance and hours."""
    if message.location is None:
        return None
    sites = await nearest_sites(session, jurisdiction, message.location, local_now(clock, timezone))
    open_sites = [s for s in sites if s.open_now][:SHOWN]
    closed_sites = [s for s in sites if not s.open_now][:SHOWN]
    return render(
        "site_nearest",
        open_sites=open_sites,
        closed_sites=closed_sites,
        approximate=any(APPROXIMATE in s.note for s in open_sites + closed_sites),
    )
