"""「更多」: the next page of a reply too long for one WeChat message."""

from __future__ import annotations

from bot.dispatcher import Router
from bot.filters import Text
from bot.render import Renderer
from bot.state import State

router = Router(name=__name__)


@router.message(Text("更多", "more", "下一页"))
async def next_page(state: State, render: Renderer) -> str:
    """Sends the next page of the previous long reply."""
    page = await state.pop_page()
    return page if page is not None else render("more_empty")
