"""What each recipient gets: the broadcast's parameters are Jinja text, rendered per recipient.

`--param first="{{ unit }}：{{ month }}献血任务提醒"` renders with the recipient's own
parameters (unit, month, target, done, remaining, percent, …: `models.audiences`). The
environment is sandboxed, has no loader (so `{% include %}` cannot read files) and
undefined names are errors, so a typo is refused when the broadcast is created, never
sent as an empty field.
"""

from __future__ import annotations

from collections.abc import Mapping

from jinja2 import StrictUndefined, Template, TemplateError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from bot.errors import DonorbotError

# WeChat shows at most this many characters of a template field (SPEC §6)
TEMPLATE_FIELD_SHOWN = 20
CUSTOM_TEXT_LIMIT = 600  # characters; a customer-service text longer than this is refused

_MISSING = object()
_MEMO_LIMIT = 50_000
_FILE_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, auto_reload=False)


class ComposeError(DonorbotError):
    """A broadcast whose message cannot be built; the message says what to fix."""


class Composer:
    """A broadcast's message, compiled once, rendered for each recipient."""

    def __init__(self, channel: str, template_id: str, fields: Mapping[str, str]) -> None:
        if channel not in ("template", "custom", "subscribe"):
            raise ComposeError(f"未知的发送方式 {channel!r}：可选 template、custom、subscribe")
        if channel == "custom":
            if set(fields) != {"content"}:
                raise ComposeError("客服消息（custom）只需要一个参数：--param content=正文")
        else:
            if not template_id.strip():
                raise ComposeError("模板消息和订阅通知需要 --template-id")
            if not fields:
                raise ComposeError("模板消息至少需要一个字段参数，例如 --param first=…")
        self.channel = channel
        self.template_id = template_id.strip()
        self.fields = dict(fields)
        self._templates: dict[str, Template] = {}
        # the names each field uses: equal values give equal text, rendered once (a 100k
        # broadcast to donors would otherwise run 100k sandboxed renders per field)
        self._uses: dict[str, tuple[str, ...]] = {}
        self._done: dict[tuple[str, tuple[object, ...]], str] = {}
        for name, text in fields.items():
            if not name or not name.replace("_", "").isalnum() or not name.isascii():
                raise ComposeError(f"字段名 {name!r} 不合法：只能用字母、数字和下划线")
            try:
                tree = _env.parse(text)
            except TemplateError as exc:
                raise ComposeError(f"参数 {name} 的模板有误：{exc}") from None
            if any(tree.find_all(_FILE_NODES)):  # there is no loader: nothing to read, say so
                raise ComposeError(f"参数 {name} 不能引用其他模板或文件（include/import/extends）")
            self._templates[name] = _env.from_string(tree)
            self._uses[name] = tuple(sorted(meta.find_undeclared_variables(tree)))

    def render(self, values: Mapping[str, str]) -> dict[str, str]:
        """The payload for one recipient: template data fields, or {"content": text}."""
        out: dict[str, str] = {}
        for name, template in self._templates.items():
            uses = self._uses[name]
            key = (name, tuple(values.get(v, _MISSING) for v in uses))
            text = self._done.get(key) if _MISSING not in key[1] else None
            if text is None:
                try:
                    text = template.render(values)
                except TemplateError as exc:
                    raise ComposeError(f"参数 {name} 无法生成：{exc}") from None
                if len(self._done) < _MEMO_LIMIT:
                    self._done[key] = text
            out[name] = text
        if self.channel == "custom" and len(out["content"]) > CUSTOM_TEXT_LIMIT:
            raise ComposeError(f"客服消息不能超过 {CUSTOM_TEXT_LIMIT} 字")
        return out


# fields WeChat stopped showing in template messages in 2023 (still accepted)
HIDDEN_TEMPLATE_FIELDS = frozenset({"first", "remark"})


def shown(payload: Mapping[str, str], channel: str) -> dict[str, str]:
    """What WeChat shows of a payload: template fields cut at 20 characters, and no
    `first` / `remark` (the preview must not promise text nobody will see)."""
    if channel == "custom":
        return dict(payload)
    return {
        k: v if len(v) <= TEMPLATE_FIELD_SHOWN else v[:TEMPLATE_FIELD_SHOWN] + "…"
        for k, v in payload.items()
        if k not in HIDDEN_TEMPLATE_FIELDS
    }


def parse_params(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`key=value` pairs from the command line; the same key twice is refused."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ComposeError(f"参数 {pair!r} 应写成 key=value")
        if key in out:
            raise ComposeError(f"参数 {key} 重复")
        out[key] = value
    return out
