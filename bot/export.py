"""The progress 通报 as an XLSX workbook: a year sheet and one sheet per month.

Every number comes from `models.progress.jurisdiction_progress` — the same query the chat
replies and broadcasts use. Rows behind the expected pace are highlighted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.plans import JurisdictionRow
from models.progress import (
    DEFAULT_PLATELET_UNITS,
    JurisdictionProgress,
    LineProgress,
    Totals,
    jurisdiction_progress,
    summary_by_month,
)
from models.progress_summary import SCHEDULE_KINDS

HEADER = (
    "序号",
    "单位",
    "类别",
    "时段",
    "计量",
    "计划数",
    "已完成",
    "尚差",
    "超额",
    "完成率",
    "按进度应完成",
    "状态",
    "备注",
)
WIDTHS = (6, 34, 12, 12, 6, 10, 10, 10, 8, 9, 12, 14, 40)
PERCENT_COLUMN = HEADER.index("完成率") + 1
HEADER_ROW = 3
STATUS_TEXT = {
    "standby": "应急献血（无任务数）",
    "needs_headcount": "按人数比例（未提供人数）",
    "no_target": "无任务数",
    "upcoming": "时段未到",
    "not_started": "尚未献血",
    "behind": "落后于进度",
    "ahead": "进度正常",
    "met": "恰好完成",
    "over": "超额完成",
}
BEHIND_FILL = PatternFill("solid", fgColor="FFC7CE")
TOTAL_FONT = Font(bold=True)


def _number(value: Decimal | int | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == int(value) else float(value)


def _note(line: LineProgress, month: int | None) -> str:
    parts = []
    if line.needs_headcount:
        parts.append(f"任务为人数的{line.share_percent}%，需先登记单位人数")
    elif line.target_source == "headcount":
        parts.append(f"{line.headcount}人×{line.share_percent}%")
    elif line.target_source == "members":
        parts.append("分组：计划数为成员单位之和")
    if month is not None and line.spans_months and line.period.first_month != month:
        parts.append(
            f"{line.period.first_month}月起的跨月任务，计入{line.period.first_month}月合计"
        )
    if line.note:
        parts.append(line.note)
    return "；".join(parts)


def _line_row(n: int, line: LineProgress, month: int | None) -> list[object]:
    ratio = line.ratio
    return [
        n,
        line.unit_name,
        line.category or "",
        line.period.label,
        line.measure,
        line.target,
        _number(line.done),
        _number(line.remaining),
        _number(line.over),
        float(ratio) if ratio is not None else None,
        _number(line.expected) if line.status != "upcoming" else None,
        STATUS_TEXT.get(line.status, line.status),
        _note(line, month),
    ]


def _totals_row(label: str, totals: Totals) -> list[object]:
    ratio = float(totals.done / totals.target) if totals.target else None
    return [
        "",
        label,
        "",
        "",
        totals.measure,
        totals.target,
        _number(totals.done),
        _number(totals.remaining),
        _number(totals.over),
        ratio,
        None,
        f"落后{totals.behind}个" if totals.behind else "",
        "",
    ]


def _sheet(
    ws: Worksheet,
    title: str,
    subtitle: str,
    lines: Sequence[LineProgress],
    totals: Sequence[tuple[str, Totals]],
    month: int | None,
) -> None:
    ws.append([title])
    ws.append([subtitle])
    ws.append(list(HEADER))
    last = get_column_letter(len(HEADER))
    ws.merge_cells(f"A1:{last}1")
    ws.merge_cells(f"A2:{last}2")
    ws["A1"].font = Font(bold=True, size=14)
    ws["A1"].alignment = Alignment(horizontal="center")
    for cell in ws[HEADER_ROW]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center")
    for n, line in enumerate(lines, start=1):
        ws.append(_line_row(n, line, month))
        if line.behind_pace:
            for cell in ws[ws.max_row]:
                cell.fill = BEHIND_FILL
    if not lines:
        ws.append(["", "本月无计划安排"])
    for label, total in totals:
        ws.append(_totals_row(label, total))
        for cell in ws[ws.max_row]:
            cell.font = TOTAL_FONT
    for row in ws.iter_rows(min_row=HEADER_ROW + 1, min_col=PERCENT_COLUMN, max_col=PERCENT_COLUMN):
        row[0].number_format = "0.0%"
    for i, width in enumerate(WIDTHS, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = f"A{HEADER_ROW + 1}"


def build_workbook(progress: JurisdictionProgress, jurisdiction_name: str) -> Workbook:
    """A year sheet (every line) and twelve month sheets (the monthly schedule)."""
    wb = Workbook()
    year_ws = wb.active
    assert year_ws is not None
    year_ws.title = "全年"
    demo = "（演示数据）" if progress.is_demo else ""
    head = f"{jurisdiction_name}{progress.year}年无偿献血计划完成情况通报{demo}"
    subtitle = (
        f"统计截至{progress.as_of:%Y年%m月%d日}。红底：落后于按天数计算的进度"
        "（计划数×已过天数/时段天数）。合计不重复计算「其中」单位。"
    )
    year_totals = [
        (f"合计（{'分月安排' if kind else '年度计划'}）", t)
        for kind in (False, True)
        for t in progress.totals(
            line for line in progress.lines if (line.kind in SCHEDULE_KINDS) == kind
        )
    ]
    _sheet(year_ws, f"{head}（全年）", subtitle, progress.lines, year_totals, None)
    for summary in summary_by_month(progress):
        ws = wb.create_sheet(f"{summary.month}月")
        totals = [(f"{summary.month}月合计", t) for t in summary.totals]
        title = f"{head}（{summary.month}月）"
        _sheet(ws, title, subtitle, summary.lines, totals, summary.month)
    return wb


async def export_progress(
    session: AsyncSession,
    jurisdiction: str,
    year: int,
    out: Path,
    *,
    today: date,
    platelet_units: float = DEFAULT_PLATELET_UNITS,
) -> JurisdictionProgress:
    """Compute the year's progress as of `today` and write the workbook to `out`."""
    row = await session.get(JurisdictionRow, jurisdiction)
    name = row.name if row else jurisdiction
    progress = await jurisdiction_progress(
        session, jurisdiction, year, today=today, platelet_units=platelet_units
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    build_workbook(progress, name).save(out)
    return progress


async def jurisdiction_timezone(session: AsyncSession, jurisdiction: str) -> str | None:
    return await session.scalar(
        select(JurisdictionRow.timezone).where(JurisdictionRow.code == jurisdiction)
    )
