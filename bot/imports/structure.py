"""Checks any plan file gets from its own structure, with or without a checks file:
「其中」 children against their parent, and a group's members against the count in its name.
"""

from __future__ import annotations

import re
from typing import Any

from bot.imports.checks import CheckResult, Rollup, Status
from bot.imports.plan_rows import PlanRow

_STATED_COUNT = re.compile(r"[(（](\d+)个")


def structural_checks(rows: list[PlanRow], doc: dict[str, Any] | None) -> list[CheckResult]:
    """Derived checks for every parent and counted group the checks file does not cover."""
    covered_parents, covered_groups = _covered(doc)
    results: list[CheckResult] = []
    for jurisdiction in dict.fromkeys(r.jurisdiction for r in rows):
        roll = Rollup([r for r in rows if r.jurisdiction == jurisdiction])
        results += _children(roll, covered_parents)
        results += _groups(roll, covered_groups)
    return results


def _covered(doc: dict[str, Any] | None) -> tuple[set[str], set[str]]:
    checks = doc["checks"] if doc else []
    parents = {c.get("parent") for c in checks if c.get("type") == "children_sum"}
    groups = {c.get("group") for c in checks if c.get("type") == "group_count"}
    return {p for p in parents if p}, {g for g in groups if g}


def _children(roll: Rollup, covered: set[str]) -> list[CheckResult]:
    results: list[CheckResult] = []
    for parent in roll.rows:
        if parent.target is None or parent.unit in covered:
            continue
        children = [
            r
            for r in roll.rows
            if r.parent == parent.unit and r.kind == parent.kind and r.months & parent.months
        ]
        if not children:
            continue
        total = sum(r.target or 0 for r in children)
        status: Status = "PASS" if total == parent.target else "FAIL"
        note = "等于上级" if total == parent.target else "超过上级"
        if total < parent.target:
            status, note = "INFO", "少于上级，可能仅部分列举"
        detail = f"上级 {parent.target}，所列 {len(children)} 个子单位合计 {total}（{note}）"
        results.append(
            CheckResult(
                status,
                "children_sum",
                f"「{parent.unit}」的「其中」",
                detail,
                parent.target,
                total,
                derived=True,
            )
        )
    return results


def _groups(roll: Rollup, covered: set[str]) -> list[CheckResult]:
    results: list[CheckResult] = []
    for name in dict.fromkeys(r.unit for r in roll.rows):
        match = _STATED_COUNT.search(name)
        if match is None or name in covered:
            continue
        stated = int(match.group(1))
        members = {r.unit for r in roll.rows if r.parent == name}
        subject = f"分组「{name}」成员数"
        if not members:
            detail = f"名称称 {stated} 个，未列成员，无法核对"
            results.append(
                CheckResult("INFO", "group_count", subject, detail, stated, derived=True)
            )
            continue
        status: Status = "PASS" if len(members) == stated else "FAIL"
        detail = f"名称称 {stated} 个，列出 {len(members)} 个"
        results.append(
            CheckResult(status, "group_count", subject, detail, stated, len(members), derived=True)
        )
    return results
