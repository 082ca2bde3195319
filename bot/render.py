"""Chat replies rendered from Jinja2 templates (templates/replies/*.j2).

One Environment per process, templates compiled once and cached; StrictUndefined so
a missing value is an error, never a blank in a reply.  A template never sees raw
user input as template source: user text is only ever passed in as a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _mask_phone(value: str) -> str:
    digits = str(value)
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 11 else "*" * len(digits)


def _mask_name(value: str) -> str:
    name = str(value)
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def make_environment(path: Path = TEMPLATES) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(path)),
        undefined=StrictUndefined,
        autoescape=False,  # noqa: S701 - plain-text chat replies, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )
    env.filters["mask_phone"] = _mask_phone
    env.filters["mask_name"] = _mask_name
    return env


class Renderer:
    """`render("help", items=…)` → the text of templates/replies/help.j2."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    def __call__(self, name: str, **context: Any) -> str:
        return self.env.get_template(f"replies/{name}.j2").render(**context).strip()
