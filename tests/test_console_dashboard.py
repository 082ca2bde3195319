"""The console dashboard and its XLSX export, through the aiohttp test client.

Every figure checked here is computed in this file from the seed CSV and the donation rows
the test writes (plain Python: distinct donors, counts, the 合计 rule read off the CSV) —
never by calling the progress module the page uses.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from bot.app import SESSIONS
from bot.console.charts import (
    MonthPoint,
    completion_bins,
    completion_histogram,
    monthly_plan_vs_actual,
    nice_ceiling,
)
from bot.imports import import_donation_file, import_plan_file
from models.people import AuditEntry
from tests.console_world import add_users, login

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed_plans"
ZJJ = SEEDS / "zhangjiajie-2018.csv"
EVIL = "<script>alert(1)</script>局"
QUOTED = '"><img src=x onerror=alert(2)>办'
CILI = "慈利县"
HANGYUAN = "张家界航院"
OFFICE = "市委办公室"
GUESTHOUSE = "市委招待所"  # 「其中」 of 市委办公室
DASH = "/console/j/zhangjiajie/"


@dataclass(frozen=True)
class Gift:
    record_id: str
    day: date
    donor: str
    unit: str


def gifts(unit: str, day: date, n: int, tag: str, *, donors: str | None = None) -> list[Gift]:
    """n donations to `unit` on `day`, by n distinct donors (or the donors of an earlier tag)."""
    who = donors or tag
    return [Gift(f"{tag}-{i}", day, f"D{who}{i:05d}", unit) for i in range(n)]


GIFTS = [
    *gifts(CILI, date(2018, 3, 5), 180, "cili-a"),
    *gifts(CILI, date(2018, 3, 19), 70, "cili-b"),
    *gifts(CILI, date(2018, 3, 21), 30, "cili-again", donors="cili-a"),  # second gifts: 人 ≠ 人次
    *gifts(CILI, date(2018, 1, 9), 40, "cili-jan"),
    *gifts(HANGYUAN, date(2018, 3, 10), 320, "hy"),
    *gifts(GUESTHOUSE, date(2018, 3, 12), 3, "guest"),
    *gifts(EVIL, date(2019, 3, 2), 4, "evil"),
]


def write_gifts(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(
            [
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
            ]
        )
        for g in GIFTS:
            out.writerow(
                [g.record_id, g.day.isoformat(), g.donor, "测试者", "A", "whole_blood", 400, 0,
                 g.unit, "zhangjiajie"]
            )  # fmt: skip
    return path


def write_evil_plan(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(
            [
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
            ]
        )
        out.writerow(["zhangjiajie", 2019, "人", EVIL, "", "3", "<b>类别</b>", 10, "scheduled", ""])
        out.writerow(["zhangjiajie", 2019, "人", QUOTED, "", "3", "", 5, "scheduled", ""])
    return path


# ---- the independent computation ----------------------------------------------------------


def people(units: set[str], months: set[int], year: int) -> int:
    return len({g.donor for g in GIFTS if g.unit in units and _in(g, months, year)})


def donations(units: set[str], months: set[int], year: int) -> int:
    return sum(1 for g in GIFTS if g.unit in units and _in(g, months, year))


def _in(g: Gift, months: set[int], year: int) -> bool:
    return g.day.year == year and g.day.month in months


def floor_percent(done: int, target: int) -> str:
    value = (Decimal(done) * 100 / target).quantize(Decimal("0.1"), rounding=ROUND_FLOOR)
    return f"{value.normalize():f}%"


def seed_rows() -> list[dict[str, str]]:
    with ZJJ.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def seed_target(unit: str, measure: str, months: str) -> int:
    (row,) = [
        r for r in seed_rows() if (r["unit"], r["measure"], r["months"]) == (unit, measure, months)
    ]
    return int(row["target"])


def march_total_target() -> int:
    """The notice's rule for a month's 合计: lines with a number, except 「其中」 rows whose
    parent has a number of its own in the same month (group headings count via members)."""
    march = [r for r in seed_rows() if r["months"] == "3" and r["measure"] == "人"]
    numbered = {r["unit"] for r in march if r["target"]}
    return sum(int(r["target"]) for r in march if r["target"] and r["parent"] not in numbered)


# ---- reading the page ---------------------------------------------------------------------


class Tables(HTMLParser):
    """Each table's rows: (the <tr> attributes, the cells' text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[tuple[dict[str, str], list[str]]]] = {}
        self._table: str | None = None
        self._row: tuple[dict[str, str], list[str]] | None = None
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table" and "id" in a:
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table and self._in_body:
            self._row = (a, [])
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row[1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@dataclass(frozen=True)
class Line:
    unit: str
    category: str
    period: str
    target: str
    done: str
    remaining: str
    percent: str
    status: str
    behind: bool


def table(html: str, table_id: str) -> list[Line]:
    parser = Tables()
    parser.feed(html)
    lines = []
    for attrs, cells in parser.tables[table_id]:
        assert len(cells) == 8, cells
        percent = cells[6].split("%")[0] + "%" if "%" in cells[6] else cells[6]
        behind = "behind" in attrs.get("class", "").split()
        unit, category, period, target, done, remaining = cells[:6]
        lines.append(
            Line(unit, category, period, target, done, remaining, percent, cells[7], behind)
        )
    return lines


def only(lines: list[Line], unit: str, period: str | None = None) -> Line:
    found = [x for x in lines if x.unit == unit and (period is None or x.period == period)]
    assert len(found) == 1, (unit, period, found)
    return found[0]


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.S)


# ---- the world ----------------------------------------------------------------------------


@pytest.fixture
async def bot(make_bot: Any, tmp_path: Path) -> Any:
    made = await make_bot()
    await add_users(made)
    sessions = made.app[SESSIONS]
    await import_plan_file(sessions, made.settings, ZJJ, actor="test")
    await import_plan_file(
        sessions, made.settings, write_evil_plan(tmp_path / "evil-plan.csv"), actor="test"
    )
    await import_donation_file(
        sessions, made.settings, write_gifts(tmp_path / "gifts.csv"), clock=made.clock
    )
    return made  # the clock stands at 2026-03-15: every 2018 period is over


def at(bot: Any, day: date) -> None:
    bot.clock.set(datetime(day.year, day.month, day.day, 4, 0, tzinfo=UTC))  # noon in Beijing


# ---- the tests ----------------------------------------------------------------------------


async def test_the_month_and_the_year_show_the_numbers_of_the_donations(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    status, html = await staff.get(f"{DASH}?year=2018&month=3")
    assert status == 200, html

    month = table(html, "month-table")
    cili = only(month, CILI)
    target = seed_target(CILI, "人", "3")
    done = people({CILI}, {3}, 2018)
    assert (target, done) == (600, 250)  # 280 gifts, 30 of them second gifts of the same people
    assert (cili.target, cili.done, cili.remaining) == (
        f"{target}人",
        str(done),
        str(target - done),
    )
    assert cili.percent == floor_percent(done, target) == "41.6%"
    assert cili.status.startswith("落后于进度") and cili.behind  # the period is over, unmet

    hy = only(month, HANGYUAN)
    hy_done = people({HANGYUAN}, {3}, 2018)
    hy_target = seed_target(HANGYUAN, "人", "3")
    assert hy.done == str(hy_done) and hy.remaining == f"超额 {hy_done - hy_target}"
    assert hy.status == "超额完成" and not hy.behind
    # a 「其中」 sub-unit's donations count for its parent too
    assert (
        only(month, GUESTHOUSE).done
        == only(month, OFFICE).done
        == str(people({GUESTHOUSE}, {3}, 2018))
    )

    year = table(html, "year-table")
    annual = only(year, CILI, "1、3、8、10、12月")
    counted = donations({CILI}, {1, 3, 8, 10, 12}, 2018)
    assert annual.target == f"{seed_target(CILI, '人次', '1,3,8,10,12')}人次"
    assert annual.done == str(counted) == "320"
    assert len(year) == len(seed_rows())  # every line of the year

    month_total = people({CILI, HANGYUAN, GUESTHOUSE}, {3}, 2018)
    card = re.search(r"3月合计（人）</h3>\s*<p class=\"big\">(\S+) <small>/ (\d+)</small>", html)
    assert card and card.groups() == (str(month_total), str(march_total_target()))
    assert 'href="/console/j/zhangjiajie/export.xlsx?year=2018"' in html


async def test_the_charts_are_accessible_svg_drawn_from_the_same_numbers(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    _, html = await staff.get(f"{DASH}?year=2018&month=3")
    plan_chart, histogram = svgs(html)
    for svg in (plan_chart, histogram):
        assert 'role="img"' in svg and "aria-label=" in svg and "<title>" in svg
    assert "3月 完成 " + str(people({CILI, HANGYUAN, GUESTHOUSE}, {3}, 2018)) + "人" in plan_chart
    assert f"3月 计划 {march_total_target()}人" in plan_chart
    assert "计划" in plan_chart and "已完成" in plan_chart  # the legend
    assert plan_chart.count("<rect") >= 24 + 2  # two bars a month, two legend keys
    # bins of this month's lines with a target: 航院 106.6%, 招待所 75%, 慈利 41.6%,
    # 市委办公室 23%, every other line 0%
    march = [r for r in seed_rows() if r["months"] == "3" and r["measure"] == "人"]
    assert "100%及以上 1个" in histogram and "60–80% 1个" in histogram
    assert "40–60% 1个" in histogram and "20–40% 1个" in histogram
    assert f"0–20% {len(march) - 4}个" in histogram
    assert f"完成率 100%及以上：1个单位：{HANGYUAN}" in histogram


async def test_sorting_and_filtering_by_query_parameters(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    _, html = await staff.get(f"{DASH}?year=2018&month=3&sort=percent&dir=desc")
    month = table(html, "month-table")
    assert [x.unit for x in month[:4]] == [HANGYUAN, GUESTHOUSE, CILI, OFFICE]
    values = [Decimal(x.percent.rstrip("%")) for x in month if x.percent != "—"]
    assert values == sorted(values, reverse=True) and len(values) == len(month)

    _, html = await staff.get(f"{DASH}?year=2018&month=3&sort=done&dir=asc")
    done = [Decimal(x.done) for x in table(html, "month-table")]
    assert done == sorted(done) and done[-1] == people({HANGYUAN}, {3}, 2018)

    _, html = await staff.get(f"{DASH}?year=2018&month=3&sort=unit")
    units = [x.unit for x in table(html, "month-table")]
    assert units == sorted(units)

    _, html = await staff.get(f"{DASH}?year=2018&month=3&q=慈利&status=behind")
    assert [x.unit for x in table(html, "month-table")] == [CILI]
    year_units = {x.unit for x in table(html, "year-table")}
    assert year_units == {CILI}  # 慈利县(卫生计生系统) in January is not started, not behind
    assert 'data-filtered="1"' in html and 'value="慈利"' in html

    _, html = await staff.get(f"{DASH}?year=2018&month=3&status=over")
    assert [x.unit for x in table(html, "month-table")] == [HANGYUAN]
    _, html = await staff.get(f"{DASH}?year=2018&month=3&status=behind_pace")
    month = table(html, "month-table")
    assert month and all(x.behind for x in month) and HANGYUAN not in {x.unit for x in month}
    # the header links keep the filter and flip the direction of the current sort
    _, html = await staff.get(f"{DASH}?year=2018&month=3&q=市委&sort=done&dir=asc")
    assert "sort=done&amp;dir=desc" in html and "q=%E5%B8%82%E5%A7%94" in html
    assert "/console/static/dashboard.js" in html


async def test_in_the_current_month_the_units_behind_pace_are_highlighted(bot: Any) -> None:
    at(bot, date(2018, 3, 25))
    staff = await login(bot.client, "zjj_office")
    status, html = await staff.get(DASH)  # default: this month of this year
    assert status == 200 and "2018年3月" in html
    month = table(html, "month-table")
    # expected by 25 March = target × 25/31
    assert people({CILI}, {3}, 2018) < 600 * 25 / 31 and only(month, CILI).behind
    assert 3 < 13 * 25 / 31 and only(month, OFFICE).behind
    assert people({GUESTHOUSE}, {3}, 2018) < 4 * 25 / 31 and only(month, GUESTHOUSE).behind
    assert not only(month, HANGYUAN).behind
    behind = re.search(r'<section class="card" id="behind-now">(.*?)</section>', html, re.S)
    assert behind and HANGYUAN not in behind.group(1)
    listed = re.findall(r"<li><strong>(.*?)</strong>.*?已完成 (\S+?)人", behind.group(1))
    assert listed and all(done == "0" for _, done in listed)  # worst first: nothing done yet
    lagging = {x.unit for x in month if x.behind}
    assert {CILI, OFFICE, GUESTHOUSE} <= lagging
    count = re.search(r"本月落后于进度的单位：(\d+) 个", behind.group(1))
    assert count and int(count.group(1)) >= len(lagging)  # one per unit, over all lines of March
    # the annual 慈利 line (人次, months 1,3,8,10,12) is counted to date: January and March
    annual = only(table(html, "year-table"), CILI, "1、3、8、10、12月")
    assert annual.done == str(donations({CILI}, {1, 3}, 2018))


async def test_a_year_without_a_plan_says_so_and_links_the_years_with_plans(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    status, html = await staff.get(DASH)  # 2026: no plan
    assert status == 200
    assert "没有 2026 年的献血计划" in html
    assert 'href="/console/j/zhangjiajie/?year=2018&amp;month=3"' in html
    assert 'href="/console/j/zhangjiajie/?year=2019&amp;month=3"' in html
    assert "month-table" not in html and "导出" not in html


async def test_html_in_a_unit_name_is_text_in_the_table_and_in_the_charts(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    status, html = await staff.get(f"{DASH}?year=2019&month=3")
    assert status == 200
    assert EVIL not in html and "<b>类别</b>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;局" in html
    evil = only(table(html, "month-table"), EVIL)  # the parser decodes the escaped text
    assert (evil.category, evil.done, evil.percent) == ("<b>类别</b>", "4", "40%")
    assert only(table(html, "month-table"), QUOTED).target == "5人"
    histogram = svgs(html)[-1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;局" in histogram
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;办" in histogram
    assert "<script" not in histogram and "<img" not in histogram
    # filtering by it is escaped in the form and in the links as well
    _, html = await staff.get(f"{DASH}?year=2019&month=3", params={"q": EVIL})
    assert EVIL not in html and [x.unit for x in table(html, "month-table")] == [EVIL]


async def test_the_export_is_the_progress_workbook_and_is_audited(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    resp = await bot.client.get(f"{DASH}export.xlsx?year=2018", allow_redirects=False)
    assert resp.status == 200
    assert resp.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert 'filename="zhangjiajie-2018-progress.xlsx"' in resp.headers["Content-Disposition"]
    wb = load_workbook(io.BytesIO(await resp.read()))
    header = [c.value for c in wb["3月"][3]]
    unit, target, done = header.index("单位"), header.index("计划数"), header.index("已完成")
    march = {r[unit]: r for r in wb["3月"].iter_rows(min_row=4, values_only=True) if r[0]}
    assert (march[CILI][target], march[CILI][done]) == (600, people({CILI}, {3}, 2018))
    assert march[HANGYUAN][done] == people({HANGYUAN}, {3}, 2018)
    year = [r for r in wb["全年"].iter_rows(min_row=4, values_only=True) if r[0]]
    annual = [r for r in year if r[unit] == CILI and r[target] == 2800]
    assert len(annual) == 1 and annual[0][done] == donations({CILI}, {1, 3, 8, 10, 12}, 2018)
    async with bot.app[SESSIONS]() as s:
        entry = await s.scalar(select(AuditEntry).where(AuditEntry.action == "console.export"))
    assert entry is not None and entry.actor == "console:zjj_office"
    assert entry.jurisdiction == "zhangjiajie" and entry.detail["year"] == 2018
    _, html = await staff.get("/console/j/zhangjiajie/audit")
    assert "console.export" in html


BAD = [
    ("?year=abc", "年份"),
    ("?year=1900", "年份"),
    ("?year=2018&month=13", "月份"),
    ("?month=0", "月份"),
    ("?month=３", "月份"),  # a full-width digit is not a month either
    ("?year=2018&sort=evil", "排序"),
    ("?year=2018&dir=sideways", "排序方向"),
    ("?year=2018&status=nope", "状态"),
    ("?q=" + "慈" * 101, "太长"),
    ("export.xlsx?year=abc", "年份"),
    ("export.xlsx?year=99999999999999999999", "年份"),
    ("?year=" + "9" * 5000, "年份"),  # too long for int() to even try
]


@pytest.fixture
async def bare(make_bot: Any) -> Any:
    """The console with its users and no data at all."""
    made = await make_bot()
    await add_users(made)
    return made


async def test_bad_parameters_get_a_clear_400_page(bare: Any) -> None:
    staff = await login(bare.client, "zjj_office")
    for query, words in BAD:
        status, html = await staff.get(DASH + query)
        assert status == 400, (query, html)
        assert words in html and 'class="error"' in html and "返回本月进度" in html, query
    async with bare.app[SESSIONS]() as s:
        assert (
            await s.scalar(select(AuditEntry).where(AuditEntry.action == "console.export")) is None
        )


async def test_exporting_a_year_without_a_plan_is_a_clear_404(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    status, html = await staff.get(f"{DASH}export.xlsx?year=2030")
    assert status == 404 and "没有 2030 年的计划" in html


async def test_only_the_jurisdictions_office_and_admins_may_look(bot: Any) -> None:
    for path in (DASH, f"{DASH}export.xlsx?year=2018"):
        anonymous = await bot.client.get(path, allow_redirects=False)
        assert anonymous.status == 302 and anonymous.headers["Location"] == "/console/login"
    staff = await login(bot.client, "rugao_office")
    for path in (f"{DASH}?year=2018", f"{DASH}export.xlsx?year=2018"):
        status, html = await staff.get(path)
        assert status == 403 and "本辖区" in html
    async with bot.app[SESSIONS]() as s:
        exported = await s.scalar(select(AuditEntry).where(AuditEntry.action == "console.export"))
    assert exported is None  # the refused export left no trace of a download
    assert (await staff.post("/console/logout"))[0] == 302
    admin = await login(bot.client, "admin")
    assert (await admin.get(f"{DASH}?year=2018"))[0] == 200


def test_the_charts_bin_at_the_edges_and_escape_every_text() -> None:
    bins = completion_bins(
        [("a", Decimal("19.9")), ("b", Decimal(20)), ("c", Decimal("99.9")), ("d", Decimal(100))]
    )
    assert [(label, names) for label, names in bins if names] == [
        ("0–20%", ["a"]),
        ("20–40%", ["b"]),
        ("80–100%", ["c"]),
        ("100%及以上", ["d"]),
    ]
    svg = completion_histogram([(EVIL, Decimal(5))], title="<i>标题</i>")
    assert "<i>" not in svg and "&lt;i&gt;标题&lt;/i&gt;" in svg and "<script" not in svg
    plan = monthly_plan_vs_actual(
        [MonthPoint(3, 600, Decimal(250))], measure="<人>", title='"分月"'
    )
    assert "<人>" not in plan and "&lt;人&gt;" in plan and "&quot;分月&quot;" in plan
    assert "3月 完成 250&lt;人&gt;（41.6%）" in plan
    assert "本年没有分月安排" in monthly_plan_vs_actual([], measure="人", title="x")
    assert "本月没有有任务数的单位" in completion_histogram([], title="x")
    assert nice_ceiling(2800) == (3000.0, 1000.0) and nice_ceiling(12, whole=True) == (15.0, 5.0)
