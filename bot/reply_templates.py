"""Chat reply templates edited by an office in the console: checks, versions, the live layer.

The one place for per-jurisdiction reply templates (issue 7, item 6):

- `validate` is the gate: an edit is parsed and compiled in a *sandboxed* Jinja2
  environment with the shipped environment's own filters and StrictUndefined; it may not
  read files (`include`/`import`/`extends`/`from` are refused, except a constant reference
  to one of the shipped partials such as replies/_quota.j2, which the sandbox holds in
  memory); it may only use the values the code gives that template; and, when a real
  context is known, it must render against it.  A refusal is a `TemplateRefused` with a
  Chinese message naming the problem and its line.
- `ReplyTemplates` (one per Renderer, so one per process) owns the versions in
  `reply_template_versions` (save, history, rollback; every change audited) and the
  compiled edits the handlers see through `LocalRenderer` (bot/render.py).  Saving bumps
  a stamp in Storage (`VERSION_KEY`); every process looks at it at most every
  `CHECK_SECONDS` and reloads from the database when it changed.  The hot path pays a
  clock read per message and a dict lookup per reply; the storage read is once per
  interval, the database read once per edit.
- Live preview against real data: each jurisdiction's LocalRenderer remembers the context
  of the last real reply of each template (in memory, one per template name).  The
  console renders a draft against that — the numbers a liaison was actually sent — and,
  when none is known yet in this process, says so and names the chat question that
  produces one.  Nothing is invented.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final
from weakref import WeakKeyDictionary

from jinja2 import DictLoader, Environment, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import DonorbotError
from bot.render import LocalRenderer, Renderer
from bot.storage import Storage
from models.audit import audit
from models.console import ReplyTemplateVersion

log = logging.getLogger(__name__)

VERSION_KEY: Final = "reply-templates:version"
CHECK_SECONDS: Final = 2.0
MAX_SOURCE: Final = 20_000
MAX_NOTE: Final = 200
SHIPPED_AUTHOR: Final = "donorbot"
_PREFIX, _SUFFIX = "replies/", ".j2"
_SOURCE_FILE: Final = "<template>"  # the file name Jinja gives a template made from a string

# What to do in WeChat to get a real reply of a template (for the preview): "在微信里…".
SAMPLE_QUESTIONS: Final[Mapping[str, str]] = {
    "help": "发送「帮助」",
    "welcome": "关注公众号（已关注的，取消关注后再关注一次）",
    "unsupported": "发一张图片",
    "whoami": "以已绑定的联络员身份发送「我是谁」",
    "unbind": "以已绑定的联络员身份发送「解绑」",
    "bind_usage": "发送「绑定」",
    "more_empty": "发送「更多」",
    "quota_month": "以已绑定的联络员身份发送「这个月还差多少」",
    "quota_year": "以已绑定的联络员身份发送「今年完成几个了」",
    "quota_schedule": "以已绑定的联络员身份发送「我们几月份献血」",
    "quota_unbound": "以未绑定的用户身份发送「这个月还差多少」",
}


class TemplateRefused(DonorbotError):
    """An edited template that may not be saved; the message says why (and where)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


# ---- what the shipped environment offers an edit -----------------------------------------


@dataclass(frozen=True)
class Shipped:
    """The shipped reply templates as seen from the console, worked out once per environment."""

    sandbox: ImmutableSandboxedEnvironment
    sources: dict[str, str]  # editable template name → the shipped file's text
    partials: frozenset[str]  # "replies/_quota.j2": referenced by others, not edited alone
    variables: dict[str, frozenset[str]]  # name → the values the code gives it


_SHIPPED: WeakKeyDictionary[Environment, Shipped] = WeakKeyDictionary()


def shipped(env: Environment) -> Shipped:
    found = _SHIPPED.get(env)
    if found is None:
        found = _SHIPPED[env] = _survey(env)
    return found


def _survey(env: Environment) -> Shipped:
    assert env.loader is not None
    names = env.list_templates(filter_func=lambda n: n.startswith(_PREFIX) and n.endswith(_SUFFIX))
    texts = {n: env.loader.get_source(env, n)[0] for n in names}
    referenced: set[str] = set()
    for text in texts.values():
        for node in env.parse(text).find_all((nodes.Include, nodes.Import, nodes.FromImport)):
            target = getattr(node, "template", None)
            if isinstance(target, nodes.Const) and isinstance(target.value, str):
                referenced.add(target.value)
    partials = frozenset(n for n in names if n in referenced or n[len(_PREFIX) :].startswith("_"))
    sandbox = _sandbox(env, {n: texts[n] for n in partials})
    sources = {n[len(_PREFIX) : -len(_SUFFIX)]: t for n, t in texts.items() if n not in partials}
    variables = {
        name: frozenset(meta.find_undeclared_variables(env.parse(text)))
        for name, text in sources.items()
    }
    return Shipped(sandbox, dict(sorted(sources.items())), partials, variables)


def _sandbox(env: Environment, partials: dict[str, str]) -> ImmutableSandboxedEnvironment:
    """The shipped environment's settings and filters, sandboxed, with no file access."""
    assert env.undefined.__name__ == "StrictUndefined", "the shipped environment must be strict"
    box = ImmutableSandboxedEnvironment(
        loader=DictLoader(partials),  # the shipped partials, read once; nothing else
        undefined=env.undefined,
        autoescape=False,  # plain-text chat replies, not HTML
        trim_blocks=env.trim_blocks,
        lstrip_blocks=env.lstrip_blocks,
        keep_trailing_newline=env.keep_trailing_newline,
        auto_reload=False,
    )
    box.filters.update(env.filters)  # bot/render.py's own filters (num, bar, months, …)
    box.tests.update(env.tests)
    return box


# ---- the gate --------------------------------------------------------------------------------


def validate(
    env: Environment, name: str, source: str, sample_context: Mapping[str, Any] | None
) -> str:
    """The edit rendered against `sample_context`, or `TemplateRefused` saying what is wrong.

    With no context (no real reply of this template seen yet) only the static checks run
    and the answer is "".
    """
    compiled = _compile(env, name, source, sample_context)
    if sample_context is None:
        return ""
    try:
        text = compiled.render(dict(sample_context)).strip()
    except Exception as exc:
        raise _runtime_refusal(exc) from None
    if not text:
        raise TemplateRefused("模板渲染出来是空的：回复不能没有内容。")
    return text


def _compile(
    env: Environment, name: str, source: str, context: Mapping[str, Any] | None
) -> Template:
    ship = shipped(env)
    if name not in ship.sources:
        raise TemplateRefused(f"没有名为「{name}」的回复模板。")
    if not source.strip():
        raise TemplateRefused("模板不能为空。")
    if len(source) > MAX_SOURCE:
        raise TemplateRefused(f"模板太长：不能超过 {MAX_SOURCE} 个字符。")
    try:
        tree = ship.sandbox.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateRefused(f"第 {exc.lineno} 行有语法错误：{exc.message}", exc.lineno) from None
    _refuse_file_access(tree, ship.partials)
    try:
        compiled = ship.sandbox.from_string(tree)
    except TemplateSyntaxError as exc:  # e.g. an unknown filter is found while compiling
        raise TemplateRefused(f"第 {exc.lineno} 行有错误：{exc.message}", exc.lineno) from None
    _refuse_unknown_values(tree, ship.variables[name] | set(context or ()))
    return compiled


_FILE_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


def _refuse_file_access(tree: nodes.Template, partials: frozenset[str]) -> None:
    for node in tree.find_all(_FILE_NODES):
        target = getattr(node, "template", None)
        value = target.value if isinstance(target, nodes.Const) else None
        if not isinstance(node, nodes.Extends) and isinstance(value, str) and value in partials:
            continue  # a shipped partial, held in memory by the sandbox
        what = f"「{value}」" if isinstance(value, str) else "一个算出来的名字"
        allowed = "、".join(sorted(partials)) or "（无）"
        raise TemplateRefused(
            f"第 {node.lineno} 行：不能引用{what}。回复模板不能读取文件，"
            f"只能引用系统自带的片段：{allowed}。",
            node.lineno,
        )


def _refuse_unknown_values(tree: nodes.Template, known: Iterable[str]) -> None:
    allowed = set(known)
    unknown = meta.find_undeclared_variables(tree) - allowed
    if not unknown:
        return
    first = min(
        (n for n in tree.find_all(nodes.Name) if n.ctx == "load" and n.name in unknown),
        key=lambda n: n.lineno,
    )
    offer = "、".join(sorted(allowed)) or "（无）"
    raise TemplateRefused(
        f"第 {first.lineno} 行：没有叫「{first.name}」的值。这个模板可以用的值：{offer}。",
        first.lineno,
    )


def _template_line(tb: TracebackType | None) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _SOURCE_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _runtime_refusal(exc: Exception) -> TemplateRefused:
    line = _template_line(exc.__traceback__)
    where = f"第 {line} 行：" if line else ""
    if isinstance(exc, UndefinedError):
        what = f"用到了不存在的值（{exc.message}）"
    elif isinstance(exc, SecurityError):
        what = f"不允许的操作（{exc.message}）"
    elif isinstance(exc, TemplateError):
        what = f"模板出错（{exc.message}）"
    else:
        what = f"渲染出错（{type(exc).__name__}: {exc}）"
    return TemplateRefused(f"{where}按真实数据渲染失败：{what}。", line)


# ---- versions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    version: int
    source: str
    author: str
    note: str
    at: datetime | None  # None: the shipped file, never saved


@dataclass(frozen=True)
class Listed:
    name: str
    version: int  # 0: the shipped file
    edited: bool  # the text in use differs from the shipped file
    author: str
    at: datetime | None


async def versions(session: AsyncSession, env: Environment, code: str, name: str) -> list[Version]:
    """Newest first; the shipped file is version 0 (a row from the first save on)."""
    rows = await session.scalars(
        select(ReplyTemplateVersion)
        .where(ReplyTemplateVersion.jurisdiction == code, ReplyTemplateVersion.name == name)
        .order_by(ReplyTemplateVersion.version.desc())
    )
    found = [Version(r.version, r.source, r.author, r.note, r.created_at) for r in rows]
    if not found or found[-1].version != 0:
        found.append(Version(0, shipped(env).sources[name], SHIPPED_AUTHOR, "系统自带", None))
    return found


async def listing(session: AsyncSession, env: Environment, code: str) -> list[Listed]:
    ship = shipped(env)
    newest = {(code, r.name): r for r in await _newest(session, code)}
    out = []
    for name, text in ship.sources.items():
        row = newest.get((code, name))
        if row is None:
            out.append(Listed(name, 0, False, SHIPPED_AUTHOR, None))
        else:
            out.append(Listed(name, row.version, row.source != text, row.author, row.created_at))
    return out


async def _newest(session: AsyncSession, code: str | None = None) -> list[ReplyTemplateVersion]:
    """The version in use of every saved template (of one jurisdiction, or of all)."""
    t = ReplyTemplateVersion
    latest = select(t.jurisdiction, t.name, func.max(t.version).label("version")).group_by(
        t.jurisdiction, t.name
    )
    if code is not None:
        latest = latest.where(t.jurisdiction == code)
    sub = latest.subquery()
    query = select(t).join(
        sub,
        and_(
            t.jurisdiction == sub.c.jurisdiction, t.name == sub.c.name, t.version == sub.c.version
        ),
    )
    return list(await session.scalars(query))


# ---- the process's layer -----------------------------------------------------------------


class ReplyTemplates:
    """The edited templates of every jurisdiction as this process uses them.

    `local(code)` is the Renderer the handlers of a jurisdiction get (made once, cached).
    `next_check` is when to look at the stamp in storage again; the webhook compares it
    with time.monotonic() before each dispatch and awaits `refresh()` when it has passed.
    """

    def __init__(
        self,
        renderer: Renderer,
        storage: Storage,
        sessions: async_sessionmaker[AsyncSession] | None,
    ) -> None:
        self.renderer = renderer
        self.storage = storage
        self.sessions = sessions
        self.every = CHECK_SECONDS
        self.next_check = 0.0  # time.monotonic(): look on the first message
        self._stamp: str | None = None
        self._loaded = False
        self._views: dict[str, LocalRenderer] = {}
        self._edited: dict[str, dict[str, _Edited]] = {}  # code → name → compiled edit

    # -- the handlers' side --
    def local(self, code: str) -> LocalRenderer:
        view = self._views.get(code)
        if view is None:
            view = self._views[code] = LocalRenderer(self.renderer, code)
            view.edited = dict(self._edited.get(code, {}))
            view.wording = self._stamp or "0"
        return view

    def due(self) -> bool:
        return self.next_check <= time.monotonic()

    @property
    def stamp(self) -> str | None:
        """The stamp of the edits this process has loaded (not necessarily storage's newest).

        A cache of rendered replies should key on this one: a process that has not
        reloaded yet still renders the old wording, and must not file it under the new stamp.
        """
        return self._stamp

    async def refresh(self) -> None:
        """Reload if an edit was saved (in any process) since the last look; never raises."""
        self.next_check = time.monotonic() + self.every  # one look per interval, even if slow
        try:
            stamp = await self.storage.get(VERSION_KEY)
            if stamp != self._stamp or not self._loaded:
                await self.reload(stamp)
        except Exception:  # the replies go on with what is loaded; the next look retries
            log.exception("could not refresh the edited reply templates")

    async def reload(self, stamp: str | None) -> None:
        """Load the versions in use from the database and swap them in (memo caches too)."""
        if self.sessions is None:
            return
        async with self.sessions() as s:
            rows = await _newest(s)
        ship = shipped(self.renderer.env)
        old = {(c, n): e for c, by_name in self._edited.items() for n, e in by_name.items()}
        fresh: dict[str, dict[str, _Edited]] = {}
        for row in rows:
            shipped_text = ship.sources.get(row.name)
            if shipped_text is None or row.source == shipped_text:
                continue  # a template no longer shipped, or the shipped text again
            known = old.get((row.jurisdiction, row.name))
            if known is not None and known.source == row.source:
                edit = known  # compiled once, kept while its text is unchanged
            else:
                try:
                    edit = _Edited(row.jurisdiction, row.name, row.source, ship.sandbox)
                except TemplateError:
                    log.exception(
                        "a saved reply template does not compile; the shipped one is used"
                    )
                    continue
            fresh.setdefault(row.jurisdiction, {})[row.name] = edit
        self._edited = fresh
        for code, view in self._views.items():  # no await from here on: one consistent swap
            view.edited = dict(fresh.get(code, {}))
            view.wording = stamp or "0"
            view.forget()
        self._stamp = stamp
        self._loaded = True

    async def publish(self) -> None:
        """After a save: tell every process (a new stamp), and use it here at once."""
        stamp = secrets.token_hex(8)
        await self.storage.set(VERSION_KEY, stamp)
        await self.reload(stamp)
        self.next_check = time.monotonic() + self.every

    # -- the console's side --
    @property
    def env(self) -> Environment:
        return self.renderer.env

    def names(self) -> list[str]:
        return list(shipped(self.env).sources)

    def context(self, code: str, name: str) -> dict[str, Any] | None:
        """The context of the last real reply of `name` in `code` seen by this process."""
        return self.local(code).last.get(name)

    def preview(self, code: str, name: str, source: str) -> str:
        return validate(self.env, name, source, self.context(code, name))

    async def save(self, code: str, name: str, source: str, *, actor: str, note: str) -> int:
        """Check and store `source` as the next version; audited; in use everywhere soon."""
        return await self._store(code, name, source, actor, note[:MAX_NOTE], "template.save", {})

    async def rollback(self, code: str, name: str, version: int, *, actor: str) -> int:
        """Save version `version`'s text again, as a new version."""
        assert self.sessions is not None
        async with self.sessions() as s:
            old = next(
                (v for v in await versions(s, self.env, code, name) if v.version == version), None
            )
        if old is None:
            raise TemplateRefused(f"「{name}」没有第 {version} 版。")
        note = f"回滚到第 {version} 版"
        return await self._store(
            code, name, old.source, actor, note, "template.rollback", {"to": version}
        )

    async def _store(
        self,
        code: str,
        name: str,
        source: str,
        actor: str,
        note: str,
        action: str,
        detail: dict[str, Any],
    ) -> int:
        source = source.replace("\r\n", "\n")
        validate(self.env, name, source, self.context(code, name))
        assert self.sessions is not None
        try:
            async with self.sessions() as s:
                history = await versions(s, self.env, code, name)
                if history[0].at is None:  # first save: keep the shipped text as version 0
                    s.add(_row(code, name, 0, history[0].source, SHIPPED_AUTHOR, "系统自带"))
                number = history[0].version + 1
                s.add(_row(code, name, number, source, actor, note))
                audit(s, actor, action, code, template=name, version=number, note=note, **detail)
                await s.commit()
        except IntegrityError:
            raise TemplateRefused(
                "有人刚刚也保存了这个模板：请刷新页面，看过最新版本后再改。"
            ) from None
        await self.publish()
        return number


def _row(code: str, name: str, version: int, source: str, author: str, note: str) -> Any:
    return ReplyTemplateVersion(
        jurisdiction=code, name=name, version=version, source=source, author=author, note=note
    )


class _Edited:
    """One compiled edit; called by LocalRenderer with the context, None if it fails there."""

    __slots__ = ("code", "name", "source", "template")

    def __init__(self, code: str, name: str, source: str, sandbox: Environment) -> None:
        self.code, self.name, self.source = code, name, source
        self.template = sandbox.from_string(source)

    def __call__(self, context: dict[str, Any]) -> str | None:
        try:
            return self.template.render(context).strip()
        except Exception:  # a case the console's checks could not see: the shipped reply
            log.exception(
                "edited reply template failed; the shipped one answered",
                extra={"jurisdiction": self.code, "template": self.name},
            )
            return None


_LAYERS: WeakKeyDictionary[Renderer, ReplyTemplates] = WeakKeyDictionary()


def for_renderer(
    renderer: Renderer,
    storage: Storage,
    sessions: async_sessionmaker[AsyncSession] | None,
) -> ReplyTemplates:
    """The one layer of this renderer (the webhook's and the console's are the same object)."""
    layer = _LAYERS.get(renderer)
    if layer is None:
        layer = _LAYERS[renderer] = ReplyTemplates(renderer, storage, sessions)
    elif layer.sessions is None and sessions is not None:
        layer.sessions = sessions
    return layer
