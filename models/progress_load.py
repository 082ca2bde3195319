"""Loading what progress needs: a unit's subtree (or all units) and a year's plan lines.

Statements are built once with bind parameters: a chat reply does not pay for constructing
them again. Real plans win over demo copies for the same year.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.plans import Plan, PlanLine, Unit
from models.progress_engine import LineRow, UnitNotFound, UnitTree
from models.progress_types import UnitInfo

_UNIT_COLUMNS = (Unit.id, Unit.name, Unit.category, Unit.parent_id, Unit.headcount, Unit.is_group)


def _unit(row: object) -> UnitInfo:
    return UnitInfo(*row)  # type: ignore[misc]


async def load_jurisdiction_units(session: AsyncSession, jurisdiction: str) -> UnitTree:
    rows = await session.execute(select(*_UNIT_COLUMNS).where(Unit.jurisdiction == jurisdiction))
    return UnitTree(_unit(r) for r in rows)


def _subtree_statement() -> Select[*tuple[Any, ...]]:
    root = (
        select(*_UNIT_COLUMNS)
        .where(Unit.id == bindparam("root"), Unit.jurisdiction == bindparam("jurisdiction"))
        .cte("subtree", recursive=True)
    )
    # UNION, not UNION ALL: a parent_id cycle in bad data ends instead of looping
    return select(root.union(select(*_UNIT_COLUMNS).join(root, Unit.parent_id == root.c.id)))


_SUBTREE = _subtree_statement()


async def load_subtree(session: AsyncSession, jurisdiction: str, unit_id: int) -> UnitTree:
    """The unit and its descendants in one recursive query; UnitNotFound if it is not there."""
    params = {"root": unit_id, "jurisdiction": jurisdiction}
    rows = (await session.execute(_SUBTREE, params)).all()
    if not rows:
        raise UnitNotFound(f"no unit {unit_id} in {jurisdiction}")
    return UnitTree(_unit(r) for r in rows)


@dataclass(frozen=True)
class YearLines:
    """The lines of a jurisdiction's chosen plans for a year (real ones win over demo copies)."""

    lines: list[LineRow]
    plan_found: bool
    is_demo: bool


def _year_lines_statement(of_units: bool) -> Select[*tuple[Any, ...]]:
    on = and_(PlanLine.plan_id == Plan.id, PlanLine.months != 0)
    if of_units:
        on = and_(on, PlanLine.unit_id.in_(bindparam("unit_ids", expanding=True)))
    return (
        select(
            Plan.id.label("plan"),
            PlanLine.id,
            PlanLine.unit_id,
            PlanLine.kind,
            PlanLine.months,
            PlanLine.month_text,
            PlanLine.target,
            PlanLine.share_percent,
            PlanLine.note,
            Plan.year,
            Plan.measure,
            Plan.is_demo,
        )
        .outerjoin(PlanLine, on)
        .where(Plan.jurisdiction == bindparam("jurisdiction"), Plan.year == bindparam("year"))
        .order_by(Plan.id, PlanLine.line_no, PlanLine.id)
    )


_YEAR_LINES = {of_units: _year_lines_statement(of_units) for of_units in (False, True)}


async def load_year_lines(
    session: AsyncSession, jurisdiction: str, year: int, unit_ids: Iterable[int] | None = None
) -> YearLines:
    """One query: the year's plans, each with its lines (only `unit_ids`' when given)."""
    params: dict[str, object] = {"jurisdiction": jurisdiction, "year": year}
    if unit_ids is not None:
        params["unit_ids"] = sorted(unit_ids)
    rows = (await session.execute(_YEAR_LINES[unit_ids is not None], params)).all()
    is_demo = bool(rows) and all(row.is_demo for row in rows)
    lines = [
        LineRow(plan_id=row.plan, **{k: v for k, v in row._mapping.items() if k != "plan"})
        for row in rows
        if row.id is not None and row.is_demo == is_demo
    ]
    return YearLines(lines, bool(rows), is_demo)
