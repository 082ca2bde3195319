"""Liaisons: which units have a bound 联络员, invite codes (one unit, or a printable sheet for a
whole category), and revoking a binding.

Codes come from `bot.binding.create_invite` (six digits, stored only as a keyed hash, audited):
the page that shows a code is the only place it ever appears, and is sent `no-store`.
Liaison names are shown only masked (`bot.privacy.mask_name`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import STORAGE
from bot.binding import BadDuration, NewInvite, create_invite, parse_ttl
from bot.console.common import clock, form, page, sessions, settings, staff_for
from bot.console.security import audit_actor
from bot.privacy import mask_name
from bot.users import forget_user
from models.audit import audit
from models.invites import Invite
from models.people import Liaison
from models.plans import Unit
from models.units import UnitRef
from models.users import Binding

TTLS = {"3d": "3 天", "7d": "7 天", "14d": "14 天", "30d": "30 天"}
DEFAULT_TTL = "7d"
SHOWS = {"all": "全部", "unbound": "未绑定", "bound": "已绑定"}
NO_CATEGORY = ""  # the sheet form's value for units without a category


@dataclass
class BoundLiaison:
    id: int
    who: str  # masked name, or a note that the directory entry is not known
    since: datetime


@dataclass
class UnitRow:
    id: int
    name: str
    category: str
    bound: list[BoundLiaison] = field(default_factory=list)
    directory: list[str] = field(default_factory=list)  # masked names from the 联络员 directory
    live_invites: int = 0


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they are stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _id(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _tz(request: web.Request, code: str) -> ZoneInfo:
    return ZoneInfo(settings(request).jurisdiction(code).timezone)


async def _units(request: web.Request, session: AsyncSession, code: str) -> list[UnitRow]:
    """Every unit of the jurisdiction (group headings only if someone is bound to one)."""
    tz, now = _tz(request, code), clock(request).now()
    units = await session.scalars(
        select(Unit).where(Unit.jurisdiction == code).order_by(Unit.category, Unit.name)
    )
    bindings = await session.execute(
        select(Binding, Liaison.name)
        .outerjoin(Liaison, Liaison.id == Binding.liaison_id)
        .where(Binding.jurisdiction == code, Binding.role == "liaison")
        .order_by(Binding.id)
    )
    bound: dict[int, list[BoundLiaison]] = defaultdict(list)
    for binding, name in bindings:
        if binding.unit_id is not None:
            who = mask_name(name) if name else "（未核对名录）"
            since = _aware(binding.created_at).astimezone(tz)
            bound[binding.unit_id].append(BoundLiaison(binding.id, who, since))
    directory: dict[int, list[str]] = defaultdict(list)
    for unit_id, name in await session.execute(
        select(Liaison.unit_id, Liaison.name)
        .where(Liaison.jurisdiction == code)
        .order_by(Liaison.id)
    ):
        directory[unit_id].append(mask_name(name))
    live: dict[int, int] = defaultdict(int)
    for invited, expires in await session.execute(
        select(Invite.unit_id, Invite.expires_at).where(
            Invite.jurisdiction == code,
            Invite.role == "liaison",
            Invite.used_at.is_(None),
            Invite.revoked.is_(False),
        )
    ):
        if invited is not None and _aware(expires) > now:
            live[invited] += 1
    return [
        UnitRow(u.id, u.name, u.category or "", bound[u.id], directory[u.id], live.get(u.id, 0))
        for u in units
        if not u.is_group or bound.get(u.id)
    ]


async def liaisons(request: web.Request) -> web.Response:
    _, code = await staff_for(request)
    return await _list_page(request, code)


async def _list_page(
    request: web.Request,
    code: str,
    *,
    message: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    show = request.query.get("show", "all")
    show = show if show in SHOWS else "all"
    category = request.query.get("category")
    async with sessions(request)() as s:
        rows = await _units(request, s, code)
    categories = sorted({r.category for r in rows if r.category})
    has_uncategorized = any(not r.category for r in rows)
    bound = sum(1 for r in rows if r.bound)
    shown = [
        r
        for r in rows
        if (show == "all" or (show == "bound") == bool(r.bound))
        and (category is None or r.category == category)
    ]
    return page(
        request,
        "liaisons.html",
        status=status,
        rows=shown,
        total=len(rows),
        bound=bound,
        show=show,
        shows=SHOWS,
        category=category,
        categories=categories,
        has_uncategorized=has_uncategorized,
        ttls=TTLS,
        default_ttl=DEFAULT_TTL,
        message=message,
        error=error,
        place=settings(request).jurisdiction(code).name,
    )


def _ttl(data: Any) -> Any:
    text = str(data.get("ttl", DEFAULT_TTL))
    return parse_ttl(text)


def _no_store(response: web.Response) -> web.Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


async def invite(request: web.Request) -> web.Response:
    """A fresh code for one unit's liaison, shown on this page once."""
    staff, code = await staff_for(request)
    data = form(request)
    try:
        ttl = _ttl(data)
    except BadDuration as exc:
        return await _list_page(request, code, error=str(exc), status=400)
    unit_id = _id(str(data.get("unit", "")))
    async with sessions(request)() as s:
        unit = await s.get(Unit, unit_id) if unit_id is not None else None
        if unit is None or unit.jurisdiction != code:
            return await _list_page(request, code, error="没有这个单位。", status=404)
        new = await create_invite(
            s,
            settings(request),
            jurisdiction=code,
            role="liaison",
            unit=_ref(unit),
            ttl=ttl,
            actor=audit_actor(staff),
            now=clock(request).now(),
        )
        await s.commit()
    return _no_store(
        page(
            request,
            "liaisons_invite.html",
            invite=_shown(request, code, new),
            place=settings(request).jurisdiction(code).name,
        )
    )


async def sheet(request: web.Request) -> web.Response:
    """A printable page: every unit of one category with a fresh code each."""
    staff, code = await staff_for(request)
    data = form(request)
    try:
        ttl = _ttl(data)
    except BadDuration as exc:
        return await _list_page(request, code, error=str(exc), status=400)
    if "category" not in data:
        return await _list_page(request, code, error="请选择单位类别。", status=400)
    category = str(data.get("category", ""))
    actor = audit_actor(staff)
    now = clock(request).now()
    async with sessions(request)() as s:
        query = select(Unit).where(Unit.jurisdiction == code, Unit.is_group.is_(False))
        if category == NO_CATEGORY:
            query = query.where((Unit.category.is_(None)) | (Unit.category == ""))
        else:
            query = query.where(Unit.category == category)
        units = list(await s.scalars(query.order_by(Unit.name)))
        if not units:
            return await _list_page(
                request, code, error=f"类别「{category or '未分类'}」下没有单位。", status=404
            )
        invites = [
            await create_invite(
                s,
                settings(request),
                jurisdiction=code,
                role="liaison",
                unit=_ref(u),
                ttl=ttl,
                actor=actor,
                now=now,
            )
            for u in units
        ]
        audit(s, actor, "invite.sheet", code, category=category or "（未分类）", units=len(units))
        await s.commit()
    return _no_store(
        page(
            request,
            "liaisons_sheet.html",
            invites=[_shown(request, code, i) for i in invites],
            category=category or "（未分类）",
            made_at=now.astimezone(_tz(request, code)),
            place=settings(request).jurisdiction(code).name,
            account=settings(request).jurisdiction(code).name,
        )
    )


def _ref(unit: Unit) -> UnitRef:
    return UnitRef(unit.id, unit.name, unit.parent_id, unit.category, unit.is_group)


def _shown(request: web.Request, code: str, new: NewInvite) -> dict[str, Any]:
    return {
        "code": new.code,
        "unit": new.unit.name if new.unit else "",
        "expires": _aware(new.expires_at).astimezone(_tz(request, code)),
    }


async def _binding(request: web.Request, session: AsyncSession, code: str) -> tuple[Any, ...]:
    """(binding, unit, masked liaison) of the URL, if it is a liaison binding of `code`."""
    binding_id = _id(request.match_info["binding"])
    binding = await session.get(Binding, binding_id) if binding_id is not None else None
    if binding is None or binding.jurisdiction != code or binding.role != "liaison":
        raise web.HTTPNotFound(text="没有这个绑定（可能已被解除）。", content_type="text/plain")
    unit = await session.get(Unit, binding.unit_id) if binding.unit_id else None
    name = await session.get(Liaison, binding.liaison_id) if binding.liaison_id else None
    who = mask_name(name.name) if name else "（未核对名录）"
    return binding, unit, who


async def revoke_form(request: web.Request) -> web.Response:
    _, code = await staff_for(request)
    async with sessions(request)() as s:
        binding, unit, who = await _binding(request, s, code)
        since = _aware(binding.created_at).astimezone(_tz(request, code))
    return page(
        request,
        "liaisons_revoke.html",
        binding_id=binding.id,
        unit=unit.name if unit else "",
        who=who,
        since=since,
    )


async def revoke(request: web.Request) -> web.Response:
    """Remove one liaison binding (after the confirmation page), audited."""
    staff, code = await staff_for(request)
    if form(request).get("confirm") != "yes":
        return await revoke_form(request)
    async with sessions(request)() as s:
        binding, unit, who = await _binding(request, s, code)
        openid, unit_name = binding.openid, unit.name if unit else ""
        await s.delete(binding)
        audit(s, audit_actor(staff), "binding.revoke", code, unit=unit_name, liaison=who)
        await s.commit()
    await forget_user(request.config_dict[STORAGE], code, openid)  # the chat sees it at once
    return await _list_page(request, code, message=f"已解除「{unit_name}」联络员 {who} 的绑定。")


def register(app: web.Application) -> None:
    app.router.add_get("/j/{code}/liaisons", liaisons)
    app.router.add_post("/j/{code}/liaisons/invite", invite)
    app.router.add_post("/j/{code}/liaisons/sheet", sheet)
    app.router.add_get("/j/{code}/liaisons/revoke/{binding}", revoke_form)
    app.router.add_post("/j/{code}/liaisons/revoke/{binding}", revoke)
