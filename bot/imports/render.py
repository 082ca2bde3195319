"""The import reports as the CLI prints them: Chinese, concise, names and phones masked."""

from __future__ import annotations

from bot.imports.checks import shortfall
from bot.imports.donations import DonationImportReport
from bot.imports.liaisons import LiaisonImportReport
from bot.imports.plan_rows import KIND_LABELS
from bot.imports.plan_store import PlanDiff
from bot.imports.plans import PlanImportReport
from bot.imports.review import QueueEntry

LISTED = 30  # longer lists are cut with a count


def _listed(items: list[str], indent: str = "  ") -> list[str]:
    lines = [indent + item for item in items[:LISTED]]
    if len(items) > LISTED:
        lines.append(f"{indent}……另有 {len(items) - LISTED} 项")
    return lines


def _kinds(counts: dict[str, int]) -> str:
    return "、".join(f"{KIND_LABELS.get(k, k)} {n}" for k, n in counts.items()) or "无"


def _outcome(dry_run: bool, changed: bool) -> str:
    if dry_run:
        return (
            "试运行：以上是导入将做的改动，数据库未写入。"
            if changed
            else "试运行：与数据库中已有内容相同，导入不会做任何改动。"
        )
    return "已导入。" if changed else "与数据库中已有内容相同，未做任何改动。"


def plan_report(report: PlanImportReport) -> list[str]:
    lines = [f"读取 {report.file}：{report.rows} 行"]
    if report.jurisdictions_created:
        lines.append(f"新建辖区：{'、'.join(report.jurisdictions_created)}")
    if report.units.created:
        lines.append(f"新建单位 {len(report.units.created)} 个")
    if report.units.updated:
        lines.append(f"更新单位 {len(report.units.updated)} 个：")
        lines += _listed(report.units.updated)
    how = {"alias": "别名", "normalized": "规范化后相同"}
    for name, unit, status in report.units.matched:
        lines.append(f"「{name}」按已有单位「{unit}」导入（{how.get(status, status)}）")
    for plan in report.plans:
        lines += _plan_diff(plan)
    lines += check_lines(report)
    lines.append(_outcome(report.dry_run, report.changed))
    return lines


def _plan_diff(plan: PlanDiff) -> list[str]:
    if plan.created:
        return [f"{plan.label}：新计划，{sum(plan.kinds.values())} 行（{_kinds(plan.kinds)}）"]
    if not plan.has_changes:
        return [f"{plan.label}：{plan.unchanged} 行，无变化"]
    lines = [
        f"{plan.label}：新增 {len(plan.added)} 行，删除 {len(plan.removed)} 行，"
        f"修改 {len(plan.changed)} 行，未变 {plan.unchanged} 行"
    ]
    lines += _listed([f"+ {v}" for v in plan.added])
    lines += _listed([f"- {v}" for v in plan.removed])
    changes = []
    for old, new in plan.changed:
        text = f"~ {new}（原 {old.target}）" if old.target != new.target else f"~ {new}"
        if old.note != new.note:
            text += f"；备注「{old.note}」→「{new.note}」"
        changes.append(text)
    return lines + _listed(changes)


def check_lines(report: PlanImportReport) -> list[str]:
    if not report.checks:
        return ["对账：没有可核对的项目"]
    counts = report.check_counts()
    source = f"（{report.checks_file}）" if report.checks_file else "（按文件结构）"
    lines = [f"对账{source}：PASS {counts['PASS']}，FAIL {counts['FAIL']}，INFO {counts['INFO']}"]
    for check in report.checks:
        mark = "（结构）" if check.derived else ""
        lines.append(f"  {check}{mark}")
    units, missing = shortfall(report.checks)
    if units > 1:
        lines.append(f"  {units} 个单位的分月明细少于其年度目标，共差 {missing}")
    if counts["FAIL"]:
        lines.append("  FAIL 是源文件自身的不一致，已照原样导入，未作任何修正。")
    return lines


def donation_report(report: DonationImportReport) -> list[str]:
    rate = report.rows / report.seconds if report.seconds else 0.0
    lines = [
        f"读取 {report.file}：{report.rows} 行（{report.seconds:.1f} 秒，每秒 {rate:,.0f} 行）",
        f"新增献血记录 {report.inserted} 条",
    ]
    if report.already_present:
        lines.append(
            f"已在库中（或文件内重复）{report.already_present} 条：按记录号跳过，未重复计数"
        )
    if report.jurisdictions_created:
        lines.append(f"新建辖区：{'、'.join(report.jurisdictions_created)}")
    if report.unmatched:
        lines.append(
            f"单位未匹配 {report.unmatched_rows} 行（{len(report.unmatched)} 个名称），"
            "已保留待核对：donorbot units unmatched --jurisdiction …"
        )
        top = sorted(report.unmatched.items(), key=lambda kv: -kv[1])
        lines += _listed([f"{j} 「{name}」 {n} 行" for (j, name), n in top])
    lines.append(_outcome(report.dry_run, report.inserted > 0))
    return lines


def liaison_report(report: LiaisonImportReport) -> list[str]:
    lines = [f"读取 {report.file}：{report.rows} 行"]
    if report.added:
        lines.append(f"新增联络员 {len(report.added)} 人：")
        lines += _listed(report.added)
    if report.updated:
        lines.append(f"更新联络员 {len(report.updated)} 人：")
        lines += _listed(report.updated)
    if report.unchanged:
        lines.append(f"未变 {report.unchanged} 人")
    lines.append(_outcome(report.dry_run, report.changed))
    return lines


def queue_lines(jurisdiction: str, entries: list[QueueEntry]) -> list[str]:
    if not entries:
        return [f"{jurisdiction}：没有待核对的献血记录。"]
    total = sum(e.rows for e in entries)
    lines = [f"{jurisdiction}：{total} 条献血记录的单位未匹配，共 {len(entries)} 个名称"]
    for e in entries:
        found = e.resolution
        if found.unit is not None:
            hint = f"现在可匹配「{found.unit.name}」（运行 donorbot units rematch）"
        elif found.choices:
            hint = "可能是：" + "、".join(c.name for c in found.choices[:5])
        elif found.suggestions:
            hint = "建议：" + "、".join(
                f"{s.unit.name}（{s.score:.0f}）" for s in found.suggestions
            )
        else:
            hint = "无相近单位"
        lines.append(f"  「{e.raw}」 {e.rows} 条 — {hint}")
    lines.append(
        f"确认后：donorbot units alias add --jurisdiction {jurisdiction} --alias 名称 --unit 单位"
    )
    return lines
