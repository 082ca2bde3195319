"""Broadcasts in the console: compose (live audience count, live preview of the message),
confirm, then watch the progress; cancel; retry the failed deliveries.

Nothing here decides who gets what or how it is sent. The audience is `models.audiences`
(`preview` gives the live count), the message `bot.broadcasts.compose` (`Composer`,
`shown`: what WeChat will show), and creating (with its dry run), progress, cancel and
retry are `bot.broadcasts.service` — the calls `donorbot broadcast` makes. This module
turns the form into their arguments and their answers, or their errors, into pages and JSON.

Without JavaScript the form still works: 「预览并确认」 posts it to `/new`, which answers with
the dry run (recipients, opted-out, a sample of the exact text); 「确认发送」 posts the same
fields to `/broadcasts`. The idempotency key is made when the compose page is rendered and
carried in a hidden field, so a confirmation posted twice (a double click, a browser retry)
creates one broadcast. Every error of the audience, the message or the service comes back
as the form with its Chinese message (status 400), nothing written.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.broadcasts.compose import ComposeError, Composer, parse_params, shown
from bot.broadcasts.service import (
    BroadcastError,
    Progress,
    cancel,
    create_broadcast,
    list_broadcasts,
    opted_out,
    progress,
    retry_failed,
)
from bot.console.common import clock, form, page, sessions, settings, staff_for, today
from bot.console.security import FORM, Staff, audit_actor
from bot.errors import DonorbotError
from models.audiences import BLOOD_TYPES, KIND_NAMES, AudienceError, AudienceSpec, preview
from models.broadcasts import Broadcast

CHANNELS = {"template": "模板消息", "custom": "客服消息", "subscribe": "订阅通知"}
ROLE_NAMES = {"liaison": "联络员", "donor": "献血者", "office": "献血办"}
# every field of the compose form; the filters are per audience kind (l_: liaisons, d_: donors)
FIELDS = (
    "audience",
    "l_month",
    "l_behind",
    "l_unit",
    "d_blood_type",
    "d_eligible",
    "d_unit",
    "channel",
    "template_id",
    "fields",
    "url",
    "send_at",
    "critical",
    "key",
)
CHECKBOXES = frozenset({"l_behind", "d_eligible", "critical"})
KEY = re.compile(r"console:[0-9a-f]{32}")
SAMPLE = 5  # recipients listed under the live count
LIST_LIMIT = 50
POLL_MS = 1000
TEMPLATE_ID_MAX = 128  # the column sizes of `broadcasts`
URL_MAX = 512


class FormError(DonorbotError):
    """A form value no service call would understand (a time, a stale form)."""


ERRORS = (AudienceError, ComposeError, BroadcastError, FormError)


@dataclass(frozen=True)
class Draft:
    """The form as the service's arguments."""

    spec: AudienceSpec
    composer: Composer
    send_at: datetime  # UTC
    critical: bool
    key: str
    url: str


def new_key() -> str:
    return f"console:{uuid.uuid4().hex}"


def values_of(source: Mapping[str, Any]) -> dict[str, str]:
    """The form's (or a JSON object's) fields as text: "" when absent, or a file."""
    out = {}
    for name in FIELDS:
        value = source.get(name, "")
        if isinstance(value, bool):  # a JSON body's checkbox
            value = "1" if value else ""
        elif isinstance(value, int):  # a JSON body's month
            value = str(value)
        text = value if isinstance(value, str) else ""
        out[name] = ("1" if text else "") if name in CHECKBOXES else text
    if out["audience"] not in KIND_NAMES:
        out["audience"] = out["audience"] or "liaisons"  # an unknown one: AudienceSpec says so
    if out["channel"] not in CHANNELS:
        out["channel"] = out["channel"] or "template"
    return out


def audience_of(code: str, v: Mapping[str, str]) -> AudienceSpec:
    """The AudienceSpec of the chosen kind's filters (the other kinds' fields are ignored)."""
    kind = v["audience"]
    month = None
    if kind == "liaisons" and v["l_month"].strip():
        text = v["l_month"].strip()
        if not text.isdigit():
            raise AudienceError(f"月份「{text}」应为 1～12 的数字")
        month = int(text)
    unit = v["l_unit"] if kind == "liaisons" else v["d_unit"] if kind == "donors" else ""
    return AudienceSpec(
        jurisdiction=code,
        kind=kind,  # type: ignore[arg-type]  # checked by AudienceSpec itself
        month=month,
        behind=kind == "liaisons" and bool(v["l_behind"]),
        blood_type=(v["d_blood_type"].strip() or None) if kind == "donors" else None,
        eligible=kind == "donors" and bool(v["d_eligible"]),
        unit=unit.strip() or None,
    )


def fields_of(text: str, channel: str) -> dict[str, str]:
    """`key=value` lines; for a customer-service text, `content=` takes the rest, newlines too."""
    text = text.replace("\r\n", "\n").strip("\n")
    if channel == "custom" and text.startswith("content="):
        return {"content": text.removeprefix("content=")}
    return parse_params([line for line in text.split("\n") if line.strip()])


def send_time(text: str, tz: str, now: datetime) -> datetime:
    """The form's datetime-local (the jurisdiction's local time) in UTC; empty → now."""
    text = text.strip()
    if not text:
        return now
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise FormError(f"发送时间「{text}」无法识别，例如 2026-03-05T09:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(tz))
    return when.astimezone(UTC)


def draft_of(request: web.Request, code: str, v: Mapping[str, str]) -> Draft:
    spec = audience_of(code, v)
    if len(v["template_id"].strip()) > TEMPLATE_ID_MAX:
        raise FormError(f"模板 ID 不能超过 {TEMPLATE_ID_MAX} 个字符")
    if len(v["url"].strip()) > URL_MAX:
        raise FormError(f"链接不能超过 {URL_MAX} 个字符")
    composer = Composer(v["channel"], v["template_id"], fields_of(v["fields"], v["channel"]))
    tz = settings(request).jurisdiction(code).timezone
    return Draft(
        spec,
        composer,
        send_time(v["send_at"], tz, clock(request).now()),
        bool(v["critical"]),
        v["key"],
        v["url"].strip(),
    )


def _json(data: Any, status: int = 200) -> web.Response:
    resp = web.json_response(data, status=status, dumps=partial(json.dumps, ensure_ascii=False))
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def _local(request: web.Request, code: str, when: datetime | None) -> str:
    if when is None:
        return ""
    tz = ZoneInfo(settings(request).jurisdiction(code).timezone)
    return f"{_utc(when).astimezone(tz):%Y-%m-%d %H:%M}"


def _place(request: web.Request, code: str) -> Any:
    return settings(request).jurisdiction(code)


# ---- the list ------------------------------------------------------------------------------


async def broadcasts_home(request: web.Request) -> web.Response:
    _, code = await staff_for(request)
    now = clock(request).now()
    async with sessions(request)() as s:
        rows = await list_broadcasts(s, code, LIST_LIMIT)
        found = [(row, await progress(s, row.id)) for row in rows]
    items = [
        {
            "id": row.id,
            "created": _local(request, code, row.created_at),
            "send_at": _local(request, code, row.send_at),
            "scheduled": _utc(row.send_at) > _utc(row.created_at) + timedelta(minutes=1),
            "audience": row.audience_text,
            "channel": CHANNELS.get(row.channel, row.channel),
            "kind": row.kind,
            "critical": row.critical,
            "p": p,
            "state": _state(p, now),
        }
        for row, p in found
    ]
    return page(request, "broadcasts.html", items=items, limit=LIST_LIMIT)


def _state(p: Progress, now: datetime) -> str:
    if p.status == "cancelled":
        return "已取消"
    if p.done:
        return "已完成"
    if _utc(p.send_at) > now and not any(p.counts[k] for k in ("sending", "sent", "failed")):
        return "定时待发"
    return "发送中"


# ---- compose, the live count and preview, confirm, create ----------------------------------


async def compose(request: web.Request) -> web.Response:
    """The empty form, or the one the confirm page's 「返回修改」 link fills in (same key)."""
    _, code = await staff_for(request)
    v = values_of(request.query)
    if not KEY.fullmatch(v["key"]):
        v["key"] = new_key()
    return _compose_page(request, code, v)


def _compose_page(
    request: web.Request,
    code: str,
    v: Mapping[str, str],
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    place = _place(request, code)
    return page(
        request,
        "broadcasts_new.html",
        status=status,
        v=v,
        error=error,
        kinds=KIND_NAMES,
        channels=CHANNELS,
        blood_types=BLOOD_TYPES,
        place=place.name,
        timezone=place.timezone,
        quiet_hours=place.quiet_hours,
        now=f"{clock(request).now().astimezone(ZoneInfo(place.timezone)):%Y-%m-%dT%H:%M}",
        bc=f"/console/j/{code}/broadcasts",
    )


async def _posted(request: web.Request) -> Mapping[str, Any]:
    """The POSTed fields: a form (read by the CSRF middleware), or a JSON object."""
    if FORM in request:
        return form(request)
    try:
        data = await request.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="请求应为表单或 JSON 对象。", content_type="text/plain")
    return data


def _recipient(r: Any) -> dict[str, Any]:
    return {
        "unit": r.unit or "",
        "role": ROLE_NAMES.get(r.role, r.role),
        "params": dict(r.params),
    }


async def audience_json(request: web.Request) -> web.Response:
    """GET …/audience?audience=liaisons&l_month=3 → {count, audience, sample: [{unit, role,
    params}]}; a bad audience → {error} with status 400."""
    _, code = await staff_for(request)
    v = values_of(request.query)
    try:
        spec = audience_of(code, v)
        async with sessions(request)() as s:
            count, first = await preview(s, spec, today=today(request, code), limit=SAMPLE)
    except AudienceError as exc:
        return _json({"error": str(exc)}, status=400)
    return _json(
        {
            "count": count,
            "audience": spec.describe(_place(request, code).name),
            "sample": [_recipient(r) for r in first],
        }
    )


async def preview_json(request: web.Request) -> web.Response:
    """POST …/preview (X-CSRF-Token) with the form's fields → what the first recipient who
    will get it sees: {count, channel, recipient, shown, hidden}; else {error}, status 400."""
    _, code = await staff_for(request)
    v = values_of(await _posted(request))
    try:
        draft = draft_of(request, code, v)
        async with sessions(request)() as s:
            skip = set() if draft.critical else await opted_out(s, code)
            # the first who is not opted out is among the first len(skip) + 1
            count, first = await preview(
                s, draft.spec, today=today(request, code), limit=len(skip) + 1
            )
        chosen = next((r for r in first if r.openid not in skip), None)
        if chosen is None:
            why = "（均已退订）" if count else ""
            raise FormError(f"受众「{draft.spec.describe()}」中没有可发送的人{why}，无法预览")
        payload = draft.composer.render(chosen.params)
    except ERRORS as exc:
        return _json({"error": str(exc)}, status=400)
    visible = shown(payload, draft.composer.channel)
    return _json(
        {
            "count": count,
            "channel": draft.composer.channel,
            "recipient": _recipient(chosen),
            "shown": visible,
            "hidden": sorted(payload.keys() - visible.keys()),
        }
    )


async def confirm(request: web.Request) -> web.Response:
    """The dry run: who, how many (and how many opted out), and a sample of the exact text."""
    staff, code = await staff_for(request)
    v = values_of(form(request))
    if not KEY.fullmatch(v["key"]):
        v["key"] = new_key()
    used = None
    try:
        draft = draft_of(request, code, v)
        async with sessions(request)() as s:
            made = await create_broadcast(
                s, **_create_args(request, code, draft), creator=audit_actor(staff), dry_run=True
            )
            if not made.created:  # this form was sent already (the user came back to it)
                used, v = made.id, {**v, "key": new_key()}
                made = await create_broadcast(
                    s,
                    **_create_args(request, code, draft, v["key"]),
                    creator=audit_actor(staff),
                    dry_run=True,
                )
    except ERRORS as exc:
        return _compose_page(request, code, v, error=str(exc), status=400)
    place = _place(request, code)
    return page(
        request,
        "broadcasts_confirm.html",
        v=v,
        made=made,
        used=used,
        channel=CHANNELS[draft.composer.channel],
        hidden=sorted(
            draft.composer.fields.keys() - (made.sample[0][1].keys() if made.sample else set())
        ),
        send_at=_local(request, code, draft.send_at) if v["send_at"].strip() else "",
        quiet_hours=place.quiet_hours,
        edit=f"/console/j/{code}/broadcasts/new?{urlencode(v)}",
        bc=f"/console/j/{code}/broadcasts",
    )


def _create_args(
    request: web.Request, code: str, draft: Draft, key: str | None = None
) -> dict[str, Any]:
    return {
        "spec": draft.spec,
        "composer": draft.composer,
        "send_at": draft.send_at,
        "today": today(request, code),
        "critical": draft.critical,
        "key": key or draft.key,
        "url": draft.url,
    }


async def create(request: web.Request) -> web.Response:
    staff, code = await staff_for(request)
    v = values_of(form(request))
    try:
        if not KEY.fullmatch(v["key"]):
            v["key"] = new_key()
            raise FormError("表单缺少提交编号（可能已过期）：请检查后点击「预览并确认」重新提交")
        draft = draft_of(request, code, v)
        async with sessions(request)() as s:
            made = await create_broadcast(
                s, **_create_args(request, code, draft), creator=audit_actor(staff)
            )
    except ERRORS as exc:
        return _compose_page(request, code, v, error=str(exc), status=400)
    raise web.HTTPSeeOther(f"/console/j/{code}/broadcasts/{made.id}")


# ---- progress, cancel, retry ---------------------------------------------------------------


async def _own(request: web.Request) -> tuple[Staff, str, Progress]:
    """The broadcast of the URL, if it belongs to the URL's jurisdiction (which the user may
    see); another place's broadcast is answered exactly like a missing one."""
    staff, code = await staff_for(request)
    broadcast_id = int(request.match_info["id"])
    async with sessions(request)() as s:
        try:
            p = await progress(s, broadcast_id)
        except BroadcastError:
            p = None
    if p is None or p.jurisdiction != code:
        raise web.HTTPNotFound(
            text=f"本辖区没有编号为 {broadcast_id} 的群发。", content_type="text/plain"
        )
    return staff, code, p


def progress_data(p: Progress, now: datetime) -> dict[str, Any]:
    finished = p.counts["sent"] + p.counts["failed"] + p.counts["skipped"]
    return {
        "id": p.id,
        "status": p.status,
        "state": _state(p, now),
        "done": p.done,
        "total": p.total,
        "finished": finished,
        "percent": round(100 * finished / p.total) if p.total else 100,
        "counts": p.counts,
        "errors": [{"reason": reason, "count": n} for reason, n in p.errors],
    }


async def progress_json(request: web.Request) -> web.Response:
    """{id, status, state, done, total, finished, percent, counts: {pending, sending, sent,
    failed, skipped}, errors: [{reason, count}]}."""
    _, _, p = await _own(request)
    return _json(progress_data(p, clock(request).now()))


async def show(request: web.Request) -> web.Response:
    _, code, p = await _own(request)
    return await _show_page(request, code, p, note=_note(request.query))


def _note(query: Mapping[str, str]) -> str | None:
    n = query.get("n", "")
    if not n.isdigit():
        return None
    if query.get("did") == "cancel":
        return f"已取消：{n} 条尚未发送的消息不再发送。"
    if query.get("did") == "retry":
        return f"已重新排队 {n} 条失败的消息。"
    return None


async def _show_page(
    request: web.Request,
    code: str,
    p: Progress,
    *,
    note: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    async with sessions(request)() as s:
        row = await s.get(Broadcast, p.id)
    assert row is not None
    data = progress_data(p, clock(request).now())
    return page(
        request,
        "broadcasts_show.html",
        status=status,
        p=p,
        row=row,
        data=data,
        channel=CHANNELS.get(row.channel, row.channel),
        created=_local(request, code, row.created_at),
        send_at=_local(request, code, row.send_at),
        note=note,
        error=error,
        poll_ms=POLL_MS,
        bc=f"/console/j/{code}/broadcasts",
    )


async def cancel_broadcast(request: web.Request) -> web.Response:
    staff, code, p = await _own(request)
    try:
        async with sessions(request)() as s:
            n = await cancel(s, p.id, audit_actor(staff))
    except BroadcastError as exc:
        return await _show_page(request, code, p, error=str(exc), status=400)
    raise web.HTTPSeeOther(f"/console/j/{code}/broadcasts/{p.id}?did=cancel&n={n}")


async def retry_broadcast(request: web.Request) -> web.Response:
    staff, code, p = await _own(request)
    try:
        async with sessions(request)() as s:
            n = await retry_failed(s, p.id, audit_actor(staff), clock(request).now())
    except BroadcastError as exc:
        return await _show_page(request, code, p, error=str(exc), status=400)
    raise web.HTTPSeeOther(f"/console/j/{code}/broadcasts/{p.id}?did=retry&n={n}")


def register(app: web.Application) -> None:
    base = "/j/{code}/broadcasts"
    app.router.add_get(base, broadcasts_home)
    app.router.add_post(base, create)
    app.router.add_get(base + "/new", compose)
    app.router.add_post(base + "/new", confirm)
    app.router.add_get(base + "/audience", audience_json)
    app.router.add_post(base + "/preview", preview_json)
    app.router.add_get(base + r"/{id:\d{1,9}}", show)
    app.router.add_get(base + r"/{id:\d{1,9}}/progress.json", progress_json)
    app.router.add_post(base + r"/{id:\d{1,9}}/cancel", cancel_broadcast)
    app.router.add_post(base + r"/{id:\d{1,9}}/retry", retry_broadcast)
