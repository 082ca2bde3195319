"""The fake's state: accounts, tokens, customer-service windows, sent messages, faults."""

from __future__ import annotations

import dataclasses
import functools
import json
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import date
from typing import Any

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
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
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
class Token:
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
        self.menus: dict[str, dict[str, Any]] = {}  # appid → the menu last created
        self.token_requests = 0
        self._tokens: dict[str, Token] = {}
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

    def current_token(self, owner: str, family: str) -> tuple[str, Token] | None:
        """The latest token of this family, if it still works."""
        value = self._current.get((owner, family), "")
        token = self._tokens.get(value)
        now = self.clock.timestamp()
        if token is None or token.expires_at <= now:
            return None
        if token.revoked_at is not None and token.revoked_at <= now:
            return None
        return value, token

    def issue_token(self, owner: str, family: str) -> tuple[str, Token]:
        now = self.clock.timestamp()
        # Forget tokens dead for a day, so a long demo does not grow without bound.
        for value in [v for v, t in self._tokens.items() if t.expires_at < now - 86400]:
            del self._tokens[value]
        value = secrets.token_urlsafe(96)
        token = Token(owner, family, now + TOKEN_LIFETIME)
        self._tokens[value] = token
        self._current[(owner, family)] = value
        return value, token

    def force_refresh(self, appid: str) -> tuple[str, Token]:
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
