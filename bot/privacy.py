"""Personal data: ID numbers and phones only as keyed hashes; names and phones masked."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata


def keyed_hash(key: str, value: str) -> str:
    """HMAC-SHA256 of a normalised identifier (upper-case, half-width, no spaces)."""
    norm = unicodedata.normalize("NFKC", value).replace(" ", "").upper()
    return hmac.new(key.encode(), norm.encode(), hashlib.sha256).hexdigest()


def mask_name(name: str) -> str:
    """「张三」→「张*」, 「欧阳娜娜」→「欧**娜」."""
    name = name.strip()
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_phone(phone: str) -> str:
    """「13812345678」→「138****5678」; anything shorter keeps only its last two digits."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) >= 11:
        return digits[:3] + "****" + digits[-4:]
    return "*" * max(0, len(digits) - 2) + digits[-2:]


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_number_valid(number: str) -> bool:
    """GB 11643-1999: 18 characters, the last a check digit over the first 17."""
    n = number.strip().upper()
    if len(n) != 18 or not n[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(n[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == n[17]
