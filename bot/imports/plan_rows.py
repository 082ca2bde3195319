"""Plan file rows → validated `PlanRow`s, every problem collected with its row and column.

Beyond single cells, the file as a whole is checked: a line repeated for the same unit,
period and kind; a `parent` named nowhere; a unit given two different parents or categories.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from bot.imports import values
from bot.imports.issues import IssueList
from bot.imports.values import CellError
from bot.settings import Settings
from models.periods import PeriodError, parse_months
from models.plans import LINE_KINDS, MEASURES

_MEASURE_ALIASES = {"u": "人份", "毫升": "ml", "人数": "人"}
_KIND_ALIASES = {
    "分月": "scheduled",
    "月度": "scheduled",
    "年度": "annual",
    "全年": "annual",
    "应急": "emergency",
    "应急献血": "emergency",
    "比例": "share",
    "分组": "group",
    "分组标题": "group",
}
KIND_LABELS = {
    "scheduled": "分月",
    "annual": "年度",
    "emergency": "应急",
    "share": "比例",
    "group": "分组",
}


@dataclass(frozen=True)
class PlanRow:
    row: int
    jurisdiction: str
    year: int
    measure: str
    unit: str
    parent: str | None
    months: int
    month_text: str
    category: str | None
    kind: str
    target: int | None
    share_percent: int | None
    note: str

    @property
    def plan_key(self) -> tuple[str, int, str]:
        return (self.jurisdiction, self.year, self.measure)

    @property
    def line_key(self) -> tuple[str, str, int]:
        """What the database keeps unique within a plan: one line per unit, kind and period."""
        return (self.unit, self.kind, self.months)

    def target_text(self) -> str:
        if self.share_percent is not None:
            return f"{self.share_percent}%"
        return "—" if self.target is None else str(self.target)


def parse_plan_rows(
    file: str,
    rows: Iterable[tuple[int, dict[str, Any]]],
    headers: dict[str, str],
    settings: Settings,
    issues: IssueList,
) -> list[PlanRow]:
    parsed: list[PlanRow] = []
    for row_no, row in rows:
        try_row = _parse_row(file, row_no, row, headers, settings, issues)
        if try_row is not None:
            parsed.append(try_row)
    _check_file(file, parsed, headers, issues)
    return parsed


def _parse_row(
    file: str,
    row_no: int,
    row: dict[str, Any],
    headers: dict[str, str],
    settings: Settings,
    issues: IssueList,
) -> PlanRow | None:
    out: dict[str, Any] = {}
    before = issues.total
    for column, parse in _CELLS.items():
        try:
            out[column] = parse(row.get(column), settings)
        except (CellError, PeriodError) as exc:
            issues.add(file, row_no, headers.get(column, column), str(exc))
    if issues.total > before:
        return None
    kind, (target, share) = out["kind"], out["target"]
    problem = _target_problem(kind, target, share)
    if problem:
        issues.add(file, row_no, headers.get("target", "target"), problem)
        return None
    return PlanRow(
        row=row_no,
        jurisdiction=out["jurisdiction"],
        year=out["year"],
        measure=out["measure"],
        unit=out["unit"],
        parent=out["parent"] or None,
        months=out["months"][0],
        month_text=out["months"][1],
        category=out["category"] or None,
        kind=kind,
        target=target,
        share_percent=share,
        note=out["note"],
    )


def _jurisdiction(value: Any, settings: Settings) -> str:
    code = values.folded(values.required(value, "辖区"))
    if code not in settings.jurisdictions:
        known = "、".join(sorted(settings.jurisdictions)) or "（无）"
        raise CellError(f"辖区「{code}」不在账号配置文件中；已配置的辖区：{known}")
    return code


def _year(value: Any, _: Settings) -> int:
    year = values.integer(value, "年度")
    if not 2000 <= year <= 2100:
        raise CellError(f"年度「{year}」不合理（应为 2000–2100 之间的四位年份）")
    return year


def _measure(value: Any, _: Settings) -> str:
    raw = values.folded(values.required(value, "计量"))
    measure = _MEASURE_ALIASES.get(raw.casefold(), raw)
    if measure not in MEASURES:
        raise CellError(f"计量「{raw}」无法识别；可用：{'、'.join(MEASURES)}")
    return measure


def _kind(value: Any, _: Settings) -> str:
    raw = values.folded(values.required(value, "类型"))
    kind = _KIND_ALIASES.get(raw, raw.casefold())
    if kind not in LINE_KINDS:
        raise CellError(f"类型「{raw}」无法识别；可用：{'、'.join(LINE_KINDS)}")
    return kind


def _months(value: Any, _: Settings) -> tuple[int, str]:
    raw = values.text(value)
    return parse_months(raw), raw


def _target(value: Any, _: Settings) -> tuple[int | None, int | None]:
    """(target, share percent): 「120」→ (120, None); 「30%」→ (None, 30); empty → (None, None)."""
    raw = values.folded(value)
    if not raw or raw in ("—", "——", "-", "--"):
        return None, None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)%", raw)
    if match:
        share = float(match.group(1))
        if not share.is_integer():
            raise CellError(f"比例「{raw}」须为整数百分比")
        if not 0 < share <= 100:
            raise CellError(f"比例「{raw}」超出范围：须大于 0% 且不超过 100%")
        return None, int(share)
    return values.integer(value, "计划数"), None


def _target_problem(kind: str, target: int | None, share: int | None) -> str | None:
    if kind == "share" and share is None:
        return "类型为 share 的行，计划数须写成百分比，如 30%"
    if kind != "share" and share is not None:
        return f"百分比只能用于类型 share（此行类型为 {kind}）"
    if target is None and share is None and kind not in ("emergency", "group"):
        return (
            "计划数为空：只有 emergency（应急献血）和 group（分组标题）行可以不写"
            f"（此行类型为 {kind}）"
        )
    return None


_CELLS = {
    "jurisdiction": _jurisdiction,
    "year": _year,
    "measure": _measure,
    "unit": lambda v, _: values.required(v, "单位"),
    "parent": lambda v, _: values.text(v),
    "months": _months,
    "category": lambda v, _: values.text(v),
    "kind": _kind,
    "target": _target,
    "note": lambda v, _: values.text(v),
}


def _check_file(file: str, rows: list[PlanRow], headers: dict[str, str], issues: IssueList) -> None:
    seen: dict[tuple[Any, ...], int] = {}
    parents: dict[tuple[str, str], tuple[str, int]] = {}
    categories: dict[tuple[str, str], tuple[str, int]] = {}
    names = {(r.jurisdiction, r.unit) for r in rows}
    col = headers.get
    for r in rows:
        key = (r.plan_key, r.line_key)
        if key in seen:
            issues.add(file, r.row, col("unit", "unit"), _duplicate(r, seen[key]))
        seen.setdefault(key, r.row)
        if r.parent:
            if r.parent == r.unit:
                issues.add(file, r.row, col("parent", "parent"), "上级单位不能是自己")
            elif (r.jurisdiction, r.parent) not in names:
                issues.add(
                    file,
                    r.row,
                    col("parent", "parent"),
                    f"上级单位「{r.parent}」在本文件中没有对应的行",
                )
            _consistent(file, r, col("parent", "parent"), parents, r.parent, "上级单位", issues)
        if r.category:
            _consistent(
                file, r, col("category", "category"), categories, r.category, "类别", issues
            )
    _refuse_cycles(file, rows, col("parent", "parent"), issues)


def _refuse_cycles(file: str, rows: list[PlanRow], column: str, issues: IssueList) -> None:
    parent_of = {(r.jurisdiction, r.unit): r.parent for r in rows if r.parent}
    reported: set[str] = set()
    for r in rows:
        chain = [r.unit]
        name = parent_of.get((r.jurisdiction, r.unit))
        while name is not None:
            if name in chain:
                if r.unit not in reported:
                    reported.update(chain)
                    issues.add(
                        file, r.row, column, f"上级单位形成循环：{' → '.join([*chain, name])}"
                    )
                break
            chain.append(name)
            name = parent_of.get((r.jurisdiction, name))


def _duplicate(r: PlanRow, first_row: int) -> str:
    return (
        f"与第{first_row}行重复：同一计划中「{r.unit}」已有 {r.kind} 行，月份相同；"
        "如为不同基数的比例目标，请把基数写进单位名，如「各乡镇（城乡居民）」"
    )


def _consistent(
    file: str,
    r: PlanRow,
    column: str,
    seen: dict[tuple[str, str], tuple[str, int]],
    value: str,
    what: str,
    issues: IssueList,
) -> None:
    first = seen.setdefault((r.jurisdiction, r.unit), (value, r.row))
    if first[0] != value:
        issues.add(
            file,
            r.row,
            column,
            f"「{r.unit}」的{what}是「{value}」，但第{first[1]}行写的是「{first[0]}」",
        )


def redate(rows: list[PlanRow], year: int) -> list[PlanRow]:
    """A copy of the rows for another year (the demo's current-year plans)."""
    return [replace(r, year=year) for r in rows]
