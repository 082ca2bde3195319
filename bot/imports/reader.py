"""Read an import file row by row: CSV (UTF-8 with or without BOM, GBK/GB18030, UTF-16) or XLSX.

Nothing is loaded whole: CSV is streamed through `csv.reader`, XLSX through openpyxl's read-only
mode. The header row is mapped to canonical columns (Chinese headers accepted); problems with
the header stop the import at once, problems with a row are collected by the caller.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bot.imports.columns import TableSpec, header_key, strip_parenthetical
from bot.imports.issues import ImportFailed, ImportIssue, IssueList

Row = dict[str, Any]
_CHUNK = 1 << 20


@dataclass
class Table:
    file: str
    headers: dict[str, str]  # canonical column → the header as the file writes it
    rows: Iterator[tuple[int, Row]]
    estimated_rows: int | None = None

    def column(self, name: str) -> str:
        return self.headers.get(name, name)


@contextmanager
def open_table(path: Path, spec: TableSpec, issues: IssueList) -> Iterator[Table]:
    """Open `path`, check its header against `spec` and yield its rows (header = row 1)."""
    suffix = path.suffix.lower()
    if suffix == ".xls":
        _fail(path, None, "旧版 .xls 格式不支持：请在 Excel 中另存为 .xlsx 或 CSV")
    if suffix in (".xlsx", ".xlsm"):
        from bot.imports.xlsx import open_xlsx

        with open_xlsx(path, spec, issues) as table:
            yield table
        return
    encoding, lines = detect_encoding(path)
    with path.open(encoding=encoding, newline="") as fh:
        yield _csv_table(path, fh, spec, issues, max(lines - 1, 0))


def detect_encoding(path: Path) -> tuple[str, int]:
    """(encoding, line count): a BOM decides; else UTF-8 if the whole file decodes, else GB18030.

    GB18030 is a superset of GBK, which is what Excel writes for 「CSV」 on Chinese Windows.
    """
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", _count_lines(path, "utf-8-sig")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", _count_lines(path, "utf-16")
    for encoding in ("utf-8", "gb18030"):
        try:
            return encoding, _count_lines(path, encoding)
        except UnicodeDecodeError:
            continue
    _fail(path, None, "无法识别文件编码：请另存为 UTF-8 或 GBK 编码的 CSV，或 .xlsx")
    raise AssertionError("unreachable")


def _count_lines(path: Path, encoding: str) -> int:
    """Decode the whole file in chunks (raises UnicodeDecodeError) and count its lines."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            lines += decoder.decode(chunk).count("\n")
        decoder.decode(b"", final=True)
    return lines


def _csv_table(path: Path, fh: TextIO, spec: TableSpec, issues: IssueList, estimated: int) -> Table:
    first = fh.readline()
    if not first.strip(" \r\n\t,;"):
        _fail(path, None, "文件是空的（没有表头行）")
    delimiter = max((",", "\t", ";"), key=first.count)
    header = next(csv.reader([first], delimiter=delimiter))
    headers, positions = map_header(path.name, header, spec)
    reader = csv.reader(fh, delimiter=delimiter)
    return Table(path.name, headers, _csv_rows(path.name, reader, positions, issues), estimated)


def _csv_rows(
    file: str, reader: Iterator[list[str]], positions: dict[int, str], issues: IssueList
) -> Iterator[tuple[int, Row]]:
    width = max(positions) + 1
    for row_no, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            issues.add(
                file, row_no, None, f"比表头多出 {len(cells) - width} 列（表头只有 {width} 列）"
            )
        yield (
            row_no,
            {
                column: (cells[i].strip() or None) if i < len(cells) else None
                for i, column in positions.items()
            },
        )


def map_header(
    file: str, header: list[Any], spec: TableSpec
) -> tuple[dict[str, str], dict[int, str]]:
    """(canonical → header text, cell position → canonical); unknown or missing columns fail."""
    lookup = spec.lookup()
    headers: dict[str, str] = {}
    positions: dict[int, str] = {}
    problems: list[ImportIssue] = []
    for i, cell in enumerate(header):
        text = "" if cell is None else str(cell).strip()
        if not text:
            continue
        key = header_key(text)
        column = lookup.get(key) or lookup.get(strip_parenthetical(key))
        if column is None:
            problems.append(
                ImportIssue(file, 1, text, f"未知的列；{spec.label}文件可用的列：{_known(spec)}")
            )
        elif column in headers:
            problems.append(
                ImportIssue(file, 1, text, f"与「{headers[column]}」是同一列（{column}），重复")
            )
        else:
            headers[column] = text
            positions[i] = column
    for column in spec.columns:
        if column in spec.required and column not in headers:
            names = "、".join(spec.aliases.get(column, ())[:2])
            hint = f"（或写作 {names}）" if names else ""
            problems.append(ImportIssue(file, 1, None, f"缺少必需的列 {column}{hint}"))
    if problems:
        raise ImportFailed(problems)
    return headers, positions


def _known(spec: TableSpec) -> str:
    return "、".join(
        f"{c}（{spec.aliases[c][0]}）" if spec.aliases.get(c) else c for c in spec.columns
    )


def _fail(path: Path, row: int | None, message: str) -> None:
    raise ImportFailed([ImportIssue(path.name, row, None, message)])


def cell_ref(ref: str) -> tuple[int, int]:
    """「B12」→ (row 12, column 2)."""
    match = re.fullmatch(r"([A-Z]+)(\d+)", ref)
    if match is None:
        raise ValueError(ref)
    col = 0
    for ch in match.group(1):
        col = col * 26 + ord(ch) - 64
    return int(match.group(2)), col
