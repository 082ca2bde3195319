"""Safe-mode message crypto (AES-256-CBC), with the AES key of rotation as a fallback.

We frame the plaintext ourselves because wechatpy rebuilds its cipher on every
message and does not validate the padding or the length field of what it decrypts.
Tests check both directions against wechatpy's own `WeChatCrypto` and the official
test vectors.

One CBC encryptor and one decryptor per key, made once and never finalised: making a
cipher context costs several times what the AES of a message does.  A context that
runs on chains each message from the previous one's last ciphertext block instead of
the IV, which changes only the first 16-byte block, and that block is the random
prefix of WeChat's framing, which both sides discard: encrypting, it is a random block
either way (random bytes XOR a known block); decrypting, it is thrown away unread.
"""

from __future__ import annotations

import binascii
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.errors import BadMessage, InvalidSignature
from bot.wechat.signature import sign, signature_ok

BLOCK = 32


_POOL = bytearray()
_POOL_SIZE = 16 * 256


def _random16() -> bytes:
    """16 bytes from os.urandom, read 4 KiB at a time (a system call per reply otherwise)."""
    if len(_POOL) < 16:
        _POOL[:] = os.urandom(_POOL_SIZE)
    chunk = bytes(_POOL[-16:])
    del _POOL[-16:]
    return chunk


def _clear_pool() -> None:  # a forked process must not reuse its parent's random bytes
    _POOL.clear()


os.register_at_fork(after_in_child=_clear_pool)


class _Key:
    def __init__(self, encoding_aes_key: str) -> None:
        key = binascii.a2b_base64(encoding_aes_key + "=")
        if len(key) != 32:
            raise ValueError("EncodingAESKey must decode to 32 bytes")
        cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))
        # Never finalised (see the module's docstring): only whole blocks go through them.
        self.encryptor = cipher.encryptor()
        self.decryptor = cipher.decryptor()

    def encrypt(self, framed: bytes) -> bytes:
        """CBC of `framed` (whole blocks, the first one random), as WeChat decrypts it."""
        return self.encryptor.update(framed)

    def decrypt(self, raw: bytes) -> bytes:
        """CBC decryption of `raw` (whole blocks); the first block is not to be read."""
        return self.decryptor.update(raw)


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
            xml = self._unframe(key.decrypt(raw))
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
        framed = _random16() + struct.pack(">I", len(xml)) + xml + self._app_id_bytes
        pad = BLOCK - len(framed) % BLOCK
        framed += bytes([pad]) * pad
        return binascii.b2a_base64(self._keys[0].encrypt(framed), newline=False).decode()

    def wrap(self, xml: bytes, timestamp: str, nonce: str) -> bytes:
        """The encrypted reply envelope WeChat expects in safe mode."""
        encrypted = self.encrypt(xml)
        signature = sign(self.token, timestamp, nonce, encrypted)
        return (
            f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        ).encode()
