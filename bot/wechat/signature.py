"""WeChat request signatures, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac


def sign(*parts: str) -> str:
    """sha1 of the sorted, concatenated parts: WeChat's `signature` and `msg_signature`."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()  # noqa: S324 - WeChat's protocol


def signature_ok(expected_parts: tuple[str, ...], given: str) -> bool:
    return hmac.compare_digest(sign(*expected_parts).encode(), given.encode("utf-8", "replace"))
