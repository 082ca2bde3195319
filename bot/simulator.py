"""Plays WeChat's side of the webhook: signed (and encrypted) XML in, decrypted reply out.

Used by `donorbot chat`, the tests and the benchmarks, so all three speak to the
webhook exactly as WeChat's servers do.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.channels import Channel
from bot.wechat.message import parse_xml
from bot.wechat.reply import cdata
from bot.wechat.signature import sign

_msg_ids = itertools.count(int(time.time() * 1000) % 10**12 * 1000)


def _envelope(openid: str, to: str, msg_type: str, create_time: int | None, body: str) -> bytes:
    """The <xml> every push shares, around the type-specific `body` (already escaped)."""
    ct = int(time.time()) if create_time is None else create_time
    return (
        f"<xml><ToUserName>{cdata(to)}</ToUserName><FromUserName>{cdata(openid)}</FromUserName>"
        f"<CreateTime>{ct}</CreateTime><MsgType>{cdata(msg_type)}</MsgType>{body}</xml>"
    ).encode()


def _fields(fields: dict[str, str]) -> str:
    return "".join(f"<{k}>{cdata(str(v))}</{k}>" for k, v in fields.items())


def _msg_id(msg_id: int | None) -> str:
    return f"<MsgId>{next(_msg_ids) if msg_id is None else msg_id}</MsgId>"


def text_xml(openid: str, content: str, *, to: str = "gh_donorbot", msg_id: int | None = None,
             create_time: int | None = None) -> bytes:  # fmt: skip
    body = f"<Content>{cdata(content)}</Content>" + _msg_id(msg_id)
    return _envelope(openid, to, "text", create_time, body)


def event_xml(openid: str, event: str, *, to: str = "gh_donorbot", create_time: int | None = None,
              **fields: str) -> bytes:  # fmt: skip
    return _envelope(
        openid, to, "event", create_time, f"<Event>{cdata(event)}</Event>" + _fields(fields)
    )


def message_xml(openid: str, msg_type: str, *, to: str = "gh_donorbot", msg_id: int | None = None,
                create_time: int | None = None, **fields: str) -> bytes:  # fmt: skip
    return _envelope(openid, to, msg_type, create_time, _fields(fields) + _msg_id(msg_id))


@dataclass
class Simulator:
    """Signs requests for one channel as WeChat would, and opens the replies."""

    channel: Channel
    now: Callable[[], float] = time.time
    encrypt: bool | None = None  # default: as the account's mode requires
    last_query: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        prefix = "/wecom/" if self.channel.kind == "wecom" else "/wechat/"
        return prefix + self.channel.jurisdiction

    def _encrypting(self) -> bool:
        if self.encrypt is not None:
            return self.encrypt
        return self.channel.kind == "wecom" or self.channel.mode in ("safe", "compatible")

    def request(
        self, xml: bytes, *, timestamp: str | None = None, nonce: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """(query parameters, body) of the POST WeChat would send for `xml`."""
        ts = timestamp or str(int(self.now()))
        nc = nonce or secrets.token_hex(8)
        query: dict[str, str] = {"timestamp": ts, "nonce": nc}
        if self.channel.kind == "mp":
            query["signature"] = sign(self.channel.token, ts, nc)
            query["openid"] = "o" + secrets.token_hex(4)
        if self._encrypting():
            assert self.channel.crypto is not None
            encrypted = self.channel.crypto.encrypt(xml)
            query["encrypt_type"] = "aes"
            query["msg_signature"] = sign(self.channel.token, ts, nc, encrypted)
            body = (
                f"<xml><ToUserName>{cdata(self.channel.app_id)}</ToUserName>"
                f"<Encrypt>{cdata(encrypted)}</Encrypt></xml>"
            ).encode()
        else:
            body = xml
        self.last_query = query
        return query, body

    def open_reply(self, body: bytes) -> dict[str, Any] | None:
        """The reply XML as a dict (decrypted and its signature checked); None for `success`."""
        if body in (b"success", b""):
            return None
        data = parse_xml(body)
        if "Encrypt" in data:
            assert self.channel.crypto is not None
            expected = sign(
                self.channel.token, str(data["TimeStamp"]), str(data["Nonce"]), str(data["Encrypt"])
            )
            if expected != data.get("MsgSignature"):
                raise AssertionError("reply msg_signature does not verify")
            data = parse_xml(self.channel.crypto.decrypt(str(data["Encrypt"])))
        return data
