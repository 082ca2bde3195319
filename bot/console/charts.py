"""Server-side SVG charts for the console: pure functions from numbers and text to SVG strings.

Every piece of text (unit names, titles, labels) goes through `_esc`, every number is
formatted here, so the returned string is markup this module built itself and the templates
may embed it with `|safe`. Each chart is `role="img"` with an `aria-label` that says what a
sighted reader would take from it; bars carry `<title>` tooltips with the exact figures.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from bot.render import number
from models.progress_types import percent_of

PLAN_COLOUR = "#9fb3c8"
DONE_COLOUR = "#1e8449"
BIN_COLOUR = "#1f5fa8"
MET_COLOUR = "#1e8449"
INK = "#1f2933"
GRID = "#e5e7eb"
FONT = 'font-family="sans-serif" font-size="12"'
# completion histogram bins: [low, high) in percent; the last is open (met or over)
BINS: tuple[tuple[int, int | None], ...] = (
    (0, 20),
    (20, 40),
    (40, 60),
    (60, 80),
    (80, 100),
    (100, None),
)
NAMES_IN_TOOLTIP = 15


@dataclass(frozen=True)
class MonthPoint:
    """One month of the plan-vs-actual chart: the 合计 target and what was done."""

    month: int
    target: int
    done: Decimal


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _f(x: float) -> str:
    """A coordinate: one decimal, no trailing zero."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def nice_ceiling(value: float, ticks: int = 5, *, whole: bool = False) -> tuple[float, float]:
    """(top, step) of an axis from 0 that holds `value` in about `ticks` round steps
    (`whole`: steps of at least 1 and never 2.5, for counts)."""
    if value <= 0:
        return (float(ticks), 1.0) if whole else (1.0, 1.0 / ticks)
    raw = value / ticks
    if whole:
        raw = max(raw, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    factors = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in factors if m * magnitude >= raw)
    top = step * math.ceil(value / step)
    return float(top), float(step)


def _tick_label(value: float) -> str:
    return number(Decimal(str(round(value, 6))))


def _open(width: int, height: int, label: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-label="{_esc(label)}" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet">',
        f"<title>{_esc(label)}</title>",
    ]


def _empty(width: int, height: int, label: str, message: str) -> str:
    parts = _open(width, height, label)
    parts.append(
        f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" {FONT} '
        f'fill="#6b7280">{_esc(message)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _y_axis(
    parts: list[str],
    left: float,
    right: float,
    top: float,
    bottom: float,
    axis_top: float,
    step: float,
) -> None:
    for i in range(round(axis_top / step) + 1):
        value = step * i
        y = bottom - (bottom - top) * value / axis_top
        parts.append(
            f'<line x1="{_f(left)}" y1="{_f(y)}" x2="{_f(right)}" y2="{_f(y)}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{_f(left - 6)}" y="{_f(y + 4)}" text-anchor="end" {FONT} '
            f'fill="{INK}">{_esc(_tick_label(value))}</text>'
        )
    parts.append(
        f'<line x1="{_f(left)}" y1="{_f(top)}" x2="{_f(left)}" y2="{_f(bottom)}" stroke="{INK}"/>'
    )
    parts.append(
        f'<line x1="{_f(left)}" y1="{_f(bottom)}" x2="{_f(right)}" y2="{_f(bottom)}" '
        f'stroke="{INK}"/>'
    )


def _percent(done: Decimal, target: int) -> str:
    percent = percent_of(done, target)
    return "" if percent is None else f"（{number(percent)}%）"


def monthly_plan_vs_actual(points: Sequence[MonthPoint], *, measure: str, title: str) -> str:
    """Bars per month, plan and done side by side, with axes, a legend and tooltips."""
    width, height = 720, 300
    left, right, top, bottom = 64.0, 704.0, 44.0, 256.0
    total_target = sum(p.target for p in points)
    total_done = sum((p.done for p in points), Decimal(0))
    label = (
        f"{title}：全年分月计划合计 {total_target}{measure}，已完成 {number(total_done)}{measure}"
    )
    if not any(p.target or p.done for p in points):
        return _empty(width, height, f"{title}：本年没有分月安排", "本年没有分月安排")
    by_month = {p.month: p for p in points}
    highest = max(max(float(p.target), float(p.done)) for p in points)
    axis_top, step = nice_ceiling(highest)
    parts = _open(width, height, label)
    _y_axis(parts, left, right, top, bottom, axis_top, step)
    parts.append(
        f'<text x="14" y="{_f(top - 14)}" {FONT} fill="{INK}">单位：{_esc(measure)}</text>'
    )
    group = (right - left) / 12
    bar = group * 0.36
    for month in range(1, 13):
        x0 = left + group * (month - 1)
        point = by_month.get(month)
        target = point.target if point else 0
        done = point.done if point else Decimal(0)
        series = (
            (Decimal(target), PLAN_COLOUR, f"{month}月 计划 {target}{measure}"),
            (done, DONE_COLOUR, f"{month}月 完成 {number(done)}{measure}{_percent(done, target)}"),
        )
        for i, (value, colour, tip) in enumerate(series):
            h = (bottom - top) * float(value) / axis_top
            x = x0 + group * 0.12 + i * bar
            parts.append(
                f'<rect x="{_f(x)}" y="{_f(bottom - h)}" width="{_f(bar)}" height="{_f(h)}" '
                f'fill="{colour}"><title>{_esc(tip)}</title></rect>'
            )
        parts.append(
            f'<text x="{_f(x0 + group / 2)}" y="{_f(bottom + 18)}" text-anchor="middle" '
            f'{FONT} fill="{INK}">{month}月</text>'
        )
    legend_x = right - 150
    for i, (colour, text) in enumerate(((PLAN_COLOUR, "计划"), (DONE_COLOUR, "已完成"))):
        x = legend_x + i * 75
        parts.append(f'<rect x="{_f(x)}" y="14" width="14" height="14" fill="{colour}"/>')
        parts.append(f'<text x="{_f(x + 20)}" y="26" {FONT} fill="{INK}">{_esc(text)}</text>')
    parts.append(
        f'<text x="{_f((left + right) / 2)}" y="{height - 8}" text-anchor="middle" {FONT} '
        f'fill="{INK}">月份（跨月任务计入开始的月份）</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def bin_label(low: int, high: int | None) -> str:
    return f"{low}%及以上" if high is None else f"{low}–{high}%"


def completion_bins(items: Sequence[tuple[str, Decimal]]) -> list[tuple[str, list[str]]]:
    """(bin label, unit names) for each bin, from (unit name, percent complete) pairs."""
    bins: list[tuple[str, list[str]]] = [(bin_label(lo, hi), []) for lo, hi in BINS]
    for name, percent in items:
        for i, (lo, hi) in enumerate(BINS):
            if percent >= lo and (hi is None or percent < hi):
                bins[i][1].append(name)
                break
    return bins


def completion_histogram(items: Sequence[tuple[str, Decimal]], *, title: str) -> str:
    """How many lines fall in each completion band (0–20% … 100% and over)."""
    width, height = 720, 260
    left, right, top, bottom = 64.0, 704.0, 30.0, 216.0
    bins = completion_bins(items)
    summary = "，".join(f"{label} {len(names)}个" for label, names in bins)
    label = f"{title}：共{len(items)}个有任务数的单位，{summary}"
    if not items:
        return _empty(width, height, f"{title}：本月没有有任务数的单位", "本月没有有任务数的单位")
    axis_top, step = nice_ceiling(max(len(names) for _, names in bins), whole=True)
    parts = _open(width, height, label)
    _y_axis(parts, left, right, top, bottom, axis_top, step)
    slot = (right - left) / len(bins)
    for i, (text, names) in enumerate(bins):
        h = (bottom - top) * len(names) / axis_top
        x = left + slot * i + slot * 0.15
        shown = "、".join(names[:NAMES_IN_TOOLTIP])
        if len(names) > NAMES_IN_TOOLTIP:
            shown += f" 等{len(names)}个"
        tip = f"完成率 {text}：{len(names)}个单位" + (f"：{shown}" if names else "")
        colour = MET_COLOUR if BINS[i][1] is None else BIN_COLOUR
        parts.append(
            f'<rect x="{_f(x)}" y="{_f(bottom - h)}" width="{_f(slot * 0.7)}" height="{_f(h)}" '
            f'fill="{colour}"><title>{_esc(tip)}</title></rect>'
        )
        parts.append(
            f'<text x="{_f(x + slot * 0.35)}" y="{_f(bottom - h - 4)}" text-anchor="middle" '
            f'{FONT} fill="{INK}">{len(names)}</text>'
        )
        parts.append(
            f'<text x="{_f(left + slot * (i + 0.5))}" y="{_f(bottom + 18)}" '
            f'text-anchor="middle" {FONT} fill="{INK}">{_esc(text)}</text>'
        )
    parts.append(f'<text x="14" y="{_f(top - 12)}" {FONT} fill="{INK}">单位数</text>')
    parts.append(
        f'<text x="{_f((left + right) / 2)}" y="{height - 6}" text-anchor="middle" {FONT} '
        f'fill="{INK}">完成率（已完成 ÷ 计划数）</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
