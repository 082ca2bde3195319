"""The canonical columns of each import file (SPEC §8) and the Chinese headers accepted for them."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class TableSpec:
    """One file kind: its canonical columns, which are required, and header aliases."""

    label: str  # 「计划」, shown in messages
    columns: tuple[str, ...]
    required: frozenset[str]
    aliases: dict[str, tuple[str, ...]]

    def lookup(self) -> dict[str, str]:
        """normalised header → canonical column."""
        table = {header_key(c): c for c in self.columns}
        for column, names in self.aliases.items():
            table.update({header_key(n): column for n in names})
        return table


def header_key(header: str) -> str:
    """「计划数（人次）」 and 「计划数(人次)」 and ` Target ` compare equal."""
    text = unicodedata.normalize("NFKC", header)
    return re.sub(r"\s+", "", text).casefold()


def strip_parenthetical(key: str) -> str:
    """「献血量(ml)」→「献血量」: a unit in brackets after a header name."""
    return re.sub(r"\([^()]*\)$", "", key)


_SHARED = {
    "jurisdiction": ("辖区", "辖区代码", "地区"),
    "unit": ("单位", "单位名称", "工作单位", "所在单位", "献血单位"),
}

PLAN = TableSpec(
    label="计划",
    columns=(
        "jurisdiction",
        "year",
        "measure",
        "unit",
        "parent",
        "months",
        "category",
        "target",
        "kind",
        "note",
    ),
    required=frozenset({"jurisdiction", "year", "measure", "unit", "months", "target", "kind"}),
    aliases={
        **_SHARED,
        "year": ("年度", "年份", "计划年度"),
        "measure": ("计量", "计量单位", "口径", "计划口径"),
        "parent": ("上级", "上级单位", "所属", "所属单位", "所属分组"),
        "months": ("月份", "安排月份", "献血月份", "时间", "期间"),
        "category": ("类别", "分类", "单位类别"),
        "target": ("任务", "任务数", "计划", "计划数", "目标", "目标数"),
        "kind": ("类型", "计划类型", "行类型"),
        "note": ("备注", "说明"),
    },
)

DONATIONS = TableSpec(
    label="献血记录",
    columns=(
        "record_id",
        "donated_at",
        "donor_id",
        "donor_name",
        "blood_type",
        "kind",
        "volume_ml",
        "therapeutic_units",
        "unit",
        "jurisdiction",
    ),
    required=frozenset(
        {"record_id", "donated_at", "donor_id", "kind", "volume_ml", "jurisdiction"}
    ),
    aliases={
        **_SHARED,
        "record_id": ("记录号", "记录编号", "献血编号", "流水号", "献血码"),
        "donated_at": ("献血日期", "日期", "采血日期"),
        "donor_id": ("献血者编号", "身份证号", "身份证号码", "证件号码", "证件号"),
        "donor_name": ("姓名", "献血者姓名", "献血者"),
        "blood_type": ("血型",),
        "kind": ("献血类型", "献血种类", "类型", "种类", "成分"),
        "volume_ml": ("献血量", "献血量ml", "采血量", "毫升"),
        "therapeutic_units": ("治疗量", "治疗单位", "血小板治疗量"),
    },
)

LIAISONS = TableSpec(
    label="联络员",
    columns=("jurisdiction", "unit", "name", "department", "title", "phone"),
    required=frozenset({"jurisdiction", "unit", "name", "phone"}),
    aliases={
        **_SHARED,
        "name": ("姓名", "联络员", "联络员姓名"),
        "department": ("部门", "科室", "处室"),
        "title": ("职务", "职称"),
        "phone": ("手机", "电话", "联系电话", "手机号", "手机号码", "联系方式"),
    },
)

LEDGER = TableSpec(
    label="用血报销",
    columns=("jurisdiction", "donor_id", "used_at", "volume_ml", "relation", "note"),
    required=frozenset({"jurisdiction", "donor_id", "used_at", "volume_ml", "relation"}),
    aliases={
        "jurisdiction": _SHARED["jurisdiction"],
        "donor_id": ("身份证号", "身份证号码", "献血者编号", "证件号码", "证件号"),
        "used_at": ("用血日期", "报销日期", "日期"),
        "volume_ml": ("用血量", "用血量ml", "毫升", "报销量"),
        "relation": ("关系", "用血人关系", "与献血者关系"),
        "note": ("备注", "说明"),
    },
)
