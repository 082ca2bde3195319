"""The audit log: who imported, invited, broadcast, edited what and when."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select

from bot.console.common import page, sessions, settings, staff_for
from models.people import AuditEntry

PAGE = 100


async def audit_log(request: web.Request) -> web.Response:
    _, code = await staff_for(request)
    tz = ZoneInfo(settings(request).jurisdiction(code).timezone)
    try:
        before = int(request.query.get("before", "0")) or None
    except ValueError:
        raise web.HTTPBadRequest(text="参数 before 应为数字。", content_type="text/plain") from None
    query = select(AuditEntry).where(AuditEntry.jurisdiction == code)
    if before:
        query = query.where(AuditEntry.id < before)
    async with sessions(request)() as s:
        rows = list(await s.scalars(query.order_by(AuditEntry.id.desc()).limit(PAGE)))
    entries = [
        {
            "id": r.id,
            # SQLite hands back naive UTC; show the jurisdiction's local time either way
            "at": (r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)).astimezone(tz),
            "actor": r.actor,
            "action": r.action,
            "detail": r.detail,
        }
        for r in rows
    ]
    more = rows[-1].id if len(rows) == PAGE else None
    return page(request, "audit.html", entries=entries, more=more)


def register(app: web.Application) -> None:
    app.router.add_get("/j/{code}/audit", audit_log)
