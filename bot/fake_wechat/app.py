"""The fake's HTTP side: WeChat's endpoints and the /_fake/* admin endpoints."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Any

from aiohttp import web

from bot.fake_wechat.state import (
    MP_MSGTYPES,
    ROTATION_GRACE,
    WECOM_MSGTYPES,
    WECOM_TEXT_LIMIT,
    FakeWeChat,
    Fault,
    Token,
    WeChatError,
    _dumps,
)

FAKE_KEY = web.AppKey("fake_wechat", FakeWeChat)
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
    if fault is not None:
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
    try:
        response: web.StreamResponse = await handler(request)
    except WeChatError as exc:
        return _error(exc)
    return response


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


async def custom_send(request: web.Request) -> web.Response:
    """POST /cgi-bin/message/custom/send: a customer-service message inside the window."""
    fake = request.app[FAKE_KEY]
    appid = fake.check_access_token(request.query.get("access_token"))
    body = await _wechat_json(request)
    if not isinstance(body.get("touser"), str) or not body["touser"]:
        raise WeChatError(47001)
    content = _message_content(body, MP_MSGTYPES)
    fake.take_service_slot(appid, body["touser"])
    fake.record(appid, body, content)
    return _answer({"errcode": 0, "errmsg": "ok"})


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
    """GET /_fake/messages[?touser=&appid=]: accepted messages, oldest first."""
    wanted = {k: request.query[k] for k in ("touser", "appid") if k in request.query}
    messages = [
        m for m in request.app[FAKE_KEY].messages if all(m[k] == v for k, v in wanted.items())
    ]
    return _answer({"messages": messages})


async def admin_interactions(request: web.Request) -> web.Response:
    """POST /_fake/interactions {"appid", "openid"}: the user just wrote to the account."""
    body = await _admin_json(request)
    try:
        request.app[FAKE_KEY].interact(str(body["appid"]), str(body["openid"]))
    except KeyError as exc:
        raise web.HTTPBadRequest(text=f"unknown or missing {exc}") from None
    return _answer({"ok": True})


async def admin_faults(request: web.Request) -> web.Response:
    """POST /_fake/faults {"path", errcode|status|latency|drop, "times"}: queue a fault."""
    body = await _admin_json(request)
    try:
        fault = Fault(
            errcode=None if body.get("errcode") is None else int(body["errcode"]),
            status=None if body.get("status") is None else int(body["status"]),
            latency=float(body.get("latency", 0.0)),
            drop=bool(body.get("drop", False)),
            times=int(body.get("times", 1)),
        )
        request.app[FAKE_KEY].add_fault(str(body["path"]), fault)
    except (KeyError, TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"bad fault: {exc}") from None
    return _answer({"ok": True})


async def admin_reset(request: web.Request) -> web.Response:
    """POST /_fake/reset: forget tokens, windows, messages and faults."""
    request.app[FAKE_KEY].reset()
    return _answer({"ok": True})


async def admin_stats(request: web.Request) -> web.Response:
    """GET /_fake/stats: how many tokens were handed out and messages accepted."""
    fake = request.app[FAKE_KEY]
    return _answer({"token_requests": fake.token_requests, "messages": len(fake.messages)})


def create_fake_app(fake: FakeWeChat) -> web.Application:
    """The fake as an aiohttp application (run it with `run_fake` or a test server)."""
    app = web.Application(middlewares=[_wechat_middleware])
    app[FAKE_KEY] = fake
    app.router.add_get("/cgi-bin/token", get_token)
    app.router.add_post("/cgi-bin/stable_token", stable_token)
    app.router.add_get("/cgi-bin/gettoken", wecom_gettoken)
    app.router.add_post("/cgi-bin/message/custom/send", custom_send)
    app.router.add_post("/cgi-bin/message/send", wecom_send)
    app.router.add_post("/cgi-bin/menu/create", menu_create)
    app.router.add_get("/_fake/messages", admin_messages)
    app.router.add_post("/_fake/interactions", admin_interactions)
    app.router.add_post("/_fake/faults", admin_faults)
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
