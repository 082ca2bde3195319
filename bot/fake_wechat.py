"""A fake of WeChat's server API, written from the documented behaviour, for tests and demos.

It issues and checks access_tokens (`/cgi-bin/token`, `/cgi-bin/stable_token`, WeCom
`/cgi-bin/gettoken`), accepts customer-service and WeCom text messages under WeChat's
rules (the 48-hour window, 5 messages per window), and answers with WeChat's errcodes.
`/_fake/...` admin endpoints let a test register user interactions, inject faults
(errcodes, HTTP errors, latency, dropped connections), read what was sent and reset.
Time comes from the injected `Clock`, so expiry and windows are testable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import date
from typing import Any

from aiohttp import web

from bot.clock import Clock, SystemClock, local_now

TOKEN_LIFETIME = 7200
ROTATION_GRACE = 300  # old and new token both work this long during a rotation
FORCE_REFRESHES_PER_DAY = 20
FORCE_REFRESH_INTERVAL = 30  # a force refresh sooner than this after the last one is a no-op
SERVICE_WINDOW = 48 * 3600  # customer-service messages only this long after a user acts
SERVICE_MESSAGES_PER_WINDOW = 5
WECOM_TEXT_LIMIT = 2048  # bytes; WeCom truncates longer text
_COMMON_MSGTYPES = frozenset({"text", "image", "voice", "video", "news", "mpnews"})
MP_MSGTYPES = _COMMON_MSGTYPES | {"music", "mpnewsarticle", "msgmenu", "wxcard", "miniprogrampage"}
WECOM_MSGTYPES = _COMMON_MSGTYPES | {"file", "textcard", "markdown", "template_card"}
ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40008: "invalid message type",
    40013: "invalid appid",
    40014: "invalid access_token",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41011: "missing agentid",
    42001: "access_token expired",
    44002: "empty post data",
    44004: "empty content",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    47001: "data format error",
    81013: "user & party & tag all invalid",
}
_dumps = functools.partial(json.dumps, ensure_ascii=False)


class WeChatError(Exception):
    """Raised inside the fake; becomes a `{"errcode", "errmsg"}` answer with HTTP 200."""

    def __init__(self, errcode: int, errmsg: str | None = None) -> None:
        super().__init__(errcode)
        self.errcode = errcode
        self.errmsg = errmsg or ERRMSG.get(errcode, "error")


@dataclass
class _Token:
    owner: str  # appid or corpid
    family: str  # "token", "stable" or "wecom": WeChat keeps them apart
    expires_at: float
    revoked_at: float | None = None


@dataclass
class _Window:
    opened_at: float
    sent: int = 0


@dataclass
class Fault:
    """What the next request to a path suffers; `times` requests in a row."""

    errcode: int | None = None
    status: int | None = None
    latency: float = 0.0
    drop: bool = False
    times: int = 1


class FakeWeChat:
    """WeChat's state: accounts, tokens, customer-service windows, sent messages, faults."""

    def __init__(
        self,
        accounts: dict[str, str],
        clock: Clock | None = None,
        wecom: dict[str, str] | None = None,
        enforce_window: bool = True,
    ) -> None:
        self.accounts = dict(accounts)
        self.wecom = dict(wecom or {})
        self.clock: Clock = clock or SystemClock()
        self.enforce_window = enforce_window
        self.reset()

    def reset(self) -> None:
        """Forget tokens, windows, messages and faults (accounts stay)."""
        self.messages: list[dict[str, Any]] = []
        self.token_requests = 0
        self._tokens: dict[str, _Token] = {}
        self._current: dict[tuple[str, str], str] = {}
        self._windows: dict[tuple[str, str], _Window] = {}
        self._forced: dict[str, list[tuple[date, float]]] = defaultdict(list)
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._msgid = 2_000_000_000

    # -- tokens -----------------------------------------------------------------------

    def check_credentials(self, appid: str, secret: str, *, wecom: bool = False) -> None:
        known = self.wecom if wecom else self.accounts
        if not appid:
            raise WeChatError(41002, "corpid missing" if wecom else None)
        if not secret:
            raise WeChatError(41004, "corpsecret missing" if wecom else None)
        if appid not in known:
            raise WeChatError(40013, "invalid corpid" if wecom else None)
        if not secrets.compare_digest(known[appid], secret):
            raise WeChatError(40001, "invalid credential") if wecom else WeChatError(40125)

    def current_token(self, owner: str, family: str) -> tuple[str, _Token] | None:
        """The latest token of this family, if it still works."""
        value = self._current.get((owner, family), "")
        token = self._tokens.get(value)
        now = self.clock.timestamp()
        if token is None or token.expires_at <= now:
            return None
        if token.revoked_at is not None and token.revoked_at <= now:
            return None
        return value, token

    def issue_token(self, owner: str, family: str) -> tuple[str, _Token]:
        now = self.clock.timestamp()
        # Forget tokens dead for a day, so a long demo does not grow without bound.
        for value in [v for v, t in self._tokens.items() if t.expires_at < now - 86400]:
            del self._tokens[value]
        value = secrets.token_urlsafe(96)
        token = _Token(owner, family, now + TOKEN_LIFETIME)
        self._tokens[value] = token
        self._current[(owner, family)] = value
        return value, token

    def force_refresh(self, appid: str) -> tuple[str, _Token]:
        """stable_token with force_refresh: revoke the current token and issue another."""
        now = self.clock.timestamp()
        current = self.current_token(appid, "stable")
        history = self._forced[appid]
        if current and history and now - history[-1][1] < FORCE_REFRESH_INTERVAL:
            return current  # documented: too soon after the last one, nothing is refreshed
        today = local_now(self.clock, "Asia/Shanghai").date()  # WeChat's day is Beijing's
        if sum(1 for day, _ in history if day == today) >= FORCE_REFRESHES_PER_DAY:
            raise WeChatError(45009)
        history.append((today, now))
        if current:
            current[1].revoked_at = now
        return self.issue_token(appid, "stable")

    def check_access_token(self, value: str | None, *, wecom: bool = False) -> str:
        """The appid (or corpid) owning a usable token, or the errcode WeChat gives."""
        if not value:
            raise WeChatError(41001)
        token = self._tokens.get(value)
        if token is None or (token.family == "wecom") != wecom:
            raise WeChatError(40014 if wecom else 40001)
        now = self.clock.timestamp()
        if token.revoked_at is not None and token.revoked_at <= now:
            raise WeChatError(40014 if wecom else 40001)
        if token.expires_at <= now:
            raise WeChatError(42001)
        return token.owner

    # -- messages ---------------------------------------------------------------------

    def interact(self, appid: str, openid: str) -> None:
        """The user wrote to the account: opens a fresh 48-hour customer-service window."""
        if appid not in self.accounts:
            raise KeyError(appid)
        self._windows[(appid, openid)] = _Window(self.clock.timestamp())

    def take_service_slot(self, appid: str, openid: str) -> None:
        if not self.enforce_window:
            return
        window = self._windows.get((appid, openid))
        if window is None or self.clock.timestamp() - window.opened_at > SERVICE_WINDOW:
            raise WeChatError(45015)
        if window.sent >= SERVICE_MESSAGES_PER_WINDOW:
            raise WeChatError(45047)
        window.sent += 1

    def record(self, appid: str, payload: dict[str, Any], content: str) -> int:
        self._msgid += 1
        self.messages.append(
            {
                "appid": appid,
                "touser": payload["touser"],
                "msgtype": payload["msgtype"],
                "content": content,
                "payload": payload,
                "at": self.clock.timestamp(),
                "msgid": self._msgid,
            }
        )
        return self._msgid

    # -- faults -----------------------------------------------------------------------

    def add_fault(self, path: str, fault: Fault) -> None:
        if fault.times < 1 or not (
            fault.errcode is not None or fault.status or fault.latency or fault.drop
        ):
            raise ValueError("a fault needs errcode, status, latency or drop, and times >= 1")
        self._faults[path].append(dataclasses.replace(fault))  # the copy counts down

    def take_fault(self, path: str) -> Fault | None:
        queue = self._faults.get(path)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times == 0:
            queue.popleft()
        return fault


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


def _token_answer(value: str, token: _Token, fake: FakeWeChat, **extra: Any) -> web.Response:
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
