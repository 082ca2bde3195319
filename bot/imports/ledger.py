"""`ledger import`: the 用血/报销 ledger → `BloodUse` rows (SPEC §5, §8).

Blood already used free or reimbursed reduces the donor's remaining allowance. Each row
names an existing donor by ID number or donor code (matched by keyed hash, never stored in
clear; a ledger never creates donors), the date, the volume and the relation of the person
who used the blood. A relation the benefits engine does not know is refused, never guessed.

Re-importing a file changes nothing: a row whose (donor, date, volume, relation, note) is
already in the ledger is skipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, SystemClock
from bot.imports import values
from bot.imports.columns import LEDGER
from bot.imports.common import ensure_jurisdictions, import_transaction
from bot.imports.issues import IssueList
from bot.imports.reader import open_table
from bot.imports.values import CellError
from bot.policy.dates import local_date
from bot.policy.model import RELATIONS
from bot.privacy import keyed_hash
from bot.settings import Settings
from models.audit import audit
from models.donations import BloodUse, Donor

MAX_VOLUME_ML = 5000

# The office's words → the engine's relation names ("self" is the donor).
RELATION_NAMES: dict[str, str] = {
    "本人": "self",
    "自己": "self",
    "献血者本人": "self",
    "配偶": "spouse",
    "夫妻": "spouse",
    "丈夫": "spouse",
    "妻子": "spouse",
    "父母": "parents",
    "父亲": "parents",
    "母亲": "parents",
    "子女": "children",
    "儿子": "children",
    "女儿": "children",
    "兄弟姐妹": "siblings",
    "配偶父母": "spouse_parents",
    "配偶的父母": "spouse_parents",
    "岳父母": "spouse_parents",
    "公婆": "spouse_parents",
    "祖父母": "grandparents",
    "外祖父母": "grandparents",
    "孙子女": "grandchildren",
    "外孙子女": "grandchildren",
}
KNOWN_RELATIONS = ("self", *RELATIONS)

NaturalKey = tuple[int, date, int, str, str]  # donor id, used_at, volume_ml, relation, note


@dataclass(frozen=True)
class LedgerRow:
    row: int
    jurisdiction: str
    donor_id: str  # as written; only its keyed hash is ever stored or compared
    used_at: date
    volume_ml: int
    relation: str
    note: str


@dataclass
class LedgerImportReport:
    file: str
    dry_run: bool
    rows: int = 0
    added: int = 0
    added_ml: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return self.added > 0


def relation(value: Any) -> str:
    """「配偶」/ `spouse` → "spouse"; anything the engine does not know is an error."""
    raw = values.folded(value)
    if not raw:
        raise CellError("关系不能为空")
    name = RELATION_NAMES.get(raw) or (raw.casefold() if raw.casefold() in KNOWN_RELATIONS else "")
    if not name:
        words = "、".join(dict.fromkeys(k for k in RELATION_NAMES if len(k) >= 2))
        raise CellError(f"关系「{raw}」无法识别；可写：{words}")
    return name


def volume(value: Any) -> int:
    ml = values.integer(value, "用血量", minimum=1)
    if ml > MAX_VOLUME_ML:
        raise CellError(f"用血量「{ml}」超过 {MAX_VOLUME_ML} 毫升，请核对")
    return ml


_CELLS = {
    "jurisdiction": lambda v: values.folded(values.required(v, "辖区")),
    "donor_id": lambda v: values.folded(values.required(v, "身份证号/献血者编号")),
    "used_at": lambda v: values.parse_date(v, "用血日期"),
    "volume_ml": volume,
    "relation": relation,
    "note": values.text,
}


async def import_ledger_file(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    path: Path,
    *,
    dry_run: bool = False,
    actor: str = "cli",
    clock: Clock | None = None,
) -> LedgerImportReport:
    """Import a 用血/报销 CSV/XLSX; raise ImportFailed (nothing written) listing every problem."""
    issues = IssueList()
    now = (clock or SystemClock()).now()
    with open_table(path, LEDGER, issues) as table:
        rows = _parse(table.file, table.rows, table.headers, settings, now, issues)
        # no early raise: unknown donors are reported together with the cell errors
        report = LedgerImportReport(table.file, dry_run, rows=len(rows))
        async with import_transaction(sessions, dry_run=dry_run) as session:
            await _store(session, settings, rows, report, issues, table.headers)
            issues.raise_if_any()
            for code in dict.fromkeys(r.jurisdiction for r in rows):
                audit(
                    session,
                    actor,
                    "ledger.import",
                    code,
                    file=report.file,
                    added=report.added,
                    unchanged=report.unchanged,
                )
    return report


def _parse(
    file: str,
    rows: Any,
    headers: dict[str, str],
    settings: Settings,
    now: datetime,
    issues: IssueList,
) -> list[LedgerRow]:
    parsed: list[LedgerRow] = []
    seen: dict[tuple[Any, ...], int] = {}
    key = settings.id_hash_key.get_secret_value()
    for row_no, row in rows:
        cells: dict[str, Any] = {}
        for column, parse in _CELLS.items():
            try:
                cells[column] = parse(row.get(column))
            except CellError as exc:
                issues.add(file, row_no, headers.get(column, column), str(exc))
        if len(cells) < len(_CELLS):
            continue
        code = cells["jurisdiction"]
        if code not in settings.jurisdictions:
            known = "、".join(sorted(settings.jurisdictions))
            issues.add(
                file,
                row_no,
                headers["jurisdiction"],
                f"辖区「{code}」不在账号配置文件中；已配置：{known}",
            )
            continue
        today = local_date(now, settings.jurisdiction(code).timezone)
        if cells["used_at"] > today:
            issues.add(
                file,
                row_no,
                headers["used_at"],
                f"用血日期「{cells['used_at'].isoformat()}」晚于今天（{today.isoformat()}）",
            )
            continue
        dup = (
            code,
            keyed_hash(key, cells["donor_id"]),
            cells["used_at"],
            cells["volume_ml"],
            cells["relation"],
            cells["note"],
        )
        if dup in seen:
            issues.add(
                file, row_no, None, f"与第{seen[dup]}行重复（同一献血者、日期、用血量、关系）"
            )
            continue
        seen[dup] = row_no
        parsed.append(LedgerRow(row_no, **cells))
    return parsed


async def _store(
    session: AsyncSession,
    settings: Settings,
    rows: list[LedgerRow],
    report: LedgerImportReport,
    issues: IssueList,
    headers: dict[str, str],
) -> None:
    key = settings.id_hash_key.get_secret_value()
    await ensure_jurisdictions(session, settings, {r.jurisdiction for r in rows})
    for code in dict.fromkeys(r.jurisdiction for r in rows):
        mine = [r for r in rows if r.jurisdiction == code]
        hashes = {keyed_hash(key, r.donor_id) for r in mine}
        donors: dict[str, int] = {}
        for chunk in _chunks(sorted(hashes), 500):
            found = await session.execute(
                select(Donor.id_hash, Donor.id).where(
                    Donor.jurisdiction == code, Donor.id_hash.in_(chunk)
                )
            )
            donors.update({h: i for h, i in found})
        existing: Counter[NaturalKey] = Counter()
        for chunk_ids in _chunks(sorted(set(donors.values())), 500):
            uses = await session.scalars(select(BloodUse).where(BloodUse.donor_id.in_(chunk_ids)))
            existing.update((u.donor_id, u.used_at, u.volume_ml, u.relation, u.note) for u in uses)
        for r in mine:
            donor_id = donors.get(keyed_hash(key, r.donor_id))
            if donor_id is None:
                issues.add(
                    report.file,
                    r.row,
                    headers["donor_id"],
                    f"辖区「{code}」没有此献血者（请先导入献血记录；用血台账不会新建献血者）",
                )
                continue
            natural = (donor_id, r.used_at, r.volume_ml, r.relation, r.note)
            if existing[natural]:
                report.unchanged += 1
                continue
            session.add(
                BloodUse(
                    donor_id=donor_id,
                    used_at=r.used_at,
                    volume_ml=r.volume_ml,
                    relation=r.relation,
                    note=r.note,
                )
            )
            report.added += 1
            report.added_ml += r.volume_ml
    await session.flush()


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def report_lines(report: LedgerImportReport) -> list[str]:
    """The CLI's summary: counts only (no ID number is ever printed)."""
    lines = [f"读取 {report.file}：{report.rows} 行"]
    if report.added:
        lines.append(f"新增用血记录 {report.added} 条，共 {report.added_ml} 毫升")
    if report.unchanged:
        lines.append(f"已有（跳过）{report.unchanged} 条")
    if report.dry_run:
        lines.append(
            "试运行：以上是导入将做的改动，数据库未写入。"
            if report.changed
            else "试运行：与数据库中已有内容相同，导入不会做任何改动。"
        )
    else:
        lines.append("已导入。" if report.changed else "与数据库中已有内容相同，未做任何改动。")
    return lines
