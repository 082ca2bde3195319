"""Quota questions: 「这个月还差多少」「3月份的任务多少」「今年完成几个了」「我们几月份献血」.

A liaison asks about their own unit; office staff name a unit (resolved by the plan
database's one resolver) or ask about the whole jurisdiction.  Every number comes
from models/progress.py; the wording from templates/replies/quota_*.j2.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import reply_cache
from bot.dispatcher import HelpEntry, Router
from bot.filters import Choice, Intent, Role
from bot.intents import Query
from bot.middlewares import LazySession
from bot.render import Renderer
from bot.state import State
from bot.storage import Storage
from bot.users import User
from models import progress
from models.periods import format_months
from models.plans import Unit
from models.units import UnitRef, resolve_unit

router = Router(name=__name__)
# Answers being worked out now, by (storage, reply-cache key): see unit_question.
_computing: dict[tuple[int, str], asyncio.Future[str | None]] = {}
UNIT_INTENTS = ("remaining", "progress", "month_plan", "year", "schedule", "plan_lines")
BOUND = frozenset({"liaison", "office"})
OFFICE = frozenset({"office"})
BEHIND_PAGE = 10
MENU = ("click",)  # menu buttons ask the same questions (bot/menu.py)


@router.message(Intent("bad_time"))
async def bad_time(query: Query, render: Renderer) -> str:
    """Explains a time we cannot read (「13月」「上上上个月」)."""
    return render("quota_bad_time", text=query.bad_text)


@router.message(
    Intent(*UNIT_INTENTS, "office_summary", "behind"), Role("anonymous", "donor"), events=MENU
)
async def not_bound(render: Renderer) -> str:
    """Tells an unbound user how to bind before asking about a unit."""
    return render("quota_unbound")


@router.message(Role("office"), Choice())
async def pick_choice(
    query: Query,
    state: State,
    session: AsyncSession,
    render: Renderer,
    jurisdiction: str,
    today: date,
) -> str | None:
    """Takes 「1」/「2」 as the answer to a numbered 「您指的是哪个单位」 question."""
    pending = (await state.get()).get("choose_unit")
    if not pending:
        return render("quota_no_pending_choice")
    choices = pending["choices"]
    assert query.choice is not None
    index = query.choice - 1
    if not 0 <= index < len(choices):
        return render("quota_choose_unit", name=pending["name"], choices=choices)
    await state.clear()
    unit = await session.get(Unit, choices[index][0])
    assert unit is not None
    return await answer(session, render, Query(**pending["query"]), _ref(unit), jurisdiction, today)


@router.message(
    Intent(*UNIT_INTENTS),
    Role("liaison", "office"),
    events=MENU,
    help=HelpEntry("这个月还差多少", "本单位本月的任务、已完成和还差的人数", BOUND),
)
async def unit_question(
    query: Query,
    user: User,
    lazy_session: LazySession,
    storage: Storage,
    state: State,
    render: Renderer,
    jurisdiction: str,
    today: date,
) -> str:
    """Answers a quota question about one unit (the liaison's own, or the one office names).

    The answer about one's own unit comes from the reply cache (bot/reply_cache.py) when
    the same question about that unit has been answered today since the data last changed.
    """
    if user.unit_id and not query.unit_text:
        wording = getattr(render, "wording", "0")
        key = await reply_cache.answer_key(
            storage, jurisdiction, user.unit_id, today, query, wording
        )
        cached = await storage.get(key)
        if cached is not None:
            return cached
        # The unit's other liaisons asking at the same moment wait for this one answer
        # rather than each running the same queries (a cold cache after an import).
        flight = (id(storage), key)
        first = _computing.get(flight)
        if first is not None:
            shared = await asyncio.shield(first)
            if shared is not None:
                return shared
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        _computing[flight] = done
        reply: str | None = None
        try:
            session = await lazy_session.get()
            own = await session.get(Unit, user.unit_id)
            if own is None:
                return render("quota_which_unit")
            reply = await answer(session, render, query, _ref(own), jurisdiction, today)
            await storage.set(key, reply, reply_cache.TTL)
            return reply
        finally:
            done.set_result(reply)  # None: the waiters work it out themselves
            if _computing.get(flight) is done:
                del _computing[flight]
    session = await lazy_session.get()
    own = await session.get(Unit, user.unit_id) if user.unit_id else None
    if query.unit_text:
        found = await resolve_unit(session, jurisdiction, query.unit_text)
        if user.role != "office":
            if found.unit is None or own is None or found.unit.id != own.id:
                return render("quota_not_yours", unit_name=own.name if own else "")
        elif found.choices:
            await state.set({"choose_unit": _pending(query, found.query, found.choices)})
            return render("quota_choose_unit", name=found.query, choices=_pairs(found.choices))
        elif found.unit is None:
            names = [s.unit.name for s in found.suggestions]
            return render("quota_unknown_unit", name=found.query, suggestions=names)
        else:
            return await answer(session, render, query, found.unit, jurisdiction, today)
    if own is None:
        return render("quota_which_unit")
    return await answer(session, render, query, _ref(own), jurisdiction, today)


@router.message(
    Intent("office_summary"),
    Role("office"),
    help=HelpEntry("本月全市进度", "全辖区本月计划与完成情况", OFFICE),
)
async def office_summary(
    query: Query,
    session: AsyncSession,
    render: Renderer,
    jurisdiction: str,
    jurisdiction_name: str,
    today: date,
) -> str:
    """Summarises the jurisdiction's month: targets, done and remaining per measure."""
    year = query.year or today.year
    month = _single_month(query) or today.month
    whole = await progress.jurisdiction_progress(session, jurisdiction, year, today=today)
    months = progress.summary_by_month(whole)
    return render(
        "quota_office_month",
        name=jurisdiction_name,
        year=year,
        month=months[month - 1],
        as_of=today,
        is_demo=whole.is_demo,
    )


@router.message(
    Intent("behind"),
    Role("office"),
    help=HelpEntry("哪些单位落后", "低于应有进度的单位，最落后的在前", OFFICE),
)
async def behind(
    session: AsyncSession, state: State, render: Renderer, jurisdiction: str, today: date
) -> str:
    """Lists units behind their expected pace, worst first, ten at a time."""
    lines = await progress.units_behind(session, jurisdiction, today=today, limit=100)
    pages = [
        render("quota_behind", lines=lines[i : i + BEHIND_PAGE], start=i, total=len(lines))
        for i in range(0, max(len(lines), 1), BEHIND_PAGE)
    ]
    await state.push_pages(pages[1:])
    return pages[0]


async def answer(
    session: AsyncSession,
    render: Renderer,
    query: Query,
    unit: UnitRef,
    jurisdiction: str,
    today: date,
) -> str:
    """The reply for one unit and the period the query names."""
    year = query.year or today.year
    month = _single_month(query)
    if query.intent == "schedule":
        sched = await progress.unit_schedule(session, jurisdiction, unit.id, today=today, year=year)
        return render("quota_schedule", s=sched, today=today, fmt=format_months)
    if query.intent in ("year", "plan_lines") or query.period in ("year", "ytd"):
        ytd = await progress.year_to_date(session, jurisdiction, unit.id, today=today, year=year)
        return render("quota_year", y=ytd, today=today, brief=query.intent == "plan_lines")
    if query.months and month is None:  # a quarter, a half year, several months
        ytd = await progress.year_to_date(session, jurisdiction, unit.id, today=today, year=year)
        lines = [ln for ln in ytd.lines if ln.period.months & query.months]
        return render(
            "quota_months", y=ytd, lines=lines, label=format_months(query.months), today=today
        )
    um = await progress.month_progress(
        session, jurisdiction, unit.id, year, month or today.month, today=today
    )
    return render("quota_month", m=um, today=today, ask_remaining=query.intent == "remaining")


def _single_month(query: Query) -> int | None:
    months = [m for m in range(1, 13) if query.months & (1 << m)]
    return months[0] if len(months) == 1 else None


def _ref(unit: Unit) -> UnitRef:
    return UnitRef(unit.id, unit.name, unit.parent_id, unit.category, unit.is_group)


def _pairs(choices: tuple[UnitRef, ...]) -> list[tuple[int, str]]:
    return [(c.id, c.name) for c in choices[:9]]


def _pending(query: Query, name: str, choices: tuple[UnitRef, ...]) -> dict[str, Any]:
    fields = {k: getattr(query, k) for k in query.__dataclass_fields__}
    return {"query": fields, "name": name, "choices": _pairs(choices)}
