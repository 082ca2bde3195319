"""Chat replies rendered from Jinja2 templates (templates/replies/*.j2).

One Environment per process, templates compiled once and cached; StrictUndefined so
a missing value is an error, never a blank in a reply.  A template never sees raw
user input as template source: user text is only ever passed in as a value.
"""

from __future__ import annotations

from collections.abc import Hashable
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bot.privacy import mask_name, mask_phone
from models.periods import format_months

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def number(value: Decimal | float | int | None) -> str:
    """12 → 「12」, 12.5 → 「12.5」, 2.25 → 「2.25」: no trailing zeros, no exponent."""
    if value is None:
        return "—"
    d = Decimal(str(value)).normalize()
    return f"{d:f}"


def progress_bar(percent: Decimal | float | None, width: int = 10) -> str:
    """「▓▓▓▓░░░░░░」 for 40%; full beyond 100%."""
    if percent is None:
        return ""
    filled = max(0, min(width, int(Decimal(str(percent)) * width // 100)))
    return "▓" * filled + "░" * (width - filled)


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
    env.filters["mask_phone"] = mask_phone
    env.filters["mask_name"] = mask_name
    env.filters["num"] = number
    env.filters["bar"] = progress_bar
    env.filters["months"] = format_months
    return env


class Renderer:
    """`render("help", items=…)` → the text of templates/replies/help.j2."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._memo: dict[tuple[Hashable, ...], str] = {}

    def __call__(self, template: str, /, **context: Any) -> str:
        return self.env.get_template(f"replies/{template}.j2").render(**context).strip()

    def memo(self, template: str, /, *, key: Hashable = None, **context: Any) -> str:
        """Like calling the renderer, for replies that depend only on a few hashable values
        (the help text of a role): rendered once, then served from memory.

        `key`, if given, stands for the context (cheaper to hash than the context itself):
        the caller promises equal keys mean equal contexts.
        """
        memo_key = (
            (template, "key", key)
            if key is not None
            else (
                template,
                "context",
                tuple(sorted(context.items())),
            )
        )
        text = self._memo.get(memo_key)
        if text is None:
            if len(self._memo) > 1024:
                self._memo.clear()
            text = self._memo[memo_key] = self(template, **context)
        return text

    def forget(self) -> None:
        """Drop memoised replies (after a template changes)."""
        self._memo.clear()


# ---- one jurisdiction's replies: the office's edited templates first ------------------
# bot/reply_templates.py compiles the edits (sandboxed) and keeps `edited` current; the
# webhook binds one LocalRenderer per jurisdiction as the handlers' `render`.


class LocalRenderer(Renderer):
    """The renderer of one jurisdiction's handlers, made once per jurisdiction.

    `edited`: template name → the office's edit, a callable taking the context and giving
    the text (None if it failed on this context: then the shipped file answers).
    `last`: the context of the latest render of each template (one per name, so bounded),
    the real data the console previews an edit against.  `memo` goes through `__call__`,
    and `forget()` is called whenever `edited` changes, so no stale text is served.
    """

    def __init__(self, shared: Renderer, jurisdiction: str) -> None:
        super().__init__(shared.env)
        self.shared = shared
        self.jurisdiction = jurisdiction
        self.edited: dict[str, Any] = {}
        self.last: dict[str, dict[str, Any]] = {}
        # the stamp of the edits this renderer holds: caches of rendered answers key on it
        # (not on storage's newest stamp, which this process may not have loaded yet)
        self.wording = "0"

    def __call__(self, template: str, /, **context: Any) -> str:
        self.last[template] = context
        edited = self.edited.get(template)
        if edited is not None:
            text = edited(context)
            if text is not None:
                return text
        return self.shared(template, **context)
