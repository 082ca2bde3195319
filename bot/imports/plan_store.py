"""Write validated plan rows: units (category, parent, group flag) and each plan's lines, as a diff.

Unit names go through the one resolver: an existing unit is reused when the name matches it
exactly, by alias or by normalised form (and the report says so); otherwise a unit is created.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.imports.issues import ImportFailed, ImportIssue
from bot.imports.plan_rows import KIND_LABELS, PlanRow
from models.periods import format_months
from models.plans import Plan, PlanLine, Unit
from models.units import UnitDirectory, normalize_unit_name


@dataclass(frozen=True)
class LineView:
    """A plan line as a diff shows it."""

    unit: str
    kind: str
    months: int
    target: str
    note: str = ""

    def __str__(self) -> str:
        return f"{self.unit} {format_months(self.months)} {KIND_LABELS[self.kind]} {self.target}"


@dataclass
class PlanDiff:
    jurisdiction: str
    year: int
    measure: str
    is_demo: bool
    created: bool = False
    added: list[LineView] = field(default_factory=list)
    removed: list[LineView] = field(default_factory=list)
    changed: list[tuple[LineView, LineView]] = field(default_factory=list)
    unchanged: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # lines by kind once imported

    @property
    def has_changes(self) -> bool:
        return self.created or bool(self.added or self.removed or self.changed)

    @property
    def label(self) -> str:
        demo = "（演示）" if self.is_demo else ""
        return f"{self.jurisdiction} {self.year} 年 {self.measure}{demo}"


@dataclass
class UnitChanges:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    matched: list[tuple[str, str, str]] = field(default_factory=list)  # (file name, unit, how)


async def store_units(
    session: AsyncSession, file: str, jurisdiction: str, rows: list[PlanRow]
) -> tuple[dict[str, Unit], UnitChanges]:
    """name in the file → Unit (created or updated); one directory load per jurisdiction."""
    directory = await UnitDirectory.load(session, jurisdiction)
    loaded = await session.scalars(select(Unit).where(Unit.jurisdiction == jurisdiction))
    by_id = {u.id: u for u in loaded}
    changes = UnitChanges()
    units: dict[str, Unit] = {}
    for r in rows:
        if r.unit in units:
            continue
        found = directory.resolve(r.unit)
        if found.unit is not None:
            units[r.unit] = by_id[found.unit.id]
            if found.status != "exact":
                changes.matched.append((r.unit, found.unit.name, found.status))
        elif found.status == "ambiguous" and all(
            normalize_unit_name(c.name) == found.normalized for c in found.choices
        ):
            names = "、".join(c.name for c in found.choices)
            raise ImportFailed(
                [ImportIssue(file, r.row, None, f"单位「{r.unit}」可能是：{names}；请写全称")]
            )
        else:
            unit = Unit(jurisdiction=jurisdiction, name=r.unit, normalized=found.normalized)
            session.add(unit)
            await session.flush()
            directory.add(unit)
            units[r.unit] = unit
            changes.created.append(r.unit)
    _update_attributes(rows, units, changes)
    await session.flush()
    return units, changes


def _update_attributes(rows: list[PlanRow], units: dict[str, Unit], changes: UnitChanges) -> None:
    """Category and parent as the file gives them (never cleared); group headings flagged."""
    for r in rows:
        unit = units[r.unit]
        what: list[str] = []
        if r.category and unit.category != r.category:
            what.append(f"类别 {unit.category or '（无）'} → {r.category}")
            unit.category = r.category
        parent = units[r.parent] if r.parent else None
        if parent is not None and unit.parent_id != parent.id:
            what.append(f"上级 → {parent.name}")
            unit.parent_id = parent.id
        if r.kind == "group" and not unit.is_group:
            unit.is_group = True
            what.append("标为分组")
        if what and r.unit not in changes.created:
            changes.updated.append(f"{r.unit}：{'；'.join(what)}")


async def store_plan(
    session: AsyncSession,
    key: tuple[str, int, str],
    rows: list[PlanRow],
    units: dict[str, Unit],
    *,
    demo: bool,
    source: str,
) -> PlanDiff:
    """Make the plan's lines exactly the file's rows; report what was added, removed, changed."""
    jurisdiction, year, measure = key
    diff = PlanDiff(jurisdiction, year, measure, demo)
    plan = await session.scalar(
        select(Plan).where(
            Plan.jurisdiction == jurisdiction,
            Plan.year == year,
            Plan.measure == measure,
            Plan.is_demo == demo,
        )
    )
    if plan is None:
        plan = Plan(
            jurisdiction=jurisdiction, year=year, measure=measure, source=source, is_demo=demo
        )
        session.add(plan)
        await session.flush()
        diff.created = True
    elif plan.source != source:
        plan.source = source
    names = {u.id: u.name for u in units.values()}
    names.update(await _unit_names(session, plan.id))
    existing = {
        (line.unit_id, line.kind, line.months): line
        for line in await session.scalars(select(PlanLine).where(PlanLine.plan_id == plan.id))
    }
    wanted = {(units[r.unit].id, r.kind, r.months): r for r in rows}
    for key_, line in existing.items():
        if key_ not in wanted:
            diff.removed.append(_view_line(line, names[line.unit_id]))
            await session.delete(line)
    for key_, r in wanted.items():
        current = existing.get(key_)
        if current is None:
            session.add(_new_line(plan.id, key_[0], r))
            diff.added.append(_view_row(r))
        elif _differs(current, r):
            diff.changed.append((_view_line(current, r.unit), _view_row(r)))
            _copy(current, r)
        else:
            current.line_no = r.row
            diff.unchanged += 1
    for r in rows:
        diff.kinds[r.kind] = diff.kinds.get(r.kind, 0) + 1
    await session.flush()
    return diff


async def _unit_names(session: AsyncSession, plan_id: int) -> dict[int, str]:
    rows = await session.execute(
        select(Unit.id, Unit.name)
        .join(PlanLine, PlanLine.unit_id == Unit.id)
        .where(PlanLine.plan_id == plan_id)
    )
    return {unit_id: name for unit_id, name in rows}


def _new_line(plan_id: int, unit_id: int, r: PlanRow) -> PlanLine:
    line = PlanLine(plan_id=plan_id, unit_id=unit_id, kind=r.kind, months=r.months)
    _copy(line, r)
    return line


def _copy(line: PlanLine, r: PlanRow) -> None:
    line.month_text = r.month_text[:32]
    line.target = r.target
    line.share_percent = r.share_percent
    line.note = r.note
    line.line_no = r.row


def _differs(line: PlanLine, r: PlanRow) -> bool:
    return (line.target, line.share_percent, line.note, line.month_text) != (
        r.target,
        r.share_percent,
        r.note,
        r.month_text[:32],
    )


def _view_row(r: PlanRow) -> LineView:
    return LineView(r.unit, r.kind, r.months, r.target_text(), r.note)


def _view_line(line: PlanLine, unit: str) -> LineView:
    if line.share_percent is not None:
        target = f"{line.share_percent}%"
    else:
        target = "—" if line.target is None else str(line.target)
    return LineView(unit, line.kind, line.months, target, line.note)
