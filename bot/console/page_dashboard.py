"""The dashboard (/console/j/{code}/): the month and the year of a jurisdiction's plans at a
glance, and the progress 通报 workbook to download.

Every number comes from `models.progress_summary` (`jurisdiction_progress`,
`summary_by_month`, `units_behind`, `JurisdictionProgress.totals`) — the same query the chat
replies, broadcasts and `bot.export` use — and the status words are `bot.export.STATUS_TEXT`.
Sorting and filtering happen here from query parameters (?sort=percent&dir=asc&q=慈利
&status=behind), so the page works and is testable without a browser; static/dashboard.js
does the same in place, with the same sort keys (the rows' data-s-* attributes).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.console.charts import MonthPoint, completion_histogram, monthly_plan_vs_actual
from bot.console.common import page, sessions, settings, staff_for, today
from bot.console.security import audit_actor
from bot.export import STATUS_TEXT, build_workbook
from models.audit import audit
from models.plans import Plan
from models.progress_summary import (
    SCHEDULE_KINDS,
    JurisdictionProgress,
    jurisdiction_progress,
    summary_by_month,
    units_behind,
)
from models.progress_types import (
    AHEAD,
    BEHIND,
    MET,
    NEEDS_HEADCOUNT,
    NO_TARGET,
    NOT_STARTED,
    OVER,
    STANDBY,
    UPCOMING,
    LineProgress,
    MonthSummary,
    Totals,
)

MIN_YEAR, MAX_YEAR = 2000, 2100
MAX_QUERY = 100
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# the table's columns: (sort key, header, sorts as a number, right-aligned)
COLUMNS: tuple[tuple[str, str, bool, bool], ...] = (
    ("unit", "单位", False, False),
    ("category", "类别", False, False),
    ("period", "时段", True, False),
    ("target", "计划数", True, True),
    ("done", "已完成", True, True),
    ("remaining", "尚差", True, True),
    ("percent", "完成率", True, True),
    ("status", "状态", True, False),  # worst first (STATUS_ORDER)
)
SORT_KEYS = tuple(key for key, *_ in COLUMNS)
NUMERIC = frozenset(key for key, _, numeric, _ in COLUMNS if numeric)
# worst first when sorting by status
STATUS_ORDER = (
    NOT_STARTED,
    BEHIND,
    AHEAD,
    MET,
    OVER,
    UPCOMING,
    NEEDS_HEADCOUNT,
    STANDBY,
    NO_TARGET,
)
LAGGING = "behind_pace"  # the status filter for every highlighted row (not started or behind)
STATUS_FILTERS: tuple[tuple[str, str], ...] = (
    ("", "全部状态"),
    (LAGGING, "落后于进度（含尚未献血）"),
    *((status, STATUS_TEXT[status]) for status in STATUS_ORDER),
)
BEHIND_LIST = 10  # the worst units listed at the top
BEHIND_ALL = 100_000  # units_behind's limit when counting them all


class BadQuery(ValueError):
    """A query parameter the page cannot use; the message is shown to the user."""


@dataclass(frozen=True)
class View:
    year: int
    month: int
    sort: str | None
    descending: bool
    q: str
    status: str


def _int(query: Mapping[str, str], name: str, default: int, lo: int, hi: int, what: str) -> int:
    raw = query.get(name, "").strip()
    if not raw:
        return default
    if (
        len(raw) > len(str(hi))
        or not raw.isascii()
        or not raw.isdigit()
        or not lo <= int(raw) <= hi
    ):
        raise BadQuery(f"{what}应为 {lo} 至 {hi} 之间的整数，而不是「{raw[:20]}」。")
    return int(raw)


def parse_year(query: Mapping[str, str], now: date) -> int:
    return _int(query, "year", now.year, MIN_YEAR, MAX_YEAR, "年份（year）")


def parse_view(query: Mapping[str, str], now: date) -> View:
    year = parse_year(query, now)
    month = _int(query, "month", now.month, 1, 12, "月份（month）")
    sort = query.get("sort", "").strip() or None
    if sort is not None and sort not in SORT_KEYS:
        raise BadQuery(f"不能按「{sort[:20]}」排序；可用的排序：{'、'.join(SORT_KEYS)}。")
    direction = query.get("dir", "asc").strip() or "asc"
    if direction not in ("asc", "desc"):
        raise BadQuery("排序方向（dir）应为 asc（升序）或 desc（降序）。")
    q = query.get("q", "").strip()
    if len(q) > MAX_QUERY:
        raise BadQuery(f"单位名称筛选太长（最多 {MAX_QUERY} 个字）。")
    status = query.get("status", "").strip()
    if status and status not in dict(STATUS_FILTERS):
        raise BadQuery(f"没有「{status[:20]}」这种状态。")
    return View(year, month, sort, direction == "desc", q, status)


@dataclass(frozen=True)
class Row:
    """A line as the table shows it, with the sort values the server and the JS share."""

    unit: str
    category: str
    period: str
    measure: str
    target: int | None
    done: Decimal
    remaining: Decimal | None
    over: Decimal | None
    percent: Decimal | None
    expected: Decimal | None
    status: str
    status_text: str
    behind: bool
    keys: dict[str, str]  # sort key → value ("" = none, always last)


def _key_text(value: Decimal | int | None) -> str:
    return "" if value is None else str(value)


def row_of(line: LineProgress) -> Row:
    months = line.period.month_list
    remaining = None if line.remaining is None else line.remaining - (line.over or 0)
    status_rank = STATUS_ORDER.index(line.status) if line.status in STATUS_ORDER else 99
    keys = {
        "unit": line.unit_name,
        "category": line.category or "",
        "period": str((months[0] if months else 0) * 100 + len(months)),
        "target": _key_text(line.target),
        "done": _key_text(line.done),
        "remaining": _key_text(remaining),  # over-fulfilment sorts below zero
        "percent": _key_text(line.percent),
        "status": str(status_rank),
    }
    return Row(
        unit=line.unit_name,
        category=line.category or "",
        period=line.period.label,
        measure=line.measure,
        target=line.target,
        done=line.done,
        remaining=line.remaining,
        over=line.over,
        percent=line.percent,
        expected=line.expected if line.status != UPCOMING else None,
        status=line.status,
        status_text=STATUS_TEXT.get(line.status, line.status),
        behind=line.behind_pace,
        keys=keys,
    )


def matches(row: Row, view: View) -> bool:
    if view.q and view.q.casefold() not in row.unit.casefold():
        return False
    if view.status == LAGGING:
        return row.behind
    return not view.status or row.status == view.status


def arrange(rows: Iterable[Row], view: View) -> list[Row]:
    """Filter, then sort (stable; rows without a value last in either direction)."""
    kept = [row for row in rows if matches(row, view)]
    if view.sort is None:
        return kept
    key = view.sort
    present = [row for row in kept if row.keys[key] != ""]
    missing = [row for row in kept if row.keys[key] == ""]
    if key in NUMERIC:
        present.sort(key=lambda row: Decimal(row.keys[key]), reverse=view.descending)
    else:
        present.sort(key=lambda row: row.keys[key], reverse=view.descending)
    return present + missing


def _url(base: str, **params: object) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return base + ("?" + urlencode(kept) if kept else "")


async def plan_years(session: AsyncSession, code: str) -> list[int]:
    """The years the jurisdiction has plans for (real or demo), oldest first."""
    found = await session.scalars(
        select(Plan.year).where(Plan.jurisdiction == code).distinct().order_by(Plan.year)
    )
    return list(found)


def _month_points(summaries: Iterable[MonthSummary]) -> dict[str, list[MonthPoint]]:
    """Per measure, the twelve months' 合计 (lines counted in the month they begin)."""
    points: dict[str, list[MonthPoint]] = {}
    for summary in summaries:
        for totals in summary.totals:
            points.setdefault(totals.measure, []).append(
                MonthPoint(summary.month, totals.target, totals.done)
            )
    return points


def _year_totals(progress: JurisdictionProgress) -> list[tuple[str, Totals]]:
    """The year's 合计 as the 通报's year sheet has them: annual plan, then the schedule."""
    return [
        (("分月安排" if kind else "年度计划"), t)
        for kind in (False, True)
        for t in progress.totals(
            line for line in progress.lines if (line.kind in SCHEDULE_KINDS) == kind
        )
    ]


def _error(request: web.Request, status: int, message: str, **extra: Any) -> web.Response:
    return page(request, "dashboard.html", status=status, error=message, **extra)


async def dashboard(request: web.Request) -> web.Response:
    _, code = await staff_for(request)
    now = today(request, code)
    base = f"/console/j/{code}/"
    try:
        view = parse_view(request.query, now)
    except BadQuery as exc:
        return _error(request, 400, str(exc), back=base)
    async with sessions(request)() as s:
        years = await plan_years(s, code)
        progress = await jurisdiction_progress(s, code, view.year, today=now)
        current = (view.year, view.month) == (now.year, now.month)
        behind = (
            await units_behind(s, code, today=now, limit=BEHIND_ALL)
            if current and progress.plan_found
            else []
        )
    name = settings(request).jurisdiction(code).name
    filters = {"q": view.q, "status": view.status}
    here = {"year": view.year, "month": view.month, **filters}
    sort_links = {
        key: _url(
            base,
            **here,
            sort=key,
            dir="desc" if view.sort == key and not view.descending else "asc",
        )
        for key in SORT_KEYS
    }
    prev_year, prev_month = (view.year, view.month - 1) if view.month > 1 else (view.year - 1, 12)
    next_year, next_month = (view.year, view.month + 1) if view.month < 12 else (view.year + 1, 1)
    context: dict[str, Any] = {
        "error": None,
        "name": name,
        "view": view,
        "today": now,
        "years": years,
        "year_choices": sorted({*years, now.year, view.year}),
        "plan_found": progress.plan_found,
        "is_demo": progress.is_demo,
        "columns": COLUMNS,
        "status_filters": STATUS_FILTERS,
        "sort_links": sort_links,
        "year_links": [(y, _url(base, year=y, month=view.month)) for y in years],
        "prev_url": _url(base, **{**here, "year": prev_year, "month": prev_month}),
        "next_url": _url(base, **{**here, "year": next_year, "month": next_month}),
        "this_month_url": base,
        "export_url": _url(f"{base}export.xlsx", year=view.year),
        "behind": behind[:BEHIND_LIST],
        "behind_count": len(behind),
        "status_text": STATUS_TEXT,
    }
    if progress.plan_found:
        context.update(_tables(progress, view, name))
    return page(request, "dashboard.html", **context)


def _tables(progress: JurisdictionProgress, view: View, name: str) -> dict[str, Any]:
    month_lines = progress.schedule_lines(view.month)
    month_rows = [row_of(line) for line in month_lines]
    year_rows = [row_of(line) for line in progress.lines]
    summaries = summary_by_month(progress)
    summary = summaries[view.month - 1]
    charts = [
        monthly_plan_vs_actual(
            points, measure=measure, title=f"{name}{view.year}年各月计划与完成（{measure}）"
        )
        for measure, points in _month_points(summaries).items()
    ]
    if not charts:
        charts = [
            monthly_plan_vs_actual([], measure="", title=f"{name}{view.year}年各月计划与完成")
        ]
    histogram = completion_histogram(
        [(line.unit_name, line.percent) for line in month_lines if line.percent is not None],
        title=f"{name}{view.year}年{view.month}月各单位完成率分布",
    )
    return {
        "month_rows": arrange(month_rows, view),
        "month_all": len(month_rows),
        "year_rows": arrange(year_rows, view),
        "year_all": len(year_rows),
        "month_totals": summary.totals,
        "year_totals": _year_totals(progress),
        "plan_charts": charts,
        "histogram": histogram,
    }


def _workbook_bytes(progress: JurisdictionProgress, name: str) -> bytes:
    out = io.BytesIO()
    build_workbook(progress, name).save(out)
    return out.getvalue()


async def export_xlsx(request: web.Request) -> web.Response:
    staff, code = await staff_for(request)
    now = today(request, code)
    base = f"/console/j/{code}/"
    try:
        year = parse_year(request.query, now)
    except BadQuery as exc:
        return _error(request, 400, str(exc), back=base)
    name = settings(request).jurisdiction(code).name
    async with sessions(request)() as s:
        progress = await jurisdiction_progress(s, code, year, today=now)
        if not progress.plan_found:
            return _error(request, 404, f"{name}没有 {year} 年的计划，无法导出。", back=base)
        body = await asyncio.to_thread(_workbook_bytes, progress, name)
        audit(
            s,
            audit_actor(staff),
            "console.export",
            code,
            year=year,
            as_of=now.isoformat(),
            lines=len(progress.lines),
        )
        await s.commit()
    safe = "".join(c for c in code if c.isascii() and (c.isalnum() or c in "-_")) or "progress"
    filename = f"{safe}-{year}-progress.xlsx"
    return web.Response(
        body=body,
        content_type=XLSX,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def register(app: web.Application) -> None:
    app.router.add_get("/j/{code}/", dashboard)
    app.router.add_get("/j/{code}/export.xlsx", export_xlsx)
