"""Typed domain errors, translated into replies or HTTP codes at the edge (bot/webhook.py, CLI)."""

from __future__ import annotations


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


# errcodes after which a retry may succeed (system busy, rate limited, per-window quotas)
TRANSIENT_ERRCODES = frozenset({-1, 45009, 45011, 45047})
# errcodes that mean "this access_token is no good": refresh it once and retry
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
