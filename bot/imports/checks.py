"""Reconciliation: a plan file against the notice's own totals, counts and structure.

The check types are those of data/seed_plans/README.md (`<stem>.checks.json` beside the file).
Each yields PASS, FAIL or INFO with the numbers; a mismatch is listed, never "fixed".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bot.imports.issues import IssueList
from bot.imports.plan_rows import KIND_LABELS, PlanRow
from models.periods import format_months, month_list, parse_months

Status = Literal["PASS", "FAIL", "INFO"]


@dataclass(frozen=True)
class CheckResult:
    status: Status
    type: str
    subject: str
    detail: str
    expected: Any = None
    actual: Any = None
    source: str = ""
    derived: bool = False  # from the file's structure, not from a checks file

    def __str__(self) -> str:
        return f"{self.status:<4} {self.subject}：{self.detail}"


def shortfall(results: list[CheckResult]) -> tuple[int, int]:
    """(units, total) over the failing unit totals whose lines fall short of the stated figure;
    青浦's ten towns are short by 599, exactly its 「全区10个街镇春节保障」 line."""
    short = [
        r.expected - r.actual
        for r in results
        if r.type == "unit_total" and r.status == "FAIL" and r.actual < r.expected
    ]
    return len(short), sum(short)


class Rollup:
    """Sums that never count a 「其中」 child on top of a parent that has its own number."""

    def __init__(self, rows: list[PlanRow]) -> None:
        self.rows = rows
        self.parent_of = {r.unit: r.parent for r in rows if r.parent}

    def ancestors(self, unit: str) -> list[str]:
        chain: list[str] = []
        name = self.parent_of.get(unit)
        while name is not None and name not in chain:
            chain.append(name)
            name = self.parent_of.get(name)
        return chain

    def contributing(self, selected: Iterable[PlanRow], kinds: Iterable[str]) -> list[PlanRow]:
        kinds = set(kinds)
        numbered = {r.unit for r in self.rows if r.kind in kinds and r.target is not None}
        return [
            r
            for r in selected
            if r.target is not None and not any(a in numbered for a in self.ancestors(r.unit))
        ]

    def total(self, selected: Iterable[PlanRow], kinds: Iterable[str]) -> int:
        return sum(r.target or 0 for r in self.contributing(selected, kinds))


def compare_totals(expected: int, actual: int) -> tuple[Status, str]:
    detail = f"文件合计 {expected}，明细合计 {actual}"
    if actual < expected:
        detail += f"，差 {expected - actual}"
    elif actual > expected:
        detail += f"，多 {actual - expected}"
    return ("PASS" if actual == expected else "FAIL"), detail


def by_month(rows: list[PlanRow]) -> str:
    sums: dict[int, int] = {}
    for r in rows:
        first = month_list(r.months)[0]
        sums[first] = sums.get(first, 0) + (r.target or 0)
    return "、".join(f"{m}月 {sums[m]}" for m in sorted(sums))


def _month_total(spec: dict[str, Any], roll: Rollup) -> CheckResult:
    month = int(spec["month"])
    kinds = set(spec.get("kinds", ["scheduled"])) - set(spec.get("exclude_kinds", []))
    rows = [r for r in roll.rows if r.kind in kinds and r.months & (1 << month)]
    status, detail = compare_totals(int(spec["expected"]), roll.total(rows, kinds))
    return CheckResult(
        status, "month_total", f"{month}月合计", detail, spec["expected"], roll.total(rows, kinds)
    )


def _category_total(spec: dict[str, Any], roll: Rollup) -> CheckResult:
    kind = spec.get("kind", "scheduled")
    rows = [r for r in roll.rows if r.kind == kind and r.category == spec["category"]]
    return _total(
        "category_total",
        f"类别「{spec['category']}」{KIND_LABELS.get(kind, kind)}合计",
        spec,
        roll,
        rows,
        kind,
    )


def _grand_total(spec: dict[str, Any], roll: Rollup) -> CheckResult:
    kind = spec["kind"]
    rows = [r for r in roll.rows if r.kind == kind]
    return _total("grand_total", f"{KIND_LABELS.get(kind, kind)}总计", spec, roll, rows, kind)


def _total(
    type_: str, subject: str, spec: dict[str, Any], roll: Rollup, rows: list[PlanRow], kind: str
) -> CheckResult:
    counted = roll.contributing(rows, [kind])
    actual = sum(r.target or 0 for r in counted)
    status, detail = compare_totals(int(spec["expected"]), actual)
    if status == "FAIL" and kind == "scheduled":
        detail += f"（按月：{by_month(counted)}）"
    return CheckResult(status, type_, subject, detail, spec["expected"], actual)


def _scheduled_rows(spec: dict[str, Any], roll: Rollup) -> list[PlanRow]:
    units = set(spec.get("scheduled_units", [spec["unit"]]))
    return [r for r in roll.rows if r.kind == "scheduled" and r.unit in units]


def _unit_total(spec: dict[str, Any], roll: Rollup) -> CheckResult:
    counted = roll.contributing(_scheduled_rows(spec, roll), ["scheduled"])
    actual = sum(r.target or 0 for r in counted)
    status, detail = compare_totals(int(spec["expected"]), actual)
    parts = "+".join(str(r.target) for r in counted)
    if len(counted) > 1:
        detail = detail.replace(f"明细合计 {actual}", f"明细合计 {actual}（{parts}）")
    return CheckResult(
        status, "unit_total", f"{spec['unit']} 分月合计", detail, spec["expected"], actual
    )


def _unit_months(spec: dict[str, Any], roll: Rollup) -> CheckResult:
    bits = 0
    for r in _scheduled_rows(spec, roll):
        bits |= r.months
    expected = sum(1 << int(m) for m in spec["expected"])
    shown = format_months(bits) if bits else "（无）"
    status: Status = "PASS" if bits == expected else "FAIL"
    detail = f"文件 {format_months(expected)}，明细 {shown}"
    return CheckResult(
        status,
        "unit_months",
        f"{spec['unit']} 安排月份",
        detail,
        spec["expected"],
        month_list(bits),
    )


def _children_sum(spec: dict[str, Any], roll: Rollup) -> CheckResult:
    parent, kind = spec["parent"], spec.get("kind", "scheduled")
    parents = [r for r in roll.rows if r.unit == parent and r.kind == kind]
    children = [r for r in roll.rows if r.parent == parent and r.kind == kind]
    own = parents[0].target if parents else None
    total = sum(r.target or 0 for r in children)
    expected, partial = int(spec["expected_parent"]), bool(spec.get("partial", False))
    ok_children = total <= expected if partial else total == expected
    status: Status = "PASS" if own == expected and ok_children else "FAIL"
    shown = "没有这一行" if not parents else own
    how = "部分列举，应不超过上级" if partial else "应等于上级"
    detail = (
        f"文件上级 {expected}，明细上级 {shown}；所列 {len(children)} 个子单位合计 {total}（{how}）"
    )
    return CheckResult(status, "children_sum", f"「{parent}」的「其中」", detail, expected, total)


def _group_count(spec: dict[str, Any], roll: Rollup) -> CheckResult:
    group, expected = spec["group"], int(spec["expected"])
    subject = f"分组「{group}」成员数"
    if not spec.get("members_listed", True):
        detail = f"文件称 {expected} 个，未列成员，无法核对"
        return CheckResult("INFO", "group_count", subject, detail, expected)
    kind = spec.get("kind", "group")
    exists = any(r.unit == group and r.kind == kind for r in roll.rows)
    members = {r.unit for r in roll.rows if r.parent == group}
    status: Status = "PASS" if exists and len(members) == expected else "FAIL"
    detail = f"文件称 {expected} 个，列出 {len(members)} 个"
    if not exists:
        detail += f"；文件中没有类型为 {kind} 的这一行"
    return CheckResult(status, "group_count", subject, detail, expected, len(members))


def _line_target(spec: dict[str, Any], roll: Rollup) -> CheckResult:
    unit, kind, expected = spec["unit"], spec["kind"], str(spec["expected"])
    found = [r.target_text() for r in roll.rows if r.unit == unit and r.kind == kind]
    status: Status = "PASS" if expected in found else "FAIL"
    detail = f"文件 {expected}，明细 {'、'.join(found) or '没有这一行'}"
    return CheckResult(
        status, "line_target", f"{unit} {KIND_LABELS.get(kind, kind)}目标", detail, expected, found
    )


InfoText = Callable[[dict[str, Any]], tuple[str, str]]


def _info(describe: InfoText) -> Callable[[dict[str, Any], Rollup], CheckResult]:
    """Facts the notice states that no plan line can be reconciled with: reported as INFO."""

    def evaluate(spec: dict[str, Any], _: Rollup) -> CheckResult:
        subject, detail = describe(spec)
        if spec.get("note"):
            detail += f"（{spec['note']}）"
        return CheckResult("INFO", spec["type"], subject, detail, spec.get("expected"))

    return evaluate


def _by_year(spec: dict[str, Any]) -> str:
    return f"，到{spec['by_year']}年" if spec.get("by_year") else ""


EVALUATORS: dict[str, Callable[[dict[str, Any], Rollup], CheckResult]] = {
    "month_total": _month_total,
    "category_total": _category_total,
    "grand_total": _grand_total,
    "unit_total": _unit_total,
    "unit_months": _unit_months,
    "children_sum": _children_sum,
    "group_count": _group_count,
    "line_target": _line_target,
    "stated_count": _info(
        lambda s: (s["subject"], f"文件称 {s['expected']} 个（不是计划行，无法核对）")
    ),
    "overall_goal": _info(
        lambda s: ("总目标", f"{s['expected']} {s['measure']}（分解表未细分，无法核对）")
    ),
    "rate_target": _info(
        lambda s: (
            s["subject"],
            f"{s['metric']} {s['operator']} {s['value']}{s['unit']}{_by_year(s)}",
        )
    ),
    "stated_requirement": _info(lambda s: (s["subject"], f"{s['text']}{_by_year(s)}")),
    "profession_month": _info(
        lambda s: (s["label"], f"{format_months(parse_months(s['months']))}，{s['profession']}")
    ),
}


def load_checks(path: Path, issues: IssueList) -> dict[str, Any] | None:
    """`<stem>.checks.json` beside a plan file, or None when there is none."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        issues.add(path.name, None, None, f"核对文件不是有效的 JSON：{exc}")
        return None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("checks"), list)
        or "jurisdiction" not in doc
    ):
        issues.add(path.name, None, None, '核对文件须为 {"jurisdiction", "year", "checks": [...]}')
        return None
    return doc


def evaluate(
    doc: dict[str, Any], rows: list[PlanRow], file: str, issues: IssueList
) -> list[CheckResult]:
    roll = Rollup([r for r in rows if r.jurisdiction == doc["jurisdiction"]])
    results: list[CheckResult] = []
    for n, spec in enumerate(doc["checks"], start=1):
        evaluator = EVALUATORS.get(spec.get("type", "") if isinstance(spec, dict) else "")
        if evaluator is None:
            issues.add(
                file,
                None,
                None,
                f"第 {n} 项核对的类型未知：{spec!r:.80}；可用：{'、'.join(EVALUATORS)}",
            )
            continue
        try:
            result = evaluator(spec, roll)
        except (KeyError, TypeError, ValueError) as exc:
            issues.add(file, None, None, f"第 {n} 项核对（{spec['type']}）缺少或写错字段：{exc}")
            continue
        results.append(CheckResult(**{**result.__dict__, "source": spec.get("source", "")}))
    return results
