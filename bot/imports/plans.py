"""`import_plan_file`: a plan file (one or several plans) → the database, plus a reconciliation.

One transaction: every error is collected first and nothing is written if there is any; a
dry run does the same work and rolls it back, so it shows exactly what a real run would do.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.imports.checks import CheckResult, evaluate, load_checks
from bot.imports.columns import PLAN
from bot.imports.common import ensure_jurisdictions, import_transaction
from bot.imports.issues import IssueList
from bot.imports.plan_rows import PlanRow, parse_plan_rows, redate
from bot.imports.plan_store import PlanDiff, UnitChanges, store_plan, store_units
from bot.imports.reader import open_table
from bot.imports.structure import structural_checks
from bot.settings import Settings
from models.audit import audit


@dataclass(frozen=True)
class PlanFile:
    """A plan file read and checked, before anything touches the database."""

    file: str
    rows: list[PlanRow]
    checks: list[CheckResult]
    checks_file: str | None
    jurisdictions: list[str]  # those the rows and the checks file name
    source: str  # the notice, from the checks file, or the file name


@dataclass
class PlanImportReport:
    file: str
    dry_run: bool
    rows: int = 0
    plans: list[PlanDiff] = field(default_factory=list)
    jurisdictions_created: list[str] = field(default_factory=list)
    units: UnitChanges = field(default_factory=UnitChanges)
    checks: list[CheckResult] = field(default_factory=list)
    checks_file: str | None = None

    @property
    def changed(self) -> bool:
        return bool(
            self.jurisdictions_created
            or self.units.created
            or self.units.updated
            or any(p.has_changes for p in self.plans)
        )

    def check_counts(self) -> Counter[str]:
        return Counter(c.status for c in self.checks)


def read_plan_file(path: Path, settings: Settings) -> PlanFile:
    """Parse, validate and reconcile a plan file; raise ImportFailed listing every problem."""
    issues = IssueList()
    with open_table(path, PLAN, issues) as table:
        rows = parse_plan_rows(table.file, table.rows, table.headers, settings, issues)
    checks_path = path.with_name(f"{path.stem}.checks.json")
    doc = load_checks(checks_path, issues)
    checks: list[CheckResult] = []
    if doc is not None:
        if doc["jurisdiction"] not in settings.jurisdictions:
            issues.add(
                checks_path.name, None, None, f"辖区「{doc['jurisdiction']}」不在账号配置文件中"
            )
        checks = evaluate(doc, rows, checks_path.name, issues)
    checks += structural_checks(rows, doc)
    issues.raise_if_any()
    codes = [r.jurisdiction for r in rows] + ([doc["jurisdiction"]] if doc else [])
    return PlanFile(
        file=path.name,
        rows=rows,
        checks=checks,
        checks_file=checks_path.name if doc is not None else None,
        jurisdictions=list(dict.fromkeys(codes)),
        source=(str(doc.get("document") or "") if doc else "")[:255] or path.name,
    )


async def import_plan_file(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    path: Path,
    *,
    dry_run: bool = False,
    actor: str = "cli",
    year_override: int | None = None,
    demo: bool = False,
) -> PlanImportReport:
    """Import a canonical plan file (CSV or XLSX); raise ImportFailed listing every problem.

    `year_override` imports a copy re-dated to that year; `demo=True` marks its plans
    `Plan.is_demo` (the demo loader's current-year copies), kept apart from the real ones.
    """
    plan_file = read_plan_file(path, settings)
    rows = plan_file.rows if year_override is None else redate(plan_file.rows, year_override)
    report = PlanImportReport(plan_file.file, dry_run, rows=len(rows))
    report.checks, report.checks_file = plan_file.checks, plan_file.checks_file
    async with import_transaction(sessions, dry_run=dry_run) as session:
        report.jurisdictions_created = await ensure_jurisdictions(
            session, settings, plan_file.jurisdictions
        )
        await _store(session, report, rows, demo=demo, source=plan_file.source)
        _audit(session, report, actor)
    return report


async def _store(
    session: AsyncSession,
    report: PlanImportReport,
    rows: list[PlanRow],
    *,
    demo: bool,
    source: str,
) -> None:
    for jurisdiction in dict.fromkeys(r.jurisdiction for r in rows):
        mine = [r for r in rows if r.jurisdiction == jurisdiction]
        units, changes = await store_units(session, report.file, jurisdiction, mine)
        report.units.created += changes.created
        report.units.updated += changes.updated
        report.units.matched += changes.matched
        for key in dict.fromkeys(r.plan_key for r in mine):
            plan_rows = [r for r in mine if r.plan_key == key]
            report.plans.append(
                await store_plan(session, key, plan_rows, units, demo=demo, source=source)
            )


def _audit(session: AsyncSession, report: PlanImportReport, actor: str) -> None:
    """One entry per jurisdiction touched, even when nothing changed (an import is an act)."""
    for jurisdiction in dict.fromkeys(p.jurisdiction for p in report.plans):
        plans = [p for p in report.plans if p.jurisdiction == jurisdiction]
        audit(
            session,
            actor,
            "plan.import",
            jurisdiction,
            file=report.file,
            plans=[p.label for p in plans],
            added=sum(len(p.added) for p in plans),
            removed=sum(len(p.removed) for p in plans),
            changed=sum(len(p.changed) for p in plans),
            units_created=len(report.units.created),
            checks=dict(report.check_counts()),
        )
