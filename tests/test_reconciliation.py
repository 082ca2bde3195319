"""Reconciliation of the five seed plans against their notices, exactly as
data/seed_plans/README.md lists the findings; and the structural checks an office file gets
without a checks file. No database: `read_plan_file` is what an import (and a dry run) prints."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.imports import ImportFailed
from bot.imports.checks import CheckResult, Rollup, evaluate, shortfall
from bot.imports.issues import IssueList
from bot.imports.plans import read_plan_file
from bot.settings import Settings, load_settings

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed_plans"
HEADER = "jurisdiction,year,measure,unit,parent,months,category,target,kind,note\n"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    account = tmp_path / "donorbot.toml"
    assert CliRunner().invoke(main, ["demo", "config", "--path", str(account)]).exit_code == 0
    monkeypatch.setenv("DONORBOT_CONFIG", str(account))
    return load_settings()


def checks(settings: Settings, seed: str) -> list[CheckResult]:
    return read_plan_file(SEEDS / seed, settings).checks


def by_subject(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.subject: r for r in results}


@pytest.mark.parametrize(
    ("seed", "counts"),
    [
        ("zhangjiajie-2018.csv", {"PASS": 43, "FAIL": 1, "INFO": 2}),
        ("yuxi-2018.csv", {"INFO": 7}),
        ("luquan-2016.csv", {"PASS": 7, "INFO": 3}),
        ("rugao-2020.csv", {"PASS": 12}),
        ("qingpu-2021.csv", {"PASS": 6, "FAIL": 10, "INFO": 2}),
    ],
)
def test_each_seed_gives_the_readmes_pass_fail_info(
    seed: str, counts: dict[str, int], settings: Settings
) -> None:
    results = checks(settings, seed)
    assert Counter(r.status for r in results) == counts
    assert not any(r.derived for r in results), "the checks file covers every parent and group"


def test_zhangjiajie_the_one_mismatch_is_1186_against_1162(settings: Settings) -> None:
    results = checks(settings, "zhangjiajie-2018.csv")

    [fail] = [r for r in results if r.status == "FAIL"]
    assert fail.subject == "类别「市直及驻张」分月合计"
    assert fail.detail == (
        "文件合计 1186，明细合计 1162，差 24（按月：2月 233、3月 70、4月 129、5月 179、"
        "6月 90、7月 52、8月 260、9月 149）"
    )
    info = sorted(r.subject for r in results if r.status == "INFO")
    assert info == [
        "分组「市人大专门委员会及常委会工作机构（8个）」成员数",
        "分组「市政协专门委员会及工作机构和民主党派市委（13个）」成员数",
    ]


def test_zhangjiajie_annex_1_reconciles_with_annex_2(settings: Settings) -> None:
    results = by_subject(checks(settings, "zhangjiajie-2018.csv"))

    assert results["永定区 分月合计"].detail == "文件合计 1250，明细合计 1250（450+400+400）"
    assert (
        results["慈利县 分月合计"].detail == "文件合计 2800，明细合计 2800（200+600+700+700+600）"
    )
    assert results["慈利县 安排月份"].detail == "文件 1、3、8、10、12月，明细 1、3、8、10、12月"
    assert results["类别「企业」分月合计"].status == "PASS"
    wjw = results["「市卫生计生委及二级机构」的「其中」"]
    assert (wjw.status, wjw.expected, wjw.actual) == ("PASS", 233, 233)  # 12+202+1+4+10+4
    hr = results["「市人力资源社会保障局及二级机构」的「其中」"]
    assert (hr.status, hr.expected, hr.actual) == ("PASS", 37, 15)  # partial: 技工学校 15
    group = results["分组「市纪委及市委工作机构(17个)」成员数"]
    assert (group.status, group.actual) == ("PASS", 17)
    army = results["分组「驻张部队（4个）」成员数"]  # four 应急献血 units with no number
    assert (army.status, army.actual) == ("PASS", 4)


def test_qingpu_ten_town_shortfalls_sum_to_the_599_group_line(settings: Settings) -> None:
    results = checks(settings, "qingpu-2021.csv")

    towns = {
        r.subject.removesuffix(" 分月合计"): (r.expected, r.actual)
        for r in results
        if r.type == "unit_total" and r.status == "FAIL"
    }
    assert towns == {
        "夏阳街道": (490, 434),
        "盈浦街道": (478, 428),
        "香花桥街道": (682, 632),
        "朱家角镇": (1222, 1142),
        "练塘镇": (1133, 1071),
        "金泽镇": (1200, 1128),
        "赵巷镇": (804, 792),
        "徐泾镇": (1177, 1119),
        "华新镇": (1330, 1251),
        "重固镇": (536, 456),
    }
    assert shortfall(results) == (10, 599)
    assert (
        by_subject(results)["白鹤镇 分月合计"].detail == "文件合计 1066，明细合计 1066（660+406）"
    )
    assert by_subject(results)["分月总计"].detail == "文件合计 11237，明细合计 11237"


def test_rugao_every_monthly_total_passes_with_the_annual_lines_out_of_december(
    settings: Settings,
) -> None:
    results = checks(settings, "rugao-2020.csv")

    totals = [(r.subject, r.status, r.actual) for r in results]
    assert totals == [
        (f"{m}月合计", "PASS", n)
        for m, n in enumerate([684, 692, 762, 753, 437, 572, 643, 663, 434, 375, 402, 545], start=1)
    ]
    # counting 卫健系统600（全年） and 教育系统600（全年） in December would give 1745
    rows = read_plan_file(SEEDS / "rugao-2020.csv", settings).rows
    wrong = {"type": "month_total", "month": 12, "expected": 545, "kinds": ["scheduled", "annual"]}
    [result] = evaluate({"jurisdiction": "rugao", "checks": [wrong]}, rows, "x", IssueList())
    assert (result.status, result.actual) == ("FAIL", 1745)


def test_luquan_share_targets_and_stated_counts(settings: Settings) -> None:
    results = checks(settings, "luquan-2016.csv")

    shares = {r.subject: r.detail for r in results if r.type == "line_target"}
    assert shares["各乡镇 比例目标"] == "文件 25%，明细 25%"
    assert shares["各乡镇（城乡居民） 比例目标"] == "文件 5%，明细 5%"
    assert shares["县级各行政管理部门 比例目标"] == "文件 20%，明细 20%"
    stated = [(r.status, r.detail) for r in results if r.type == "stated_count"]
    assert stated[0] == ("INFO", "文件称 13 个（不是计划行，无法核对）")


def test_yuxi_has_no_lines_and_only_stated_facts(settings: Settings) -> None:
    plan = read_plan_file(SEEDS / "yuxi-2018.csv", settings)

    assert plan.rows == [] and plan.jurisdictions == ["yuxi"]
    details = [(r.type, r.subject, r.detail) for r in plan.checks]
    assert details[0] == ("rate_target", "各县区", "每千人口献血率 >= 15‰，到2020年")
    assert details[-2] == ("profession_month", "医务人员无偿献血月", "1、2月，医务人员")


def test_children_are_not_counted_on_top_of_a_numbered_parent(settings: Settings) -> None:
    rows = read_plan_file(SEEDS / "zhangjiajie-2018.csv", settings).rows
    roll = Rollup(rows)
    february = [r for r in rows if r.kind == "scheduled" and r.months == 1 << 2]

    assert sum(r.target or 0 for r in february) == 466  # 233 twice: the parent and its six
    assert roll.total(february, ["scheduled"]) == 233


def office_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "office.csv"  # no office.checks.json beside it
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def test_a_file_without_checks_still_gets_its_structure_checked(
    settings: Settings, tmp_path: Path
) -> None:
    path = office_file(
        tmp_path,
        "rugao,2021,人,卫健委,,3,,30,scheduled,\n"
        "rugao,2021,人,人民医院,卫健委,3,,20,scheduled,\n"
        "rugao,2021,人,中医院,卫健委,3,,15,scheduled,\n"
        "rugao,2021,人,教育局,,4,,40,scheduled,\n"
        "rugao,2021,人,实验中学,教育局,4,,10,scheduled,\n"
        "rugao,2021,人,公安局,,5,,10,scheduled,\n"
        "rugao,2021,人,交警大队,公安局,5,,10,scheduled,\n"
        "rugao,2021,人,群团组织（3个）,,6,,,group,\n"
        "rugao,2021,人,团市委,群团组织（3个）,6,,2,scheduled,\n"
        "rugao,2021,人,妇联,群团组织（3个）,6,,2,scheduled,\n"
        "rugao,2021,人,驻如部队（2个）,,7,,5,scheduled,\n",
    )
    results = {r.subject: (r.status, r.detail) for r in read_plan_file(path, settings).checks}

    assert results == {
        "「卫健委」的「其中」": ("FAIL", "上级 30，所列 2 个子单位合计 35（超过上级）"),
        "「教育局」的「其中」": (
            "INFO",
            "上级 40，所列 1 个子单位合计 10（少于上级，可能仅部分列举）",
        ),
        "「公安局」的「其中」": ("PASS", "上级 10，所列 1 个子单位合计 10（等于上级）"),
        "分组「群团组织（3个）」成员数": ("FAIL", "名称称 3 个，列出 2 个"),
        "分组「驻如部队（2个）」成员数": ("INFO", "名称称 2 个，未列成员，无法核对"),
    }


@pytest.mark.parametrize(
    ("checks_json", "message"),
    [
        ("{not json", "office.checks.json：核对文件不是有效的 JSON"),
        ('{"checks": []}', "office.checks.json：核对文件须为"),
        ('{"jurisdiction": "rugao", "checks": [{"type": "magic"}]}', "第 1 项核对的类型未知"),
        (
            '{"jurisdiction": "rugao", "checks": [{"type": "month_total", "expected": 3}]}',
            "第 1 项核对（month_total）缺少或写错字段：'month'",
        ),
    ],
)
def test_a_broken_checks_file_is_refused(
    checks_json: str, message: str, settings: Settings, tmp_path: Path
) -> None:
    path = office_file(tmp_path, "rugao,2021,人,公安局,,5,,10,scheduled,\n")
    (tmp_path / "office.checks.json").write_text(checks_json, encoding="utf-8")
    with pytest.raises(ImportFailed) as caught:
        read_plan_file(path, settings)
    assert message in str(caught.value)


def test_the_seed_checks_files_are_valid_json_with_sources() -> None:
    for path in SEEDS.glob("*.checks.json"):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert all(c.get("source") for c in doc["checks"]), path.name
