"""Async client for the WeChat Official Account (mp) and WeCom server APIs.

One access_token per account is shared by every process through `Storage` (Redis in
scale-out mode) and refreshed single-flight under a storage lock, because WeChat
rate-limits token requests and a stable_token force refresh invalidates the token
every other process is using. Each process also keeps its own copy so the hot path
does not touch Redis on every call.

Errors: a non-zero errcode raises `WeChatAPIError`; anything that means "WeChat did
not answer properly" (timeout, connection reset, HTTP 5xx, a body that is not JSON)
raises `WeChatTransportError`. Neither message ever contains the secret or the token.
What to do about one (retry, wait for tomorrow's quota, give up with a reason) is
decided in one place, `bot.errors.classify_error`.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import time
from typing import Any, Literal

import aiohttp

from bot.errors import TOKEN_ERRCODES, WeChatAPIError, WeChatTransportError
from bot.storage import Storage

log = logging.getLogger(__name__)

Kind = Literal["mp", "wecom"]

# Refresh this long before WeChat's expiry: stable_token rotates the token in its last
# five minutes, and a token fetched just before that must not be used after it.
EXPIRY_MARGIN = 300.0
# WeChat says "expired" here, not "invalid": a normal stable_token call already returns
# a new token, so there is no reason to spend one of the 20 daily force refreshes.
EXPIRED_ERRCODE = 42001


class WeChatAPI:
    """Calls the WeChat API for one account, attaching a shared, cached access_token."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        storage: Storage,
        *,
        base_url: str,
        appid: str,
        secret: str,
        kind: Kind = "mp",
        agent_id: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        if kind == "wecom" and agent_id is None:
            raise ValueError("a WeCom application needs its agent_id")
        self._http = http
        self._storage = storage
        self._base_url = base_url.rstrip("/")
        self._appid = appid
        self._secret = secret
        self._kind = kind
        self._agent_id = agent_id
        self._timeout = timeout
        self._cache_key = f"wechat:token:{kind}:{appid}"
        self._lock_key = f"wechat:token-refresh:{appid}"
        # In-process copy: (token, time.monotonic() deadline).
        self._local: tuple[str, float] | None = None
        # Coroutines of this process queue here first, so twenty concurrent callers
        # take the storage lock once instead of twenty times.
        self._local_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"WeChatAPI(kind={self._kind!r}, appid={self._appid!r})"

    async def access_token(self, *, force_refresh: bool = False) -> str:
        """A valid access_token: this process's copy, the shared one, or a fresh one.

        `force_refresh=True` asks WeChat for a new token even if the cached one looks
        valid (mp: stable_token force mode, which invalidates the old token and is
        limited to 20 calls a day).
        """
        if not force_refresh:
            token = self._local_token()
            if token is not None:
                return token
        async with self._local_lock:
            if not force_refresh:
                token = self._local_token() or await self._shared_token()
                if token is not None:
                    return token
            async with self._storage.lock(self._lock_key, timeout=self._lock_timeout):
                # Another process may have refreshed while this one waited for the lock.
                if not force_refresh and (token := await self._shared_token()) is not None:
                    return token
                return await self._fetch_token(force_refresh=force_refresh)

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Call an API `path` with the access_token; the parsed JSON answer on errcode 0.

        A token WeChat rejects (40001, 40014, 42001) is replaced once and the call is
        retried once: WeChat rejected the request before acting on it.
        """
        token = await self.access_token()
        try:
            return await self._call_with(token, method, path, json, params)
        except WeChatAPIError as exc:
            if exc.errcode not in TOKEN_ERRCODES:
                raise
            log.info("WeChat rejected the access_token of %s (%s); refreshing", self, exc.errcode)
            token = await self._replace_token(token, exc.errcode)
            return await self._call_with(token, method, path, json, params)

    async def send_text(self, openid: str, content: str) -> dict[str, Any]:
        """Send a text message to one user (mp: a customer-service message)."""
        if self._kind == "wecom":
            payload: dict[str, Any] = {
                "touser": openid,
                "msgtype": "text",
                "agentid": self._agent_id,
                "text": {"content": content},
            }
            return await self.call("POST", "/cgi-bin/message/send", json=payload)
        payload = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        return await self.call("POST", "/cgi-bin/message/custom/send", json=payload)

    async def send_template(
        self,
        openid: str,
        template_id: str,
        data: dict[str, str],
        *,
        url: str | None = None,
        client_msg_id: str | None = None,
    ) -> dict[str, Any]:
        """Send a template message (服务号); the answer carries WeChat's `msgid`.

        `client_msg_id` makes a resend safe: WeChat sends one message per (openid,
        client_msg_id) within 10 minutes and answers a repeat with the first msgid.
        Since May 2023 WeChat no longer shows the `first` and `remark` fields, and
        shows at most 20 characters of each value (the rest becomes 「…」).
        """
        self._mp_only("template messages")
        payload: dict[str, Any] = {"touser": openid, "template_id": template_id}
        if url:
            payload["url"] = url
        payload["data"] = _template_data(data)
        if client_msg_id:
            payload["client_msg_id"] = client_msg_id
        return await self.call("POST", "/cgi-bin/message/template/send", json=payload)

    async def send_subscribe(
        self,
        openid: str,
        template_id: str,
        data: dict[str, str],
        *,
        page: str | None = None,
    ) -> dict[str, Any]:
        """Send a subscription notice (服务号订阅通知, `bizsend`) the user has accepted.

        43101 means the user has not accepted this template (or used up the acceptance).
        """
        self._mp_only("subscription notices")
        payload: dict[str, Any] = {"touser": openid, "template_id": template_id}
        if page:
            payload["page"] = page
        payload["data"] = _template_data(data)
        return await self.call("POST", "/cgi-bin/message/subscribe/bizsend", json=payload)

    def _mp_only(self, what: str) -> None:
        if self._kind != "mp":
            raise ValueError(f"{what} is an Official Account (mp) API, not WeCom's")

    # -- token cache -------------------------------------------------------------------

    @property
    def _lock_timeout(self) -> float:
        # Long enough for the holder's own token request to time out first.
        return max(30.0, 3 * self._timeout)

    def _local_token(self) -> str | None:
        if self._local is not None and self._local[1] > time.monotonic():
            return self._local[0]
        return None

    def _remember(self, token: str, expires_at: float) -> None:
        self._local = (token, time.monotonic() + (expires_at - time.time()))

    async def _shared_token(self) -> str | None:
        cached = await self._storage.get_json(self._cache_key)
        if not isinstance(cached, dict) or float(cached.get("expires_at", 0)) <= time.time():
            return None
        token = str(cached["access_token"])
        self._remember(token, float(cached["expires_at"]))
        return token

    async def _replace_token(self, rejected: str, errcode: int) -> str:
        """A token other than `rejected`, refreshing only if nobody has done so already."""
        async with self._local_lock:
            # A burst of calls rejected together: the first one in here replaced it.
            if (token := self._local_token()) is not None and token != rejected:
                return token
            self._local = None
            async with self._storage.lock(self._lock_key, timeout=self._lock_timeout):
                token = await self._shared_token()
                if token is not None and token != rejected:
                    return token
                return await self._fetch_token(force_refresh=errcode != EXPIRED_ERRCODE)

    async def _fetch_token(self, *, force_refresh: bool) -> str:
        """Ask WeChat for a token and publish it to every process (caller holds the lock)."""
        if self._kind == "wecom":
            params = {"corpid": self._appid, "corpsecret": self._secret}
            answer = await self._request("GET", "/cgi-bin/gettoken", params=params)
        else:
            body = {
                "grant_type": "client_credential",
                "appid": self._appid,
                "secret": self._secret,
                "force_refresh": force_refresh,
            }
            answer = await self._request("POST", "/cgi-bin/stable_token", body=body)
        try:
            token = str(answer["access_token"])
            expires_in = float(answer["expires_in"])
        except (KeyError, TypeError, ValueError):
            raise WeChatTransportError(f"token answer for {self} lacks a token") from None
        # stable_token may answer with as little as 300 s left; then use half of it.
        ttl = max(expires_in - EXPIRY_MARGIN, expires_in / 2)
        expires_at = time.time() + ttl
        await self._storage.set_json(
            self._cache_key, {"access_token": token, "expires_at": expires_at}, ttl
        )
        self._remember(token, expires_at)
        log.info("fetched a new access_token for %s (valid %.0f s)", self, expires_in)
        return token

    # -- HTTP ----------------------------------------------------------------------------

    async def _call_with(
        self,
        token: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return await self._request(
            method, path, body=body, params={**(params or {}), "access_token": token}
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One HTTP exchange with WeChat, errors translated into the two typed errors."""
        data: bytes | None = None
        headers: dict[str, str] = {}
        if body is not None:
            # WeChat shows \\uXXXX escapes literally, so Chinese must go out as UTF-8.
            data = jsonlib.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
        try:
            async with self._http.request(
                method,
                self._base_url + path,
                params=params,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                status = response.status
                raw = await response.read()
        except TimeoutError:
            message = f"{method} {path}: no answer within {self._timeout} s"
            raise WeChatTransportError(message) from None
        except aiohttp.ClientError as exc:
            # `from None` and redaction: aiohttp puts the URL, and so the token, in some
            # of its messages, and a chained traceback would carry it into the logs.
            message = f"{method} {path}: {exc!r}"
            raise WeChatTransportError(self._redact(message, params)) from None
        if status >= 400:
            raise WeChatTransportError(f"{method} {path}: HTTP {status}")
        try:
            # Not response.json(): WeChat labels some JSON answers text/plain.
            answer = jsonlib.loads(raw)
        except ValueError:
            raise WeChatTransportError(f"{method} {path}: answer is not JSON") from None
        if not isinstance(answer, dict):
            raise WeChatTransportError(f"{method} {path}: answer is not a JSON object")
        errcode = answer.get("errcode", 0)
        if errcode:
            raise WeChatAPIError(int(errcode), self._redact(str(answer.get("errmsg", "")), params))
        return answer

    def _redact(self, text: str, params: dict[str, Any] | None) -> str:
        """`text` with the secret and the token of this request masked."""
        params = params or {}
        for secret in (self._secret, params.get("access_token"), params.get("corpsecret")):
            if secret:
                text = text.replace(str(secret), "***")
        return text


def _template_data(data: dict[str, str]) -> dict[str, dict[str, str]]:
    """{"keyword1": "3月"} → {"keyword1": {"value": "3月"}}, as both template APIs expect."""
    return {key: {"value": str(value)} for key, value in data.items()}
