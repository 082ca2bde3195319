"""Typed domain errors, translated into replies or HTTP codes at the edge (bot/webhook.py, CLI)."""

from __future__ import annotations

from typing import Literal


class DonorbotError(Exception):
    """Base class: the message is safe to show to the person who caused it."""


class ConfigError(DonorbotError):
    """The settings or account file are wrong; the CLI prints this and exits 2."""


class UnknownJurisdiction(DonorbotError):
    pass


class InvalidSignature(DonorbotError):
    """signature / msg_signature did not match (HTTP 403, no detail)."""


class StaleRequest(DonorbotError):
    """Timestamp outside the freshness window (HTTP 403)."""


class ReplayedRequest(DonorbotError):
    """A (timestamp, nonce) pair seen before with a different body (HTTP 403)."""


class BadMessage(DonorbotError):
    """Body is not a well-formed WeChat XML message (HTTP 400)."""


class WeChatAPIError(DonorbotError):
    """The WeChat API answered with a non-zero errcode."""

    def __init__(self, errcode: int, errmsg: str = "") -> None:
        super().__init__(f"WeChat API error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeChatTransportError(DonorbotError):
    """WeChat could not be reached or answered badly (timeout, connection reset, HTTP 5xx).

    Always transient: the caller retries with backoff.
    """


# errcodes after which a retry may succeed some time (system busy, rate limited, the daily
# quota, a used-up customer-service window once the user writes again). The reply outbox
# uses it; broadcasts use `classify_error` below, which tells these cases apart.
TRANSIENT_ERRCODES = frozenset({-1, 45009, 45011, 45047})
# errcodes that mean "this access_token is no good": refresh it once and retry
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})


# -- classifying WeChat failures (the one place; the broadcast worker and outbox use it) --

ErrorKind = Literal["transient", "quota", "permanent"]

# SPEC §6: only these errcodes (and every WeChatTransportError) are retried with backoff.
RETRY_ERRCODES = frozenset({-1, 45011})
# Daily API quota reached: not retried today; the caller waits for the next Beijing day.
QUOTA_ERRCODES = frozenset({45009})

# What a person reading a failed delivery should understand (errcodes from WeChat's docs).
ERRCODE_REASONS: dict[int, str] = {
    -1: "微信系统繁忙",
    40001: "access_token 无效或不是最新的",
    40003: "openid 无效（不是本公众号的用户）",
    40013: "AppID 无效",
    40014: "access_token 无效",
    40036: "模板 ID 无效",
    40037: "模板 ID 无效",
    40125: "AppSecret 无效",
    41030: "跳转页面路径无效",
    42001: "access_token 已过期",
    43004: "用户未关注或已取消关注",
    43019: "用户已将公众号拉黑",
    43101: "用户拒绝接收订阅消息（未订阅或订阅次数已用完）",
    44002: "请求内容为空",
    45009: "今日接口调用次数已达上限",
    45011: "接口调用过于频繁",
    45015: "客服消息时限已过（用户48小时内未与公众号互动）",
    45047: "客服消息已达本次互动的条数上限",
    47001: "数据格式错误",
    47003: "模板参数不合法",
    48001: "公众号没有该接口权限",
    48002: "用户拒收消息",
}


def classify_error(exc: BaseException) -> tuple[ErrorKind, str]:
    """How a failed WeChat call should be handled, and a reason a person can read.

    "transient": retry with capped backoff (timeouts, connection errors, HTTP 5xx,
    errcode -1 and 45011, and a token error that survived the client's one refresh);
    "quota": 45009, retry after the next local midnight of WeChat's (Beijing) day;
    "permanent": record the reason and do not retry (43004, 43019, 48002, 47003, 45015,
    45047, 43101, 40037, …, and any errcode not known to be transient).
    """
    reason = permanent_reason(exc)
    if isinstance(exc, WeChatAPIError):
        if exc.errcode in QUOTA_ERRCODES:
            return "quota", reason
        if exc.errcode in RETRY_ERRCODES or exc.errcode in TOKEN_ERRCODES:
            return "transient", reason
        return "permanent", reason
    if isinstance(exc, WeChatTransportError | TimeoutError | OSError):
        return "transient", reason
    return "permanent", reason


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same call later (with backoff) may succeed today."""
    return classify_error(exc)[0] == "transient"


def is_quota(exc: BaseException) -> bool:
    """True when the daily quota is used up: retry after the next Beijing midnight."""
    return classify_error(exc)[0] == "quota"


def permanent_reason(exc: BaseException) -> str:
    """A Chinese reason for any failed WeChat call, ending in the errcode when there is one.

    Named for its main use (the `error` of a failed delivery), but it describes
    transient and quota failures as well.
    """
    if isinstance(exc, WeChatAPIError):
        text = ERRCODE_REASONS.get(exc.errcode, "微信接口返回错误")
        return f"{text}（{exc.errcode}）"
    if isinstance(exc, WeChatTransportError | TimeoutError | OSError):
        return f"微信接口暂时无法访问：{exc}" if str(exc) else "微信接口暂时无法访问"
    return f"发送失败：{type(exc).__name__}"
