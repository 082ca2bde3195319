"""The fake's HTTP side: WeChat's endpoints and the /_fake/* admin endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from typing import Any

import aiohttp
from aiohttp import web

from bot.fake_wechat.state import (
    CUSTOM_PATH,
    MP_MSGTYPES,
    ROTATION_GRACE,
    SUBSCRIBE_PATH,
    SUBSCRIBE_VALUE_LIMITS,
    TEMPLATE_HIDDEN_FIELDS,
    TEMPLATE_PATH,
    TEMPLATE_SHOWN_CHARS,
    WECOM_MSGTYPES,
    WECOM_TEXT_LIMIT,
    FakeWeChat,
    Fault,
    Token,
    WeChatError,
    _dumps,
)

FAKE_KEY = web.AppKey("fake_wechat", FakeWeChat)


class _Reports:
    """Event reports still being posted (a reference keeps each task alive)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()


_REPORTS_KEY = web.AppKey("fake_wechat_reports", _Reports)
# A \u escape starts at a backslash that is not itself escaped (an even run before it).
_UNICODE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u")


def _answer(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _error(exc: WeChatError) -> web.Response:
    # Real errmsgs end in a request id; clients must not compare errmsg strings.
    return _answer({"errcode": exc.errcode, "errmsg": f"{exc.errmsg} rid: {secrets.token_hex(6)}"})


async def _wechat_json(request: web.Request) -> dict[str, Any]:
    """The body as WeChat reads it: \\uXXXX escapes stay literal text, as users then see."""
    raw = await request.read()
    if not raw.strip():
        raise WeChatError(44002)
    try:
        body = json.loads(_UNICODE_ESCAPE.sub(r"\1\\\\u", raw.decode("utf-8")))
    except ValueError:
        raise WeChatError(47001) from None
    if not isinstance(body, dict):
        raise WeChatError(47001)
    return body


@web.middleware
async def _wechat_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Apply an injected fault, and turn `WeChatError` into WeChat's errcode answer."""
    fake = request.app[FAKE_KEY]
    fault = None if request.path.startswith("/_fake/") else fake.take_fault(request.path)
    if fault is not None and (suffered := await _suffer(request, fault)) is not None:
        return suffered
    try:
        response: web.StreamResponse = await handler(request)
    except WeChatError as exc:
        return _error(exc)
    return response


async def _suffer(request: web.Request, fault: Fault) -> web.StreamResponse | None:
    """Apply `fault`: the response to give instead of the real one (None: carry on)."""
    if fault.latency:
        await asyncio.sleep(fault.latency)
    if fault.drop:
        if request.transport is not None:
            request.transport.close()
        return web.Response()  # never written: aiohttp sees the closed connection
    if fault.status:
        return web.Response(
            status=fault.status, text="<html>fault</html>", content_type="text/html"
        )
    if fault.errcode is not None:
        return _error(WeChatError(fault.errcode))
    return None


async def _user_fault(request: web.Request, openid: str) -> web.StreamResponse | None:
    """A per-user fault set for this path and recipient, applied (None: there is none)."""
    fault = request.app[FAKE_KEY].user_fault(request.path, openid)
    return None if fault is None else await _suffer(request, fault)


def _token_answer(value: str, token: Token, fake: FakeWeChat, **extra: Any) -> web.Response:
    fake.token_requests += 1
    expires_in = int(token.expires_at - fake.clock.timestamp())
    return _answer({**extra, "access_token": value, "expires_in": expires_in})


async def get_token(request: web.Request) -> web.Response:
    """GET /cgi-bin/token: always a new token; the previous one dies 5 minutes later."""
    fake, query = request.app[FAKE_KEY], request.query
    if query.get("grant_type") != "client_credential":
        raise WeChatError(40002)
    appid = query.get("appid", "")
    fake.check_credentials(appid, query.get("secret", ""))
    previous = fake.current_token(appid, "token")
    if previous is not None:
        grace_end = fake.clock.timestamp() + ROTATION_GRACE
        previous[1].revoked_at = min(previous[1].revoked_at or grace_end, grace_end)
    return _token_answer(*fake.issue_token(appid, "token"), fake)


async def stable_token(request: web.Request) -> web.Response:
    """POST /cgi-bin/stable_token: the current token, renewed in its last 5 minutes."""
    fake, body = request.app[FAKE_KEY], await _wechat_json(request)
    if body.get("grant_type") != "client_credential":
        raise WeChatError(40002)
    appid, force = str(body.get("appid", "")), body.get("force_refresh", False)
    if not isinstance(force, bool):
        raise WeChatError(47001)
    fake.check_credentials(appid, str(body.get("secret", "")))
    if force:
        return _token_answer(*fake.force_refresh(appid), fake)
    current = fake.current_token(appid, "stable")
    if current is not None and current[1].expires_at - fake.clock.timestamp() > ROTATION_GRACE:
        return _token_answer(*current, fake)
    # The old token is not revoked: it stays valid for what is left of its life.
    return _token_answer(*fake.issue_token(appid, "stable"), fake)


async def wecom_gettoken(request: web.Request) -> web.Response:
    """GET /cgi-bin/gettoken (WeCom): the same token until it expires."""
    fake, query = request.app[FAKE_KEY], request.query
    corpid = query.get("corpid", "")
    fake.check_credentials(corpid, query.get("corpsecret", ""), wecom=True)
    current = fake.current_token(corpid, "wecom") or fake.issue_token(corpid, "wecom")
    return _token_answer(*current, fake, errcode=0, errmsg="ok")


def _message_content(body: dict[str, Any], msgtypes: frozenset[str]) -> str:
    msgtype = body.get("msgtype")
    if not isinstance(msgtype, str) or not msgtype:
        raise WeChatError(47001)
    if msgtype not in msgtypes:
        raise WeChatError(40008)
    detail = body.get(msgtype)
    if not isinstance(detail, dict):
        raise WeChatError(47001)
    if msgtype != "text":
        return _dumps(detail)
    content = detail.get("content")
    if not isinstance(content, str) or not content:
        raise WeChatError(44004)
    return content


async def custom_send(request: web.Request) -> web.StreamResponse:
    """POST /cgi-bin/message/custom/send: a customer-service message inside the window."""
    fake = request.app[FAKE_KEY]
    appid = fake.check_access_token(request.query.get("access_token"))
    body = await _wechat_json(request)
    if not isinstance(body.get("touser"), str) or not body["touser"]:
        raise WeChatError(47001)
    if (suffered := await _user_fault(request, body["touser"])) is not None:
        return suffered
    content = _message_content(body, MP_MSGTYPES)
    fake.check_recipient(appid, body["touser"], channel="custom")
    fake.check_quota(appid, CUSTOM_PATH)
    fake.take_service_slot(appid, body["touser"])
    fake.record(appid, body, content, path=CUSTOM_PATH)
    fake.use_quota(appid, CUSTOM_PATH)
    return _answer({"errcode": 0, "errmsg": "ok"})


def _template_data(data: Any) -> dict[str, str]:
    """{"keyword1": {"value": "3月"}} → {"keyword1": "3月"}; 47003 for a malformed value."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise WeChatError(47001)
    values: dict[str, str] = {}
    for key, field in data.items():
        if not isinstance(field, dict) or not isinstance(field.get("value"), str):
            raise WeChatError(47003, f"argument invalid! data.{key}.value invalid")
        values[key] = field["value"]
    return values


def _template_id(body: dict[str, Any]) -> str:
    template_id = body.get("template_id")
    if not isinstance(template_id, str) or not template_id.strip():
        raise WeChatError(40037)
    return template_id


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise WeChatError(47001)
    return value


def _shown(values: dict[str, str]) -> dict[str, str]:
    """What a follower sees of a template message since May 2023: no first/remark, 20 chars."""
    return {
        key: value if len(value) <= TEMPLATE_SHOWN_CHARS else value[:TEMPLATE_SHOWN_CHARS] + "…"
        for key, value in values.items()
        if key not in TEMPLATE_HIDDEN_FIELDS
    }


async def template_send(request: web.Request) -> web.StreamResponse:
    """POST /cgi-bin/message/template/send: a template message to a follower."""
    fake = request.app[FAKE_KEY]
    appid = fake.check_access_token(request.query.get("access_token"))
    body = await _wechat_json(request)
    touser = body.get("touser")
    if not isinstance(touser, str) or not touser:
        raise WeChatError(40003)
    if (suffered := await _user_fault(request, touser)) is not None:
        return suffered
    _template_id(body)
    values = _template_data(body.get("data"))
    _optional_str(body, "url")
    client_msg_id = _optional_str(body, "client_msg_id")
    if client_msg_id and (first := fake.first_send(appid, touser, client_msg_id)) is not None:
        return _answer({"errcode": 0, "errmsg": "ok", "msgid": first})  # dropped, not sent
    fake.check_recipient(appid, touser, channel="template")
    fake.check_quota(appid, TEMPLATE_PATH)
    shown = _shown(values)
    content = "\n".join(f"{key}：{value}" for key, value in shown.items())
    msgid = fake.record(appid, body, content, path=TEMPLATE_PATH, msgtype="template", shown=shown)
    fake.use_quota(appid, TEMPLATE_PATH)
    if client_msg_id:
        fake.remember_send(appid, touser, client_msg_id, msgid)
    _report_job_finished(request, appid, touser, msgid)
    return _answer({"errcode": 0, "errmsg": "ok", "msgid": msgid})


def _report_job_finished(request: web.Request, appid: str, openid: str, msgid: int) -> None:
    """Tell the account's server (if one is configured) that the template message went out.

    As WeChat does: a plaintext-mode event POSTed to the account's URL, signed with its
    token; the send's answer does not wait for it.
    """
    fake = request.app[FAKE_KEY]
    target = fake.callbacks.get(appid)
    if target is None:
        return
    url, token, to = target
    timestamp, nonce = str(int(fake.clock.timestamp())), str(secrets.randbelow(10**9))
    signature = hashlib.sha1("".join(sorted((token, timestamp, nonce))).encode()).hexdigest()  # noqa: S324
    xml = (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
        f"<MsgID>{msgid}</MsgID><Status><![CDATA[success]]></Status></xml>"
    )
    query = {"signature": signature, "timestamp": timestamp, "nonce": nonce, "openid": openid}
    task = asyncio.create_task(_post_event(request.app, url, query, xml.encode()))
    tasks = request.app[_REPORTS_KEY].tasks
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _post_event(app: web.Application, url: str, query: dict[str, str], xml: bytes) -> None:
    fake = app[FAKE_KEY]
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url,
                params=query,
                data=xml,
                headers={"Content-Type": "text/xml"},
                timeout=aiohttp.ClientTimeout(total=5),
            ) as response,
        ):
            await response.read()
            fake.reports_delivered += response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        fake.reports_failed += 1


async def _cancel_reports(app: web.Application) -> None:
    for task in list(app[_REPORTS_KEY].tasks):
        task.cancel()


def _check_subscribe_values(values: dict[str, str]) -> None:
    """Subscription notices refuse (47003) values too long for their keyword's type."""
    for key, value in values.items():
        kind = key.rstrip("0123456789")
        limit = SUBSCRIBE_VALUE_LIMITS.get(kind)
        if limit is not None and len(value) > limit:
            raise WeChatError(47003, f"argument invalid! data.{key}.value invalid")


async def subscribe_send(request: web.Request) -> web.StreamResponse:
    """POST /cgi-bin/message/subscribe/bizsend: a subscription notice the user accepted."""
    fake = request.app[FAKE_KEY]
    appid = fake.check_access_token(request.query.get("access_token"))
    body = await _wechat_json(request)
    touser = body.get("touser")
    if not isinstance(touser, str) or not touser:
        raise WeChatError(40003)
    if (suffered := await _user_fault(request, touser)) is not None:
        return suffered
    template_id = _template_id(body)
    values = _template_data(body.get("data"))
    _check_subscribe_values(values)
    _optional_str(body, "page")
    fake.check_recipient(appid, touser, channel="subscribe")
    fake.check_quota(appid, SUBSCRIBE_PATH)
    fake.take_subscription(appid, touser, template_id)
    content = "\n".join(f"{key}：{value}" for key, value in values.items())
    msgid = fake.record(appid, body, content, path=SUBSCRIBE_PATH, msgtype="subscribe")
    fake.use_quota(appid, SUBSCRIBE_PATH)
    return _answer({"errcode": 0, "errmsg": "ok", "msgid": msgid})


async def wecom_send(request: web.Request) -> web.Response:
    """POST /cgi-bin/message/send (WeCom app message): no window, text cut at 2048 bytes."""
    fake = request.app[FAKE_KEY]
    corpid = fake.check_access_token(request.query.get("access_token"), wecom=True)
    body = await _wechat_json(request)
    if body.get("agentid") in (None, ""):
        raise WeChatError(41011)
    if not any(body.get(key) for key in ("touser", "toparty", "totag")):
        raise WeChatError(81013)
    content = _message_content(body, WECOM_MSGTYPES)
    if body["msgtype"] == "text":
        content = content.encode()[:WECOM_TEXT_LIMIT].decode(errors="ignore")
    body.setdefault("touser", "")
    msgid = fake.record(corpid, body, content)
    nobody_invalid = dict.fromkeys(
        ("invaliduser", "invalidparty", "invalidtag", "unlicenseduser"), ""
    )
    return _answer({"errcode": 0, "errmsg": "ok", **nobody_invalid, "msgid": str(msgid)})


def _check_button(button: Any, top: bool) -> None:
    """WeChat's documented limits: names ≤ 16 bytes on top, ≤ 60 below; keys ≤ 128 bytes."""
    if not isinstance(button, dict) or not isinstance(button.get("name"), str):
        raise WeChatError(47001)
    if not button["name"] or len(button["name"].encode()) > (16 if top else 60):
        raise WeChatError(40018)
    subs = button.get("sub_button")
    if top and subs is not None:
        if not isinstance(subs, list) or not 1 <= len(subs) <= 5:
            raise WeChatError(40016)
        for sub in subs:
            _check_button(sub, top=False)
        return
    if button.get("type") not in {
        "click",
        "view",
        "miniprogram",
        "scancode_push",
        "location_select",
    }:
        raise WeChatError(40017)
    if button["type"] == "click":
        key = button.get("key")
        if not isinstance(key, str) or not key or len(key.encode()) > 128:
            raise WeChatError(40019)


async def menu_create(request: web.Request) -> web.Response:
    """POST /cgi-bin/menu/create: replaces the account's custom menu."""
    fake = request.app[FAKE_KEY]
    appid = fake.check_access_token(request.query.get("access_token"))
    body = await _wechat_json(request)
    buttons = body.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise WeChatError(40016)
    for button in buttons:
        _check_button(button, top=True)
    fake.menus[appid] = body
    return _answer({"errcode": 0, "errmsg": "ok"})


# -- admin endpoints (not WeChat's) -----------------------------------------------------


async def _admin_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body is not a JSON object")
    return body


async def admin_messages(request: web.Request) -> web.Response:
    """GET /_fake/messages[?touser=&appid=&msgtype=&since=&limit=]: accepted messages.

    Oldest first; `since` is an index into the log (each message has its `seq`), and
    `next` in the answer is the `since` that continues after what was returned.
    """
    query = request.query
    try:
        since = int(query.get("since", 0))
        limit = int(query["limit"]) if "limit" in query else None
    except ValueError:
        raise web.HTTPBadRequest(text="since and limit are integers") from None
    log = request.app[FAKE_KEY].messages
    messages = log.select(
        touser=query.get("touser"),
        appid=query.get("appid"),
        msgtype=query.get("msgtype"),
        since=since,
        limit=limit,
    )
    limited = limit is not None and len(messages) >= limit
    following = messages[-1]["seq"] + 1 if limited and messages else max(since, len(log))
    return _answer({"messages": messages, "next": following})


async def admin_interactions(request: web.Request) -> web.Response:
    """POST /_fake/interactions {"appid", "openid"}: the user just wrote to the account."""
    body = await _admin_json(request)
    try:
        request.app[FAKE_KEY].interact(str(body["appid"]), str(body["openid"]))
    except KeyError as exc:
        raise web.HTTPBadRequest(text=f"unknown or missing {exc}") from None
    return _answer({"ok": True})


async def admin_faults(request: web.Request) -> web.Response:
    """POST /_fake/faults {"path", errcode|status|latency|drop, "times"|"seconds", "openids"}."""
    body = await _admin_json(request)
    try:
        openids = body.get("openids")
        if openids is not None and (
            not isinstance(openids, list) or not all(isinstance(o, str) for o in openids)
        ):
            raise ValueError("openids must be a list of strings")
        fault = Fault(
            errcode=None if body.get("errcode") is None else int(body["errcode"]),
            status=None if body.get("status") is None else int(body["status"]),
            latency=float(body.get("latency", 0.0)),
            drop=bool(body.get("drop", False)),
            times=int(body.get("times", 1)),
            seconds=None if body.get("seconds") is None else float(body["seconds"]),
            openids=None if openids is None else frozenset(openids),
        )
        request.app[FAKE_KEY].add_fault(str(body["path"]), fault)
    except (KeyError, TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"bad fault: {exc}") from None
    return _answer({"ok": True})


async def admin_clear_faults(request: web.Request) -> web.Response:
    """DELETE /_fake/faults[?path=]: remove every fault (of one path)."""
    request.app[FAKE_KEY].clear_faults(request.query.get("path"))
    return _answer({"ok": True})


async def admin_users(request: web.Request) -> web.Response:
    """POST /_fake/users {"appid", "openid", "state", "times"?}: what WeChat knows of a user."""
    body = await _admin_json(request)
    try:
        times = body.get("times", 1)
        request.app[FAKE_KEY].set_user_state(
            str(body["appid"]),
            str(body["openid"]),
            str(body["state"]),
            times=None if times is None else int(times),
        )
    except KeyError as exc:
        raise web.HTTPBadRequest(text=f"unknown or missing {exc}") from None
    except (TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"bad user state: {exc}") from None
    return _answer({"ok": True})


async def admin_quota(request: web.Request) -> web.Response:
    """POST /_fake/quota {"path", "limit", "appid"?}: a daily limit (null: unlimited)."""
    body = await _admin_json(request)
    try:
        limit = body["limit"]
        appid = body.get("appid")
        request.app[FAKE_KEY].set_quota(
            str(body["path"]),
            None if limit is None else int(limit),
            None if appid is None else str(appid),
        )
    except KeyError as exc:
        raise web.HTTPBadRequest(text=f"unknown or missing {exc}") from None
    except (TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"bad quota: {exc}") from None
    return _answer({"ok": True})


async def admin_callbacks(request: web.Request) -> web.Response:
    """POST /_fake/callbacks {"appid", "url", "token"}: where TEMPLATESENDJOBFINISH goes.

    `url` null stops the reports for that account.
    """
    body = await _admin_json(request)
    try:
        url = body.get("url")
        request.app[FAKE_KEY].set_callback(
            str(body["appid"]), None if url is None else str(url), str(body.get("token", ""))
        )
    except KeyError as exc:
        raise web.HTTPBadRequest(text=f"unknown or missing {exc}") from None
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"bad callback: {exc}") from None
    return _answer({"ok": True})


async def admin_reset(request: web.Request) -> web.Response:
    """POST /_fake/reset: forget tokens, windows, users, messages, faults and counters."""
    request.app[FAKE_KEY].reset()
    return _answer({"ok": True})


async def admin_stats(request: web.Request) -> web.Response:
    """GET /_fake/stats: tokens handed out, messages accepted, recipients, dropped repeats."""
    return _answer(request.app[FAKE_KEY].stats())


def create_fake_app(fake: FakeWeChat) -> web.Application:
    """The fake as an aiohttp application (run it with `run_fake` or a test server)."""
    app = web.Application(middlewares=[_wechat_middleware])
    app[FAKE_KEY] = fake
    app[_REPORTS_KEY] = _Reports()
    app.on_cleanup.append(_cancel_reports)
    app.router.add_get("/cgi-bin/token", get_token)
    app.router.add_post("/cgi-bin/stable_token", stable_token)
    app.router.add_get("/cgi-bin/gettoken", wecom_gettoken)
    app.router.add_post(CUSTOM_PATH, custom_send)
    app.router.add_post(TEMPLATE_PATH, template_send)
    app.router.add_post(SUBSCRIBE_PATH, subscribe_send)
    app.router.add_post("/cgi-bin/message/send", wecom_send)
    app.router.add_post("/cgi-bin/menu/create", menu_create)
    app.router.add_get("/_fake/messages", admin_messages)
    app.router.add_post("/_fake/interactions", admin_interactions)
    app.router.add_post("/_fake/faults", admin_faults)
    app.router.add_delete("/_fake/faults", admin_clear_faults)
    app.router.add_post("/_fake/users", admin_users)
    app.router.add_post("/_fake/quota", admin_quota)
    app.router.add_post("/_fake/callbacks", admin_callbacks)
    app.router.add_post("/_fake/reset", admin_reset)
    app.router.add_get("/_fake/stats", admin_stats)
    return app


async def run_fake(host: str, port: int, fake: FakeWeChat) -> None:
    """Serve the fake on host:port until cancelled."""
    runner = web.AppRunner(create_fake_app(fake))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
