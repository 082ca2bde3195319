"""Cell parsers shared by the importers: each returns a value or raises CellError (Chinese message).

Cells arrive as text from CSV and typed (int, float, datetime) from XLSX; both are accepted.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from typing import Any


class CellError(ValueError):
    """A cell that cannot be read; the message is shown with the file, row and column."""


def text(value: Any) -> str:
    """The cell as written (names keep their own brackets), trimmed; 12.0 from Excel → 「12」."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def folded(value: Any) -> str:
    """For codes and numbers: full-width → half-width (「１２」→「12」), no inner spaces."""
    raw = text(value)
    if raw.isascii():  # the common case, a million times per import: skip NFKC
        return "".join(raw.split()) if " " in raw or "\t" in raw else raw
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", raw))


def required(value: Any, what: str) -> str:
    out = text(value)
    if not out:
        raise CellError(f"{what}不能为空")
    return out


def integer(value: Any, what: str, *, minimum: int | None = 0) -> int:
    """「1186」, 1186, 1186.0 and 「1,186」 → 1186; 「-5」 and 「约100」 are errors."""
    if isinstance(value, str) and value.isdecimal():
        return _at_least(int(value), what, minimum)
    if isinstance(value, bool):
        raise CellError(f"{what}「{value}」不是整数")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raw = text(value)
        cleaned = folded(raw).replace(",", "")
        if not re.fullmatch(r"[+-]?\d+(\.0+)?", cleaned):
            raise CellError(f"{what}「{raw}」不是整数")
        number = int(float(cleaned))
    return _at_least(number, what, minimum)


def _at_least(number: int, what: str, minimum: int | None) -> int:
    if minimum is not None and number < minimum:
        raise CellError(f"{what}「{number}」不能小于 {minimum}")
    return number


def decimal(value: Any, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raw = text(value)
    try:
        return float(folded(raw))
    except ValueError:
        raise CellError(f"{what}「{raw}」不是数字") from None


_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%Y年%m月%d日")


def parse_date(value: Any, what: str = "日期") -> date:
    """2020-03-05, 2020/3/5, 2020.3.5, 20200305, 2020年3月5日, an Excel date, or with a time."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) == 10 and value.isascii():
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raw = unicodedata.normalize("NFKC", text(value))
    if not raw:
        raise CellError(f"{what}不能为空")
    head = re.split(r"[ T]", raw, maxsplit=1)[0]
    try:
        return date.fromisoformat(head)
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(head, fmt).date()
        except ValueError:
            continue
    raise CellError(f"{what}「{raw}」无法识别；请写成 2020-03-05")


_KINDS = {
    "whole_blood": "whole_blood",
    "wholeblood": "whole_blood",
    "全血": "whole_blood",
    "献全血": "whole_blood",
    "platelets": "platelets",
    "机采血小板": "platelets",
    "单采血小板": "platelets",
    "血小板": "platelets",
    "机采": "platelets",
}
WHOLE_BLOOD_VOLUMES = (200, 300, 400)


def donation_kind(value: Any) -> str:
    raw = text(value)
    kind = _KINDS.get(raw) or _KINDS.get(folded(raw).casefold())
    if kind is None:
        raise CellError(
            f"献血类型「{raw}」无法识别；可用：whole_blood（全血）、platelets（机采血小板）"
        )
    return kind


_COMMON_BLOOD = frozenset({"A", "B", "O", "AB"})
_BLOOD = re.compile(r"^(AB|A|B|O)型?(?:RH\(?D?\)?)?(阳性|阴性|\+|-)?$")


def blood_type(value: Any) -> str | None:
    """「A」「AB型」「O型RhD阴性」→ A, AB, O-: only an Rh-negative type carries a minus."""
    if value in _COMMON_BLOOD:
        return str(value)
    raw = text(value)
    if not raw:
        return None
    match = _BLOOD.match(folded(raw).upper())
    if match is None:
        raise CellError(f"血型「{raw}」无法识别；可用 A、B、O、AB（Rh 阴性加 -，如 O-）")
    negative = match.group(2) in ("阴性", "-")
    return match.group(1) + ("-" if negative else "")
