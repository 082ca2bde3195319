"""XLSX through openpyxl's read-only mode (streamed), refusing merged cells with their addresses."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.imports.columns import TableSpec
from bot.imports.issues import ImportFailed, ImportIssue, IssueList
from bot.imports.reader import Row, Table, cell_ref, map_header

_MERGE = re.compile(rb'<(?:\w+:)?mergeCell ref="([A-Z]+\d+:[A-Z]+\d+)"')


@contextmanager
def open_xlsx(path: Path, spec: TableSpec, issues: IssueList) -> Iterator[Table]:
    """The first worksheet; its first row is the header."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ImportFailed(
            [ImportIssue(path.name, None, None, f"不是有效的 .xlsx 文件（{exc}）")]
        ) from exc
    try:
        sheet = workbook.worksheets[0]
        _refuse_merged_cells(path.name, sheet)
        rows = sheet.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None or not any(v not in (None, "") for v in header):
            raise ImportFailed([ImportIssue(path.name, None, None, "文件是空的（没有表头行）")])
        headers, positions = map_header(path.name, list(header), spec)
        estimated = (sheet.max_row - 1) if sheet.max_row else None
        yield Table(path.name, headers, _xlsx_rows(path.name, rows, positions, issues), estimated)
    finally:
        workbook.close()


def _refuse_merged_cells(file: str, sheet: Any) -> None:
    """Merged cells leave all but their first cell empty: say which, before reading anything."""
    merged = _merged_ranges(sheet)
    if not merged:
        return
    in_header = [r for r in merged if cell_ref(r.split(":")[0])[0] == 1]
    if in_header:
        message = f"表头有合并单元格 {'、'.join(in_header)}：请取消合并，每列一个表头"
    else:
        message = (
            f"有合并单元格 {'、'.join(merged[:20])}：合并后只有第一格有值，请取消合并并填满每一格"
        )
    raise ImportFailed([ImportIssue(file, None, None, message)])


def _merged_ranges(sheet: Any) -> list[str]:
    """Scan the worksheet XML for <mergeCell ref=…> (read-only sheets do not expose them)."""
    found: list[str] = []
    tail = b""
    with sheet._get_source() as src:
        while chunk := src.read(1 << 20):
            data = tail + chunk
            found.extend(m.decode() for m in _MERGE.findall(data))
            tail = data[-200:]
            found = list(dict.fromkeys(found))
    return found


def _xlsx_rows(
    file: str, rows: Iterator[tuple[Any, ...]], positions: dict[int, str], issues: IssueList
) -> Iterator[tuple[int, Row]]:
    width = max(positions) + 1
    for row_no, values in enumerate(rows, start=2):
        cells = [None if v is None or (isinstance(v, str) and not v.strip()) else v for v in values]
        if not any(c is not None for c in cells):
            continue
        extra = [c for c in cells[width:] if c is not None]
        if extra:
            issues.add(file, row_no, None, f"表头以外的列有内容（{len(extra)} 格）")
        yield (
            row_no,
            {
                column: _clean(cells[i]) if i < len(cells) else None
                for i, column in positions.items()
            },
        )


def _clean(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value
