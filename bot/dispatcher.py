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

    is_async: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        self.params = tuple(inspect.signature(self.callback).parameters)
        # Known once, here, so the per-message path never asks inspect.isawaitable.
        self.is_async = tuple(
            inspect.iscoroutinefunction(f) or inspect.iscoroutinefunction(type(f).__call__)
            for f in self.filters
        )

    def matches_type(self, message: Message) -> bool:
        if message.msg_type == "event":
            return message.event in self.events or "*" in self.events
        return message.msg_type in self.msg_types or "*" in self.msg_types

    @property
    def any_async(self) -> bool:
        return any(self.is_async)

    def check_now(self, message: Message, data: dict[str, Any]) -> Mapping[str, Any] | None:
        """`check` for handlers whose filters are all plain functions (no coroutine per call)."""
        extra: dict[str, Any] | None = None
        for flt in self.filters:
            result = flt(message, data)
            if not result:
                return None
            if result is not True:
                extra = {**(extra or {}), **result}  # type: ignore[dict-item]
        return extra if extra is not None else _NO_EXTRA

    async def check(self, message: Message, data: dict[str, Any]) -> Mapping[str, Any] | None:
        """The filters' extra arguments if every filter passes, else None."""
        extra: dict[str, Any] = {}
        for flt, is_async in zip(self.filters, self.is_async, strict=True):
            result = flt(message, data)
            if is_async:
                result = await result  # type: ignore[misc]
            if not result:
                return None
            if result is not True:
                extra.update(result)  # type: ignore[arg-type]
        return extra


_NO_EXTRA: Mapping[str, Any] = {}


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
    _handlers: list[Handler] | None = field(default=None, init=False, repr=False)
    _chain: Callable[[Message, dict[str, Any]], Awaitable[str | None]] | None = field(
        default=None, init=False, repr=False
    )

    def include(self, router: Router, *, first: bool = False) -> None:
        if any(r.name == router.name for r in self.routers):
            raise ValueError(f"router {router.name} included twice")
        self.routers.insert(0, router) if first else self.routers.append(router)
        self._handlers = None

    @property
    def handlers(self) -> list[Handler]:
        if self._handlers is None:
            self._handlers = [h for r in self.routers for h in r.handlers]
        return self._handlers

    def help_entries(self, role: str) -> list[HelpEntry]:
        return [h.help for h in self.handlers if h.help and role in h.help.roles]

    async def feed(self, message: Message, data: dict[str, Any]) -> str | None:
        """Run the middlewares, then the first matching handler; its reply text or None."""
        if self._chain is None:
            call: Callable[[Message, dict[str, Any]], Awaitable[str | None]] = self._route
            for mw in reversed(self.middlewares):
                call = _bind(mw, call)
            self._chain = call
        return await self._chain(message, data)

    async def _route(self, message: Message, data: dict[str, Any]) -> str | None:
        for handler in self.handlers:
            if not handler.matches_type(message):
                continue
            if handler.any_async:
                extra = await handler.check(message, data)
            else:
                extra = handler.check_now(message, data)
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
    from handlers import binding, broadcast, donor, events, help, more, quota, sites

    dispatcher = Dispatcher(middlewares=list(MIDDLEWARES), lazy={"session": lazy_session})
    for module in (events, more, broadcast, donor, sites, binding, quota, help):
        dispatcher.include(module.router)
    return dispatcher
