"""Safe-mode message crypto (AES-256-CBC), with the AES key of rotation as a fallback.

wechatpy's `WeChatCipher` does the AES; we frame the plaintext ourselves because
wechatpy rebuilds its cipher on every message and does not validate the padding
or the length field of what it decrypts.  Tests check both directions against
wechatpy's own `WeChatCrypto` and the official test vectors.
"""

from __future__ import annotations

import binascii
import os
import struct

from wechatpy.crypto.cryptography import WeChatCipher

from bot.errors import BadMessage, InvalidSignature
from bot.wechat.signature import sign, signature_ok

BLOCK = 32


class _Key:
    def __init__(self, encoding_aes_key: str) -> None:
        key = binascii.a2b_base64(encoding_aes_key + "=")
        if len(key) != 32:
            raise ValueError("EncodingAESKey must decode to 32 bytes")
        self.cipher = WeChatCipher(key)


class MessageCrypto:
    """Encrypts replies and decrypts requests for one account (appid or corp_id)."""

    def __init__(
        self, token: str, encoding_aes_key: str, app_id: str, previous_key: str = ""
    ) -> None:
        self.token = token
        self.app_id = app_id
        self._app_id_bytes = app_id.encode()
        self._keys = [_Key(encoding_aes_key)]
        if previous_key:
            self._keys.append(_Key(previous_key))

    def check(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        if not signature_ok((self.token, timestamp, nonce, encrypted), msg_signature):
            raise InvalidSignature()

    def decrypt(self, encrypted: str) -> bytes:
        """Plaintext XML bytes; tries the current key, then the previous one (rotation)."""
        try:
            raw = binascii.a2b_base64(encrypted)
        except (binascii.Error, ValueError) as exc:
            raise BadMessage("Encrypt is not base64") from exc
        if not raw or len(raw) % 16:
            raise BadMessage("Encrypt has a bad length")
        for key in self._keys:
            xml = self._unframe(key.cipher.decrypt(raw))
            if xml is not None:
                return xml
        raise BadMessage("Encrypt does not decrypt for this account")

    def _unframe(self, plain: bytes) -> bytes | None:
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or len(plain) < 20 + pad:
            return None
        if plain[-pad:] != bytes([pad]) * pad:  # PKCS#7: every pad byte equals the count
            return None
        body = plain[16:-pad]
        (length,) = struct.unpack(">I", body[:4])
        if length > len(body) - 4 or body[4 + length :] != self._app_id_bytes:
            return None
        return body[4 : 4 + length]

    def encrypt(self, xml: bytes) -> str:
        framed = os.urandom(16) + struct.pack(">I", len(xml)) + xml + self._app_id_bytes
        pad = BLOCK - len(framed) % BLOCK
        framed += bytes([pad]) * pad
        return binascii.b2a_base64(self._keys[0].cipher.encrypt(framed), newline=False).decode()

    def wrap(self, xml: bytes, timestamp: str, nonce: str) -> bytes:
        """The encrypted reply envelope WeChat expects in safe mode."""
        encrypted = self.encrypt(xml)
        signature = sign(self.token, timestamp, nonce, encrypted)
        return (
            f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        ).encode()
