"""The accounts the webhook answers for, built once from Settings (ciphers included)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.settings import Jurisdiction, Settings
from bot.wechat.crypto import MessageCrypto


@dataclass(frozen=True, slots=True)
class Channel:
    """One account of one jurisdiction: an Official Account (mp) or a WeCom app."""

    jurisdiction: str
    name: str
    timezone: str
    kind: str  # mp | wecom
    app_id: str  # appid, or corp_id for WeCom
    token: str
    mode: str  # plain | compatible | safe (WeCom is always safe)
    crypto: MessageCrypto | None
    agent_id: int | None = None


def _mp(code: str, j: Jurisdiction) -> Channel | None:
    acc = j.wechat
    if acc is None:
        return None
    key = acc.encoding_aes_key.get_secret_value()
    crypto = (
        MessageCrypto(
            acc.token.get_secret_value(),
            key,
            acc.appid,
            acc.previous_encoding_aes_key.get_secret_value(),
        )
        if key
        else None
    )
    mode = acc.mode if crypto is not None else "plain"
    return Channel(
        code, j.name, j.timezone, "mp", acc.appid, acc.token.get_secret_value(), mode, crypto
    )


def _wecom(code: str, j: Jurisdiction) -> Channel | None:
    app = j.wecom
    if app is None:
        return None
    crypto = MessageCrypto(
        app.token.get_secret_value(), app.encoding_aes_key.get_secret_value(), app.corp_id
    )
    return Channel(
        code,
        j.name,
        j.timezone,
        "wecom",
        app.corp_id,
        app.token.get_secret_value(),
        "safe",
        crypto,
        agent_id=app.agent_id,
    )


def build_channels(settings: Settings) -> dict[tuple[str, str], Channel]:
    """(kind, jurisdiction code) → Channel for every configured account."""
    out: dict[tuple[str, str], Channel] = {}
    for code, j in settings.jurisdictions.items():
        for channel in (_mp(code, j), _wecom(code, j)):
            if channel is not None:
                out[(channel.kind, code)] = channel
    return out
