"""The fake's state: accounts, tokens, users, windows, quotas, sent messages, faults."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import json
import secrets
from collections import Counter, defaultdict, deque
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
TEMPLATE_PATH = "/cgi-bin/message/template/send"
SUBSCRIBE_PATH = "/cgi-bin/message/subscribe/bizsend"
CUSTOM_PATH = "/cgi-bin/message/custom/send"
# Daily quota per account and API; the 服务号 template allowance is 100,000 a day.
DEFAULT_DAILY_QUOTAS: dict[str, int] = {TEMPLATE_PATH: 100_000}
CLIENT_MSG_ID_WINDOW = 600  # documented: a repeated (openid, client_msg_id) is dropped 10 min
TEMPLATE_SHOWN_CHARS = 20  # since 2023-05: longer values are cut and end in 「…」
TEMPLATE_HIDDEN_FIELDS = frozenset({"first", "remark"})  # since 2023-05: no longer shown
BEIJING_OFFSET = 8 * 3600  # WeChat's day is Beijing's (no daylight saving)
# Subscription-notice keywords are typed by name (thing1, phrase2, …); too long → 47003.
SUBSCRIBE_VALUE_LIMITS = {
    "thing": 20,
    "phrase": 5,
    "name": 10,
    "number": 32,
    "letter": 32,
    "symbol": 5,
    "character_string": 32,
}
USER_STATES = frozenset({"follower", "unsubscribed", "blocked", "refused", "invalid"})
_COMMON_MSGTYPES = frozenset({"text", "image", "voice", "video", "news", "mpnews"})
MP_MSGTYPES = _COMMON_MSGTYPES | {"music", "mpnewsarticle", "msgmenu", "wxcard", "miniprogrampage"}
WECOM_MSGTYPES = _COMMON_MSGTYPES | {"file", "textcard", "markdown", "template_card"}
ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40008: "invalid message type",
    40013: "invalid appid",
    40014: "invalid access_token",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41011: "missing agentid",
    42001: "access_token expired",
    43004: "require subscribe",
    43019: "require remove blacklist",
    43101: "user refuse to accept the msg",
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
    47003: "argument invalid! data.value invalid",
    48002: "api blocked: user refuses to receive messages",
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
    """What requests to a path suffer.

    Count-based (default): the next `times` requests in a row. Time-based: with
    `seconds`, every request for that long by the fake's clock (`times` is ignored).
    Per-user: with `openids`, every request addressed to one of those users (for
    `seconds` if given, else until reset), after the access_token has been checked.
    """

    errcode: int | None = None
    status: int | None = None
    latency: float = 0.0
    drop: bool = False
    times: int = 1
    seconds: float | None = None
    openids: frozenset[str] | None = None
    until: float | None = None  # set when a time-limited fault is added


class MessageLog(list[dict[str, Any]]):
    """The accepted messages, oldest first, indexed by recipient so lookups are not scans.

    A plain list to its readers (tests compare it to [] and slice it); `clear()` also
    clears the index. Only `append` and `clear` keep the index right.
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_touser: dict[str, list[int]] = defaultdict(list)

    def append(self, message: dict[str, Any]) -> None:
        message["seq"] = len(self)
        self.by_touser[message["touser"]].append(len(self))
        super().append(message)

    def clear(self) -> None:
        super().clear()
        self.by_touser.clear()

    def select(
        self,
        *,
        touser: str | None = None,
        appid: str | None = None,
        msgtype: str | None = None,
        since: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Messages at index >= `since` matching every filter given, at most `limit`."""
        since = max(since, 0)
        if touser is not None:
            positions = self.by_touser.get(touser, [])
            candidates: Any = (self[i] for i in positions[bisect.bisect_left(positions, since) :])
        else:
            candidates = itertools.islice(self, since, None)
        found: list[dict[str, Any]] = []
        for message in candidates:
            if appid is not None and message["appid"] != appid:
                continue
            if msgtype is not None and message["msgtype"] != msgtype:
                continue
            found.append(message)
            if limit is not None and len(found) >= limit:
                break
        return found


class FakeWeChat:
    """WeChat's state: accounts, tokens, customer-service windows, sent messages, faults."""

    def __init__(
        self,
        accounts: dict[str, str],
        clock: Clock | None = None,
        wecom: dict[str, str] | None = None,
        enforce_window: bool = True,
        *,
        quotas: dict[str, int] | None = None,
    ) -> None:
        self.accounts = dict(accounts)
        self.wecom = dict(wecom or {})
        self.clock: Clock = clock or SystemClock()
        self.enforce_window = enforce_window
        # path → daily limit per account (None: unlimited); survives reset()
        self.quotas: dict[str, int | None] = {**DEFAULT_DAILY_QUOTAS, **(quotas or {})}
        self._account_quotas: dict[tuple[str, str], int | None] = {}
        # appid → (url, token, the account's gh_ id) for TEMPLATESENDJOBFINISH; survives reset()
        self.callbacks: dict[str, tuple[str, str, str]] = {}
        self.reset()

    def reset(self) -> None:
        """Forget tokens, windows, messages, users, quotas used, faults and counters.

        Accounts and configured quota limits stay.
        """
        self.messages = MessageLog()
        self.menus: dict[str, dict[str, Any]] = {}  # appid → the menu last created
        self.token_requests = 0
        self.force_refreshes = 0
        self.dropped_repeats = 0
        self.reports_delivered = 0  # TEMPLATESENDJOBFINISH events the callback URL took
        self.reports_failed = 0
        self.accepted: Counter[str] = Counter()  # path → messages accepted
        self._recipients: Counter[tuple[str, str]] = Counter()  # (appid, touser) → messages
        self.repeat_recipients = 0  # recipients that received more than one message
        self._tokens: dict[str, Token] = {}
        self._current: dict[tuple[str, str], str] = {}
        self._windows: dict[tuple[str, str], _Window] = {}
        self._forced: dict[str, list[tuple[date, float]]] = defaultdict(list)
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._timed_faults: dict[str, list[Fault]] = defaultdict(list)
        self._user_faults: dict[str, dict[str, Fault]] = defaultdict(dict)
        self._user_states: dict[tuple[str, str], str] = {}
        # (appid, openid, template_id) → sends left; None: long-term acceptance
        self._accepted_templates: dict[tuple[str, str, str], int | None] = {}
        self._used: dict[tuple[str, str], tuple[int, int]] = {}  # (appid, path) → (day, used)
        self._client_msg_ids: dict[tuple[str, str, str], tuple[float, int]] = {}
        self._client_msg_order: deque[tuple[float, tuple[str, str, str]]] = deque()
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
        self.force_refreshes += 1
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

    def record(
        self,
        appid: str,
        payload: dict[str, Any],
        content: str,
        *,
        path: str = CUSTOM_PATH,
        msgtype: str | None = None,
        **extra: Any,
    ) -> int:
        """Keep an accepted message and count it (constant time: 100,000 must be cheap)."""
        self._msgid += 1
        touser = payload["touser"]
        self.messages.append(
            {
                "appid": appid,
                "touser": touser,
                "msgtype": msgtype or payload["msgtype"],
                "content": content,
                "payload": payload,
                "at": self.clock.timestamp(),
                "msgid": self._msgid,
                "path": path,
                **extra,
            }
        )
        self.accepted[path] += 1
        self._recipients[(appid, touser)] += 1
        if self._recipients[(appid, touser)] == 2:
            self.repeat_recipients += 1
        return self._msgid

    def stats(self) -> dict[str, Any]:
        return {
            "token_requests": self.token_requests,
            "force_refreshes": self.force_refreshes,
            "messages": len(self.messages),
            "accepted": dict(self.accepted),
            "recipients": len(self._recipients),
            "repeat_recipients": self.repeat_recipients,
            "dropped_repeats": self.dropped_repeats,
            "reports_delivered": self.reports_delivered,
            "reports_failed": self.reports_failed,
        }

    # -- users ------------------------------------------------------------------------

    def set_user_state(self, appid: str, openid: str, state: str, *, times: int | None = 1) -> None:
        """What WeChat knows about a user of `appid` (every openid is a follower by default).

        "follower" | "unsubscribed" (43004) | "blocked" (43019, the account is blacklisted)
        | "refused" (48002, the user turned off messages) | "invalid" (40003, not a user of
        this account); "subscribed_template:<tid>" lets `times` subscription notices of
        template <tid> through (`times=None`: long-term), "unsubscribed_template:<tid>"
        withdraws that.
        """
        if appid not in self.accounts:
            raise KeyError(appid)
        if not openid:
            raise ValueError("openid is empty")
        kind, _, template_id = state.partition(":")
        if kind in ("subscribed_template", "unsubscribed_template"):
            if not template_id:
                raise ValueError(f"{kind} needs a template id: {kind}:<template_id>")
            key = (appid, openid, template_id)
            if kind == "unsubscribed_template":
                self._accepted_templates.pop(key, None)
            elif times is None:
                self._accepted_templates[key] = None
            elif times < 1:
                raise ValueError("times must be >= 1 (or null for long-term)")
            else:
                self._accepted_templates[key] = (self._accepted_templates.get(key) or 0) + times
            return
        if state not in USER_STATES:
            raise ValueError(f"unknown state {state!r}")
        if state == "follower":
            self._user_states.pop((appid, openid), None)
        else:
            self._user_states[(appid, openid)] = state

    def check_recipient(self, appid: str, openid: Any, *, channel: str) -> str:
        """The openid if `appid` may message it on `channel` (template|custom|subscribe)."""
        if not isinstance(openid, str) or not openid:
            raise WeChatError(40003)
        state = self._user_states.get((appid, openid))
        if state is None:
            return openid
        if state == "invalid":
            raise WeChatError(40003)
        if channel == "subscribe":
            raise WeChatError(43101)  # gone or blocked: no notice gets through
        if state == "unsubscribed":
            # custom/send answers "response out of time limit or subscription is canceled"
            raise WeChatError(45015 if channel == "custom" else 43004)
        raise WeChatError(43019 if state == "blocked" else 48002)

    def take_subscription(self, appid: str, openid: str, template_id: str) -> None:
        """Use one acceptance of a subscription notice, or raise 43101."""
        key = (appid, openid, template_id)
        if key not in self._accepted_templates:
            raise WeChatError(43101)
        left = self._accepted_templates[key]
        if left is None:
            return
        if left <= 1:
            del self._accepted_templates[key]
        else:
            self._accepted_templates[key] = left - 1

    def set_callback(
        self, appid: str, url: str | None, token: str = "", to: str = "gh_fake"
    ) -> None:
        """Report TEMPLATESENDJOBFINISH for `appid` to `url`, signed with `token` (None: stop)."""
        if appid not in self.accounts:
            raise KeyError(appid)
        if url is None:
            self.callbacks.pop(appid, None)
            return
        if not url.startswith(("http://", "https://")) or not token:
            raise ValueError("a callback needs an http(s) url and the account's token")
        self.callbacks[appid] = (url, token, to)

    # -- quotas and repeats -----------------------------------------------------------

    def set_quota(self, path: str, limit: int | None, appid: str | None = None) -> None:
        """Daily limit of `path` for one account, or (appid None) for every account."""
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0 or null")
        if appid is None:
            self.quotas[path] = limit
            return
        if appid not in self.accounts and appid not in self.wecom:
            raise KeyError(appid)
        self._account_quotas[(appid, path)] = limit

    def quota_left(self, appid: str, path: str) -> int | None:
        limit = self._account_quotas.get((appid, path), self.quotas.get(path))
        if limit is None:
            return None
        day, used = self._used.get((appid, path), (-1, 0))
        return limit - (used if day == self._beijing_day() else 0)

    def check_quota(self, appid: str, path: str) -> None:
        left = self.quota_left(appid, path)
        if left is not None and left <= 0:
            raise WeChatError(45009)

    def use_quota(self, appid: str, path: str, count: int = 1) -> None:
        today = self._beijing_day()
        day, used = self._used.get((appid, path), (today, 0))
        self._used[(appid, path)] = (today, (used if day == today else 0) + count)

    def _beijing_day(self) -> int:
        return int((self.clock.timestamp() + BEIJING_OFFSET) // 86400)

    def first_send(self, appid: str, openid: str, client_msg_id: str) -> int | None:
        """The msgid of a send of this (openid, client_msg_id) in the last 10 minutes."""
        now = self.clock.timestamp()
        order = self._client_msg_order
        while order and order[0][0] <= now - CLIENT_MSG_ID_WINDOW:
            at, key = order.popleft()
            if self._client_msg_ids.get(key, (None,))[0] == at:
                del self._client_msg_ids[key]
        seen = self._client_msg_ids.get((appid, openid, client_msg_id))
        if seen is None or seen[0] <= now - CLIENT_MSG_ID_WINDOW:
            return None
        self.dropped_repeats += 1
        return seen[1]

    def remember_send(self, appid: str, openid: str, client_msg_id: str, msgid: int) -> None:
        now, key = self.clock.timestamp(), (appid, openid, client_msg_id)
        self._client_msg_ids[key] = (now, msgid)
        self._client_msg_order.append((now, key))

    # -- faults -----------------------------------------------------------------------

    def add_fault(self, path: str, fault: Fault) -> None:
        """Queue a count-based fault, or start a time-based or per-user one."""
        if not (fault.errcode is not None or fault.status or fault.latency or fault.drop):
            raise ValueError("a fault needs errcode, status, latency or drop")
        if fault.seconds is not None and fault.seconds <= 0:
            raise ValueError("seconds must be > 0")
        fault = dataclasses.replace(fault)  # the copy counts down
        if fault.seconds is not None:
            fault.until = self.clock.timestamp() + fault.seconds
        if fault.openids is not None:
            if not fault.openids:
                raise ValueError("openids is empty")
            for openid in fault.openids:
                self._user_faults[path][openid] = fault
        elif fault.seconds is not None:
            self._timed_faults[path].append(fault)
        elif fault.times < 1:
            raise ValueError("times must be >= 1")
        else:
            self._faults[path].append(fault)

    def clear_faults(self, path: str | None = None) -> None:
        for faults in (self._faults, self._timed_faults, self._user_faults):
            if path is None:
                faults.clear()
            else:
                faults.pop(path, None)

    def take_fault(self, path: str) -> Fault | None:
        """The fault the next request to `path` suffers: a time-based one first."""
        timed = self._timed_faults.get(path)
        if timed:
            now = self.clock.timestamp()
            timed[:] = [f for f in timed if f.until is not None and f.until > now]
            if timed:
                return timed[0]
        queue = self._faults.get(path)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times == 0:
            queue.popleft()
        return fault

    def user_fault(self, path: str, openid: str) -> Fault | None:
        """The per-user fault for `openid` on `path`, if one is set and not over."""
        faults = self._user_faults.get(path)
        if not faults or (fault := faults.get(openid)) is None:
            return None
        if fault.until is not None and fault.until <= self.clock.timestamp():
            del faults[openid]
            return None
        return fault
