"""Reply templates: list, edit with a live preview against real data, history, rollback.

Everything goes through bot/reply_templates.py (the checks, the versions, the audit, the
stamp other processes follow); this module only turns requests into calls and pages.
The editor shows the source as text (autoescaped), never as markup.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.app import RENDER, STORAGE
from bot.console.common import form, page, sessions, settings, staff_for
from bot.console.security import audit_actor
from bot.reply_templates import (
    SAMPLE_QUESTIONS,
    ReplyTemplates,
    TemplateRefused,
    for_renderer,
    listing,
    shipped,
    versions,
)

NAME = r"[a-z0-9_]{1,64}"


def _layer(request: web.Request) -> ReplyTemplates:
    cfg = request.config_dict
    return for_renderer(cfg[RENDER], cfg[STORAGE], sessions(request))


def _name(request: web.Request, layer: ReplyTemplates) -> str:
    name = request.match_info["name"]
    if name not in shipped(layer.env).sources:
        raise web.HTTPNotFound(text=f"没有名为「{name}」的回复模板。", content_type="text/plain")
    return name


def _local(at: datetime | None, tz: ZoneInfo) -> datetime | None:
    if at is None:
        return None
    return at.astimezone(tz) if at.tzinfo else at


async def template_list(request: web.Request) -> web.Response:
    _, code = await staff_for(request)
    layer = _layer(request)
    tz = ZoneInfo(settings(request).jurisdiction(code).timezone)
    async with sessions(request)() as s:
        rows = await listing(s, layer.env, code)
    items = [
        {
            "name": r.name,
            "version": r.version,
            "edited": r.edited,
            "author": r.author,
            "at": _local(r.at, tz),
            "seen": layer.context(code, r.name) is not None,
        }
        for r in rows
    ]
    return page(request, "templates.html", items=items)


async def _editor(
    request: web.Request,
    code: str,
    name: str,
    *,
    status: int = 200,
    draft: str | None = None,
    note: str = "",
    preview: str | None = None,
    error: TemplateRefused | None = None,
    saved: int | None = None,
) -> web.Response:
    layer = _layer(request)
    tz = ZoneInfo(settings(request).jurisdiction(code).timezone)
    async with sessions(request)() as s:
        history = await versions(s, layer.env, code, name)
    context = layer.context(code, name)
    ship = shipped(layer.env)
    return page(
        request,
        "templates_edit.html",
        status=status,
        name=name,
        source=history[0].source if draft is None else draft,
        current=history[0].version,
        note=note,
        history=[
            {
                "version": v.version,
                "author": v.author,
                "note": v.note,
                "at": _local(v.at, tz),
                "in_use": i == 0,
            }
            for i, v in enumerate(history)
        ],
        known=context is not None,
        values=sorted(ship.variables[name] | set(context or ())),
        sample=SAMPLE_QUESTIONS.get(name),
        preview=preview,
        error=error,
        saved=saved,
    )


async def template_edit(request: web.Request) -> web.Response:
    _, code = await staff_for(request)
    name = _name(request, _layer(request))
    saved = request.query.get("saved", "")
    return await _editor(request, code, name, saved=int(saved) if saved.isdigit() else None)


async def template_post(request: web.Request) -> web.Response:
    """The form: 「预览」 renders the draft against the last real reply; 「保存」 stores it."""
    staff, code = await staff_for(request)
    layer = _layer(request)
    name = _name(request, layer)
    data = form(request)
    source = str(data.get("source", "")).replace("\r\n", "\n")
    note = str(data.get("note", "")).strip()
    try:
        if data.get("action") == "save":
            number = await layer.save(code, name, source, actor=audit_actor(staff), note=note)
            raise web.HTTPFound(f"/console/j/{code}/templates/{name}?saved={number}")
        text = layer.preview(code, name, source)
    except TemplateRefused as exc:
        return await _editor(request, code, name, status=400, draft=source, note=note, error=exc)
    return await _editor(request, code, name, draft=source, note=note, preview=text)


async def template_preview(request: web.Request) -> web.Response:
    """The live preview (templates.js): JSON in and out, the CSRF token in a header."""
    _, code = await staff_for(request)
    layer = _layer(request)
    name = _name(request, layer)
    try:
        body: Any = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="请求格式不对。", content_type="text/plain") from None
    source = body.get("source") if isinstance(body, dict) else None
    if not isinstance(source, str):
        raise web.HTTPBadRequest(text="缺少模板内容（source）。", content_type="text/plain")
    known = layer.context(code, name) is not None
    try:
        text = layer.preview(code, name, source.replace("\r\n", "\n"))
    except TemplateRefused as exc:
        return web.json_response({"ok": False, "error": str(exc), "line": exc.line, "known": known})
    return web.json_response({"ok": True, "text": text, "known": known})


async def template_rollback(request: web.Request) -> web.Response:
    staff, code = await staff_for(request)
    layer = _layer(request)
    name = _name(request, layer)
    raw = str(form(request).get("version", ""))
    if not raw.isdigit():
        raise web.HTTPBadRequest(text="参数 version 应为数字。", content_type="text/plain")
    try:
        number = await layer.rollback(code, name, int(raw), actor=audit_actor(staff))
    except TemplateRefused as exc:
        return await _editor(request, code, name, status=400, error=exc)
    raise web.HTTPFound(f"/console/j/{code}/templates/{name}?saved={number}")


def register(app: web.Application) -> None:
    base = "/j/{code}/templates"
    app.router.add_get(base, template_list)
    app.router.add_get(base + "/{name:" + NAME + "}", template_edit)
    app.router.add_post(base + "/{name:" + NAME + "}", template_post)
    app.router.add_post(base + "/{name:" + NAME + "}/preview", template_preview)
    app.router.add_post(base + "/{name:" + NAME + "}/rollback", template_rollback)
