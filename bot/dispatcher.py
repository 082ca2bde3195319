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
import itertools
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
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


# A filter's `screen`: (key, accepted). `key(message, data)` is shared by filters of a
# kind and computed once per message; the filter passes exactly when it is in `accepted`.
ScreenKey = Callable[[Message, dict[str, Any]], Hashable]
Screen = tuple[ScreenKey, frozenset[Any]]


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
    # The filters that declare a screen, as screens; the others, run after them in order.
    screens: tuple[Screen, ...] = ()
    rest: tuple[Filter, ...] = ()
    rest_async: bool = False
    only: Filter | None = None  # the one filter of `rest`, if it is the only one and sync

    def __post_init__(self) -> None:
        self.params = tuple(inspect.signature(self.callback).parameters)
        # Known once, here, so the per-message path never asks inspect.isawaitable.
        self.is_async = tuple(
            inspect.iscoroutinefunction(f) or inspect.iscoroutinefunction(type(f).__call__)
            for f in self.filters
        )
        screens: list[Screen] = []
        rest: list[Filter] = []
        for flt, is_async in zip(self.filters, self.is_async, strict=True):
            screen = getattr(flt, "screen", None)
            if screen is not None and not is_async:
                screens.append(screen)
            else:
                rest.append(flt)
                self.rest_async = self.rest_async or is_async
        self.screens, self.rest = tuple(screens), tuple(rest)
        if len(rest) == 1 and not self.rest_async:
            self.only = rest[0]

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

    def check_rest_now(self, message: Message, data: dict[str, Any]) -> Mapping[str, Any] | None:
        """`check_now` for the filters without a screen (the screens have passed)."""
        extra: dict[str, Any] | None = None
        for flt in self.rest:
            result = flt(message, data)
            if not result:
                return None
            if result is not True:
                extra = {**(extra or {}), **result}  # type: ignore[dict-item]
        return extra if extra is not None else _NO_EXTRA

    async def check_rest(self, message: Message, data: dict[str, Any]) -> Mapping[str, Any] | None:
        """`check` for the filters without a screen (the screens have passed)."""
        extra: dict[str, Any] = {}
        for flt in self.rest:
            result = flt(message, data)
            if inspect.isawaitable(result):
                result = await result
            if not result:
                return None
            if result is not True:
                extra.update(result)
        return extra

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


_revisions = itertools.count(1)
_MAX_KINDS = 256  # message kinds remembered (MsgType and Event come from the sender)


@dataclass
class Dispatcher:
    routers: list[Router] = field(default_factory=list)
    middlewares: list[Middleware] = field(default_factory=list)
    # Values computed on demand when a handler asks for them by name (e.g. `session`).
    lazy: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    # Changes whenever the handlers may have: a key for anything derived from them.
    revision: int = field(default_factory=lambda: next(_revisions), init=False)
    _handlers: list[Handler] | None = field(default=None, init=False, repr=False)
    _chain: Callable[[Message, dict[str, Any]], Awaitable[str | None]] | None = field(
        default=None, init=False, repr=False
    )
    # (msg_type, event) → the handlers that take that kind of message, in order
    _by_kind: dict[tuple[str, str], _Kind] = field(default_factory=dict, init=False, repr=False)
    _help: dict[str, tuple[HelpEntry, ...]] = field(default_factory=dict, init=False, repr=False)

    def include(self, router: Router, *, first: bool = False) -> None:
        if any(r.name == router.name for r in self.routers):
            raise ValueError(f"router {router.name} included twice")
        self.routers.insert(0, router) if first else self.routers.append(router)
        self._handlers = None
        self._by_kind.clear()
        self._help.clear()
        self.revision = next(_revisions)

    @property
    def handlers(self) -> list[Handler]:
        if self._handlers is None:
            self._handlers = [h for r in self.routers for h in r.handlers]
        return self._handlers

    def help_entries(self, role: str) -> list[HelpEntry]:
        return list(self.help_items(role))

    def help_items(self, role: str) -> tuple[HelpEntry, ...]:
        """`help_entries` as a tuple, worked out once per role."""
        items = self._help.get(role)
        if items is None:
            items = self._help[role] = tuple(
                h.help for h in self.handlers if h.help and role in h.help.roles
            )
        return items

    def _kind(self, message: Message) -> _Kind:
        kind = (message.msg_type, message.event if message.msg_type == "event" else "")
        found = self._by_kind.get(kind)
        if found is None:
            found = _Kind(tuple(h for h in self.handlers if h.matches_type(message)))
            if len(self._by_kind) < _MAX_KINDS:
                self._by_kind[kind] = found
        return found

    async def feed(self, message: Message, data: dict[str, Any]) -> str | None:
        """Run the middlewares, then the first matching handler; its reply text or None."""
        if self._chain is None:
            call: Callable[[Message, dict[str, Any]], Awaitable[str | None]] = self._route
            for mw in reversed(self.middlewares):
                call = partial(mw, call)
            self._chain = call
        return await self._chain(message, data)

    async def _route(self, message: Message, data: dict[str, Any]) -> str | None:
        kind = self._kind(message)
        keys: dict[ScreenKey, Hashable] | None = None  # None: the plan's screens all passed
        try:  # the handlers whose screens pass, found all at once
            handlers = kind.plan(message, data)
        except Exception:  # a key that cannot be worked out: screen one by one, as needed
            handlers, keys = kind.handlers, {}
        for handler in handlers:
            if keys is not None and not _screens_pass(handler, keys, message, data):
                continue
            if not handler.rest:
                extra: Mapping[str, Any] | None = _NO_EXTRA
            elif handler.only is not None:  # a single plain filter: no loop around it
                result = handler.only(message, data)
                if not result:
                    continue
                extra = _NO_EXTRA if result is True else result  # type: ignore[assignment]
            elif handler.rest_async:
                extra = await handler.check_rest(message, data)
            else:
                extra = handler.check_rest_now(message, data)
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


def _screens_pass(
    handler: Handler, keys: dict[ScreenKey, Hashable], message: Message, data: dict[str, Any]
) -> bool:
    """The handler's screens, each key worked out once per message (kept in `keys`)."""
    for key, accepted in handler.screens:
        value = keys.get(key, _UNSET)
        if value is _UNSET:
            value = keys[key] = key(message, data)
        if value not in accepted:
            return False
    return True


class _Kind:
    """The handlers of one kind of message, and which of them a message's screens let by.

    `plan` works out every screen key of these handlers at once (a value no screen accepts
    counts as "other") and keeps, per combination, the handlers whose screens all pass:
    those are the only ones `_route` needs to try, and their screens pass again at once.
    """

    __slots__ = ("handlers", "keys", "plans")

    def __init__(self, handlers: tuple[Handler, ...]) -> None:
        self.handlers = handlers
        vocab: dict[ScreenKey, set[Any]] = {}
        for h in handlers:
            for key, accepted in h.screens:
                vocab.setdefault(key, set()).update(accepted)
        self.keys = tuple((key, frozenset(words)) for key, words in vocab.items())
        self.plans: dict[tuple[Hashable, ...], tuple[Handler, ...]] = {}

    def plan(self, message: Message, data: dict[str, Any]) -> tuple[Handler, ...]:
        if not self.keys:
            return self.handlers
        seen = []
        for key, words in self.keys:
            value = key(message, data)
            seen.append(value if value in words else _OTHER)
        values = tuple(seen)
        plan = self.plans.get(values)
        if plan is None:
            known = {key: value for (key, _), value in zip(self.keys, values, strict=True)}
            plan = tuple(
                h
                for h in self.handlers
                if all(known[key] in accepted for key, accepted in h.screens)
            )
            if len(self.plans) < _MAX_PLANS:
                self.plans[values] = plan
        return plan


_OTHER: Any = object()  # a screen key's value that no screen accepts
_MAX_PLANS = 4096


_UNSET: Any = object()


def build_dispatcher() -> Dispatcher:
    """Every router, in the order they are tried: specific first, help last."""
    from bot.middlewares import MIDDLEWARES, lazy_session
    from handlers import binding, broadcast, donor, events, help, more, quota, sites

    dispatcher = Dispatcher(middlewares=list(MIDDLEWARES), lazy={"session": lazy_session})
    for module in (events, more, broadcast, donor, sites, binding, quota, help):
        dispatcher.include(module.router)
    return dispatcher
