"""Help: answers anything no other handler took, listing what the filters declare."""

from __future__ import annotations

from bot.dispatcher import Dispatcher, HelpEntry, Router
from bot.render import Renderer
from bot.users import User
from bot.wechat.message import Message

router = Router(name=__name__)

_TEXTUAL = frozenset({"text", "voice"})


@router.message(types=("*",), events=("click",), help=HelpEntry("帮助", "查看我能做什么"))
async def help_reply(
    message: Message, user: User, render: Renderer, dispatcher: Dispatcher, jurisdiction_name: str
) -> str:
    """Lists what this sender can ask; other kinds of message are told to send text."""
    unreadable = message.msg_type not in _TEXTUAL or (
        message.msg_type == "voice" and not message.content
    )
    if unreadable and not message.is_event:  # a click is the 「使用帮助」 menu button
        return render("unsupported", kind=message.msg_type)
    items = dispatcher.help_items(user.role)
    return render.memo(
        "help",
        key=(user.role, jurisdiction_name, dispatcher.revision),
        greeting="",
        role=user.role,
        items=items,
        jurisdiction_name=jurisdiction_name,
    )
