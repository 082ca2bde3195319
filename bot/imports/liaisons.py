"""`liaisons import`: the office's 联络员 directory (the 禄劝 shape) → `Liaison` rows.

The phone is kept only as a keyed hash plus its last four digits (for 「绑定 手机号后四位」);
the name is kept as the office wrote it but is never printed unmasked.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.imports import values
from bot.imports.columns import LIAISONS
from bot.imports.common import ensure_jurisdictions, import_transaction, unresolved_message
from bot.imports.issues import IssueList
from bot.imports.reader import open_table
from bot.imports.values import CellError
from bot.privacy import keyed_hash, mask_name, mask_phone
from bot.settings import Settings
from models.audit import audit
from models.people import Liaison
from models.units import UnitDirectory


@dataclass(frozen=True)
class LiaisonRow:
    row: int
    jurisdiction: str
    unit: str
    name: str
    department: str
    title: str
    phone: str  # digits only; never stored

    @property
    def masked(self) -> str:
        return f"{self.unit} {mask_name(self.name)} {mask_phone(self.phone)}"


@dataclass
class LiaisonImportReport:
    file: str
    dry_run: bool
    rows: int = 0
    added: list[str] = field(default_factory=list)  # masked
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated)


def phone_digits(value: Any) -> str:
    """「136-2966-9818」「+86 13629669818」「0871-68999096」→ digits; 7 to 12 of them."""
    raw = values.text(value)
    digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", raw))
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if not 7 <= len(digits) <= 12:
        raise CellError(f"电话「{raw}」不像电话号码（应为 7–12 位数字）")
    return digits


async def import_liaison_file(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    path: Path,
    *,
    dry_run: bool = False,
    actor: str = "cli",
) -> LiaisonImportReport:
    issues = IssueList()
    with open_table(path, LIAISONS, issues) as table:
        rows = _parse(table.file, table.rows, table.headers, settings, issues)
        issues.raise_if_any()
        report = LiaisonImportReport(table.file, dry_run, rows=len(rows))
        async with import_transaction(sessions, dry_run=dry_run) as session:
            await _store(session, settings, rows, report, issues, table.headers)
            issues.raise_if_any()
            for code in dict.fromkeys(r.jurisdiction for r in rows):
                audit(
                    session,
                    actor,
                    "liaisons.import",
                    code,
                    file=report.file,
                    added=len(report.added),
                    updated=len(report.updated),
                )
    return report


def _parse(
    file: str, rows: Any, headers: dict[str, str], settings: Settings, issues: IssueList
) -> list[LiaisonRow]:
    parsed: list[LiaisonRow] = []
    seen: dict[tuple[str, str, str], int] = {}
    for row_no, row in rows:
        cells: dict[str, Any] = {}
        for column, parse in _CELLS.items():
            try:
                cells[column] = parse(row.get(column))
            except CellError as exc:
                issues.add(file, row_no, headers.get(column, column), str(exc))
        if len(cells) < len(_CELLS):
            continue
        if cells["jurisdiction"] not in settings.jurisdictions:
            known = "、".join(sorted(settings.jurisdictions))
            issues.add(
                file,
                row_no,
                headers["jurisdiction"],
                f"辖区「{cells['jurisdiction']}」不在账号配置文件中；已配置：{known}",
            )
            continue
        key = (cells["jurisdiction"], cells["unit"], cells["name"])
        if key in seen:
            issues.add(
                file, row_no, headers["name"], f"与第{seen[key]}行重复（同一单位、同一姓名）"
            )
        seen.setdefault(key, row_no)
        parsed.append(LiaisonRow(row_no, **cells))
    return parsed


_CELLS = {
    "jurisdiction": lambda v: values.folded(values.required(v, "辖区")),
    "unit": lambda v: values.required(v, "单位"),
    "name": lambda v: values.required(v, "姓名"),
    "department": values.text,
    "title": values.text,
    "phone": phone_digits,
}


async def _store(
    session: AsyncSession,
    settings: Settings,
    rows: list[LiaisonRow],
    report: LiaisonImportReport,
    issues: IssueList,
    headers: dict[str, str],
) -> None:
    key = settings.id_hash_key.get_secret_value()
    await ensure_jurisdictions(session, settings, {r.jurisdiction for r in rows})
    for code in dict.fromkeys(r.jurisdiction for r in rows):
        directory = await UnitDirectory.load(session, code)
        existing = {
            (x.unit_id, x.name): x
            for x in await session.scalars(select(Liaison).where(Liaison.jurisdiction == code))
        }
        for r in (r for r in rows if r.jurisdiction == code):
            found = directory.resolve(r.unit)
            if found.unit is None:
                issues.add(report.file, r.row, headers["unit"], unresolved_message(found))
                continue
            phone_hash = keyed_hash(key, r.phone)
            current = existing.get((found.unit.id, r.name))
            if current is None:
                session.add(
                    Liaison(
                        jurisdiction=code,
                        unit_id=found.unit.id,
                        name=r.name,
                        department=r.department,
                        title=r.title,
                        phone_last4=r.phone[-4:],
                        phone_hash=phone_hash,
                    )
                )
                report.added.append(r.masked)
            elif (current.department, current.title, current.phone_hash) != (
                r.department,
                r.title,
                phone_hash,
            ):
                current.department, current.title = r.department, r.title
                current.phone_hash, current.phone_last4 = phone_hash, r.phone[-4:]
                report.updated.append(r.masked)
            else:
                report.unchanged += 1
    await session.flush()
