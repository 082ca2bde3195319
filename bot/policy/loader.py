"""Load and validate `data/policies/*.toml` into `Policy` objects (all I/O happens here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from bot.policy import sections
from bot.policy.model import Policy, PolicyError
from bot.policy.reader import PolicyText, Table

_CITED_LISTS = ("honours", "perks")


def load_policies(directory: Path) -> dict[str, Policy]:
    """Every rule set in `directory`, by id. Base files (`base = true`) are only inherited."""
    files = {path: _read(path) for path in sorted(Path(directory).glob("*.toml"))}
    bases: dict[str, dict[str, Any]] = {}
    for src, data in files.values():
        if data.get("base") is True:
            cited = _with_citations(data)
            sections.parse_base(Table(cited, (), src))
            bases[str(data["id"])] = cited
    policies: dict[str, Policy] = {}
    for path, (src, data) in files.items():
        if data.get("base") is True:
            continue
        merged = _inherit(data, src, bases)
        policy = sections.parse_policy(Table(merged, (), src), path)
        policies[policy.id] = policy
    return policies


def _read(path: Path) -> tuple[PolicyText, dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        raise PolicyError(path, int(found.group(1)) if found else 1, f"TOML: {exc}") from exc
    src = PolicyText(path, text)
    ident = data.get("id")
    if not isinstance(ident, str) or ident != path.stem:
        raise src.error(("id",), f"id must be the file name without .toml ({path.stem!r})")
    return src, data


def _with_citations(data: dict[str, Any]) -> dict[str, Any]:
    """Give inherited honours, perks and eligibility the citation of the file they came from."""
    source = data.get("source")
    citation = source.get("citation") if isinstance(source, dict) else None
    if not isinstance(citation, str):
        return data
    out = dict(data)
    for key in _CITED_LISTS:
        items = out.get(key)
        if isinstance(items, list):
            out[key] = [
                {"citation": citation, **item} if isinstance(item, dict) else item for item in items
            ]
    if isinstance(out.get("eligibility"), dict):
        out["eligibility"] = {"citation": citation, **out["eligibility"]}
    return out


def _inherit(
    data: dict[str, Any], src: PolicyText, bases: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    names = data.get("inherits", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise src.error(("inherits",), "inherits: expected a list of base ids")
    merged: dict[str, Any] = {}
    for name in names:
        if name not in bases:
            known = ", ".join(sorted(bases)) or "none"
            raise src.error(("inherits",), f"inherits: no base file {name!r} (known: {known})")
        merged = _merge(merged, {k: v for k, v in bases[name].items() if k in sections.INHERITED})
    return _merge(merged, _with_citations(data))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; arrays of tables with ids merge by id; anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = _merge(old, value)
        elif _has_ids(old) and _has_ids(value):
            assert isinstance(old, list)
            by_id = {item["id"]: item for item in old}
            by_id.update({item["id"]: item for item in value})
            out[key] = list(by_id.values())
        else:
            out[key] = value
    return out


def _has_ids(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "id" in i for i in value)
