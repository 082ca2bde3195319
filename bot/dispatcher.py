"""Routers, filters and the dispatcher (after aiogram 3).

A handlers module declares ``router = Router(name=__name__)`` and registers
functions with ``@router.message(filter, …)`` / ``@router.event("subscribe")``.
`build_dispatcher` includes every router in one visible order; the first handler
whose filters all pass answers.  A filter is a small callable ``(message, data)``
returning a bool, or a dict whose items become handler arguments.  Handlers ask
for what they need by parameter name (`message`, `user`, `session`, `render`,
`clock`, `storage`, `state`, …) and return a string (a text reply) or None.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.wechat.message import Message

FilterResult = bool | Mapping[str, Any] | None
Filter = Callable[[Message, dict[str, Any]], FilterResult | Awaitable[FilterResult]]
HandlerFunc = Callable[..., Awaitable[str | None]]
Middleware = Callable[
    [Callable[[Message, dict[str, Any]], Awaitable[str | None]], Message, dict[str, Any]],
    Awaitable[str | None],
]

TEXT_TYPES = frozenset({"text", "voice"})


@dataclass(frozen=True, slots=True)
class HelpEntry:
    """A line of the help reply, declared next to the handler it describes."""

    example: str
    description: str
    roles: frozenset[str] = frozenset({"anonymous", "liaison", "donor", "office"})


@dataclass(slots=True)
class Handler:
    callback: HandlerFunc
    msg_types: frozenset[str]
    events: frozenset[str]
    filters: tuple[Filter, ...]
    help: HelpEntry | None
    router: str
    params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.params = tuple(inspect.signature(self.callback).parameters)

    def matches_type(self, message: Message) -> bool:
        if message.msg_type == "event":
            return message.event in self.events or "*" in self.events
        return message.msg_type in self.msg_types or "*" in self.msg_types

    async def check(self, message: Message, data: dict[str, Any]) -> dict[str, Any] | None:
        """The filters' extra arguments if every filter passes, else None."""
        extra: dict[str, Any] = {}
        for flt in self.filters:
            result = flt(message, data)
            if inspect.isawaitable(result):
                result = await result
            if not result:
                return None
            if isinstance(result, Mapping):
                extra.update(result)
        return extra


class Router:
    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: list[Handler] = []

    def message(
        self,
        *filters: Filter,
        types: Iterable[str] = TEXT_TYPES,
        events: Iterable[str] = (),
        help: HelpEntry | None = None,
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register a handler for user messages (text and recognised voice by default).

        `events` lets the same handler take events too, e.g. ``("click",)`` for a menu
        button that asks the same question as a typed message.
        """

        def register(func: HandlerFunc) -> HandlerFunc:
            names = frozenset(e.lower() for e in events)
            self.handlers.append(
                Handler(func, frozenset(types), names, tuple(filters), help, self.name)
            )
            return func

        return register

    def event(
        self, *events: str, filters: Iterable[Filter] = (), help: HelpEntry | None = None
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register a handler for events (`subscribe`, `click`, `location`, …)."""

        def register(func: HandlerFunc) -> HandlerFunc:
            names = frozenset(e.lower() for e in events)
            self.handlers.append(Handler(func, frozenset(), names, tuple(filters), help, self.name))
            return func

        return register


@dataclass
class Dispatcher:
    routers: list[Router] = field(default_factory=list)
    middlewares: list[Middleware] = field(default_factory=list)
    # Values computed on demand when a handler asks for them by name (e.g. `session`).
    lazy: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)

    def include(self, router: Router) -> None:
        if any(r.name == router.name for r in self.routers):
            raise ValueError(f"router {router.name} included twice")
        self.routers.append(router)

    @property
    def handlers(self) -> list[Handler]:
        return [h for r in self.routers for h in r.handlers]

    def help_entries(self, role: str) -> list[HelpEntry]:
        return [h.help for h in self.handlers if h.help and role in h.help.roles]

    async def feed(self, message: Message, data: dict[str, Any]) -> str | None:
        """Run the middlewares, then the first matching handler; its reply text or None."""
        call: Callable[[Message, dict[str, Any]], Awaitable[str | None]] = self._route
        for mw in reversed(self.middlewares):
            call = _bind(mw, call)
        return await call(message, data)

    async def _route(self, message: Message, data: dict[str, Any]) -> str | None:
        for handler in self.handlers:
            if not handler.matches_type(message):
                continue
            extra = await handler.check(message, data)
            if extra is None:
                continue
            data["handler"] = handler
            kwargs = {}
            for name in handler.params:
                if name in extra:
                    kwargs[name] = extra[name]
                elif name == "message":
                    kwargs[name] = message
                elif name in data:
                    kwargs[name] = data[name]
                elif name in self.lazy:
                    data[name] = kwargs[name] = await self.lazy[name](data)
                else:
                    raise TypeError(f"{handler.callback.__qualname__} asks for unknown {name!r}")
            return await handler.callback(**kwargs)
        return None


def _bind(
    mw: Middleware, nxt: Callable[[Message, dict[str, Any]], Awaitable[str | None]]
) -> Callable[[Message, dict[str, Any]], Awaitable[str | None]]:
    async def call(message: Message, data: dict[str, Any]) -> str | None:
        return await mw(nxt, message, data)

    return call


def build_dispatcher() -> Dispatcher:
    """Every router, in the order they are tried: specific first, help last."""
    from bot.middlewares import MIDDLEWARES, lazy_session
    from handlers import binding, events, help, more, quota

    dispatcher = Dispatcher(middlewares=list(MIDDLEWARES), lazy={"session": lazy_session})
    for module in (events, more, binding, quota, help):
        dispatcher.include(module.router)
    return dispatcher
