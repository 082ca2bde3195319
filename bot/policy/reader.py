"""Reading a parsed TOML table with types checked, unknown keys refused, lines reported.

tomllib gives positions only for syntax errors, so for schema errors the line of a
key is found by scanning the file's text for its table header and the key.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from bot.policy.model import PolicyError

PathPart = str | int
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*["']?([A-Za-z0-9_-]+)["']?\s*=""")


def _index_lines(text: str) -> dict[tuple[str, int | None, str | None], int]:
    """(table, occurrence of an array table, key or None for the header) → first line."""
    found: dict[tuple[str, int | None, str | None], int] = {}
    occurrences: dict[str, int] = {}
    table: tuple[str, int | None] = ("", None)
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            name = ".".join(p.strip().strip("\"'") for p in header.group(2).split("."))
            occurrence = None
            if header.group(1) == "[[":
                occurrence = occurrences[name] = occurrences.get(name, -1) + 1
            table = (name, occurrence)
            found.setdefault((name, occurrence, None), number)
            continue
        key = _KEY.match(line)
        if key:
            found.setdefault((table[0], table[1], key.group(1)), number)
    return found


def _split(path: tuple[PathPart, ...]) -> tuple[str, int | None, str | None]:
    names: list[str] = []
    occurrence: int | None = None
    for part in path:
        if isinstance(part, int):
            occurrence = part
        else:
            names.append(part)
            occurrence = None
    if not names:
        return "", None, None
    if occurrence is not None:
        return ".".join(names), occurrence, None
    return ".".join(names[:-1]), _last_int(path), names[-1]


def _last_int(path: tuple[PathPart, ...]) -> int | None:
    """The occurrence index of the table holding the last key, if it is an array table."""
    return path[-2] if len(path) >= 2 and isinstance(path[-2], int) else None


@dataclass
class PolicyText:
    """One policy file: its path and text, to point errors at lines."""

    file: Path
    text: str
    _lines: dict[tuple[str, int | None, str | None], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lines = _index_lines(self.text)

    def line_of(self, path: tuple[PathPart, ...]) -> int:
        """The key's line, else its table's header, else the nearest enclosing one, else 1."""
        while path:
            table, occurrence, key = _split(path)
            line = self._lines.get((table, occurrence, key))
            if line is None and key is not None:
                # the path may name a table rather than a key: find its header
                line = self._lines.get((f"{table}.{key}" if table else key, None, None))
            if line is not None:
                return line
            path = path[:-1]
        return 1

    def error(self, path: tuple[PathPart, ...], message: str) -> PolicyError:
        return PolicyError(self.file, self.line_of(path), message)


def dotted(path: tuple[PathPart, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


class Table:
    """A TOML table being read: every key read is checked; `close()` refuses the rest."""

    def __init__(self, data: dict[str, Any], path: tuple[PathPart, ...], src: PolicyText) -> None:
        self.data = data
        self.path = path
        self.src = src
        self._seen: set[str] = set()

    def error(self, key: str | None, message: str) -> PolicyError:
        where = (*self.path, key) if key else self.path
        return self.src.error(where, f"{dotted(where) or '(top level)'}: {message}")

    def _get(self, key: str, types: type | tuple[type, ...], what: str, required: bool) -> Any:
        self._seen.add(key)
        if key not in self.data:
            if required:
                raise self.error(key, f"missing ({what} required)")
            return None
        value = self.data[key]
        if isinstance(value, bool) and bool not in (
            types if isinstance(types, tuple) else (types,)
        ):
            raise self.error(key, f"expected {what}, got {value!r}")
        if not isinstance(value, types):
            raise self.error(key, f"expected {what}, got {value!r}")
        return value

    def req_str(self, key: str) -> str:
        value: str = self._get(key, str, "a string", True)
        if not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def opt_str(self, key: str, default: str = "") -> str:
        value = self._get(key, str, "a string", False)
        return default if value is None else str(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self._get(key, str, "a string", default is None)
        if value is None:
            return str(default)
        if value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(choices)}")
        return str(value)

    def opt_int(self, key: str, *, minimum: int = 0) -> int | None:
        value = self._get(key, int, "an integer", False)
        if value is not None and value < minimum:
            raise self.error(key, f"must be ≥ {minimum}, got {value}")
        return None if value is None else int(value)

    def req_int(self, key: str, *, minimum: int = 0) -> int:
        self._get(key, int, "an integer", True)
        value = self.opt_int(key, minimum=minimum)
        assert value is not None
        return value

    def opt_bool(self, key: str, default: bool) -> bool:
        value = self._get(key, bool, "true or false", False)
        return default if value is None else bool(value)

    def opt_date(self, key: str) -> date | None:
        value = self._get(key, date, "a date (YYYY-MM-DD)", False)
        return value if isinstance(value, date) else None

    def str_list(self, key: str, choices: tuple[str, ...] | None = None) -> tuple[str, ...]:
        values = self._get(key, list, "a list of strings", False) or []
        for n, value in enumerate(values):
            if not isinstance(value, str) or (choices and value not in choices):
                allowed = f" (one of {', '.join(choices)})" if choices else ""
                raise self.src.error((*self.path, key), f"{key}[{n}]: bad value {value!r}{allowed}")
        return tuple(values)

    def table(self, key: str, *, required: bool = False) -> Table | None:
        value = self._get(key, dict, "a table", required)
        return None if value is None else Table(value, (*self.path, key), self.src)

    def tables(self, key: str) -> list[Table]:
        values = self._get(key, list, "an array of tables ([[...]])", False) or []
        out = []
        for n, value in enumerate(values):
            if not isinstance(value, dict):
                raise self.error(key, f"item {n} is not a table")
            out.append(Table(value, (*self.path, key, n), self.src))
        return out

    def expect(self, keys: tuple[str, ...]) -> None:
        """Refuse unknown keys up front (for tables whose later checks name missing keys)."""
        self._seen.update(keys)
        self.close()

    def close(self) -> None:
        """Refuse keys nobody read: a typo is an error, not an ignored setting."""
        for key in self.data:
            if key not in self._seen:
                near = difflib.get_close_matches(key, sorted(self._seen), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise self.error(key, f"unknown key{hint}")
