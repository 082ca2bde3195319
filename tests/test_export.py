"""The progress 通报 workbook, read back with openpyxl and checked against plain Python."""

from __future__ import annotations

import asyncio
from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet
from progress_world import (
    PLANS,
    WJW,
    World,
    db_url,
    hand_donations,
    insert_world,
    random_donations,
    ref_done,
    ref_pace,
    ref_status,
    world,
)

from bot.cli import main
from bot.export import HEADER, export_progress
from models.db import create_engine, session_factory
from models.migrate import upgrade

TODAY = date(2018, 7, 20)
COLUMN = {name: i for i, name in enumerate(HEADER)}


_FIXTURES = (db_url, world)  # used by name below


def numbered(ws: Worksheet) -> list[tuple[int, tuple[object, ...]]]:
    """(row number, values) of the data rows: after title, subtitle and header; no 合计."""
    rows = enumerate(ws.iter_rows(min_row=4, values_only=True), start=4)
    return [(n, r) for n, r in rows if isinstance(r[0], int)]


def rows_of(ws: Worksheet) -> list[tuple[object, ...]]:
    return [r for _, r in numbered(ws)]


def expected_lines(world: World, as_of: date) -> list[tuple[str, str, int | None, Fraction, str]]:
    """(unit, measure, target, done, status) of every 2018 张家界 line, computed from the rows."""
    out = []
    for (jur, year, measure, demo), lines in PLANS.items():
        if jur != "zhangjiajie" or year != 2018 or demo:
            continue
        for unit, kind, months, _, _, target in lines:
            done = ref_done(world, unit, year, months, as_of, measure)
            pace = ref_pace(target or 0, year, months, as_of)
            status = ref_status(target, done, pace, kind, as_of >= date(year, min(months), 1))
            out.append((unit, measure, target, done, status))
    return out


async def test_the_workbook_has_the_numbers_a_reader_checks(world: World, tmp_path: Path) -> None:
    out = tmp_path / "tongbao.xlsx"
    async with world.sessions() as s:
        await export_progress(s, "zhangjiajie", 2018, out, today=TODAY)
    wb = load_workbook(out)
    assert wb.sheetnames == ["全年", *(f"{m}月" for m in range(1, 13))]
    year = wb["全年"]
    assert "2018年" in str(year["A1"].value) and "2018年07月20日" in str(year["A2"].value)
    assert [c.value for c in year[3]] == list(HEADER) and all(c.font.b for c in year[3])
    assert year.freeze_panes == "A4"
    assert year.column_dimensions["B"].width >= 30

    rows = numbered(year)
    expected = expected_lines(world, TODAY)
    assert len(rows) == len(expected)
    for (n, row), (unit, measure, target, done, status) in zip(rows, expected, strict=True):
        assert (row[COLUMN["单位"]], row[COLUMN["计量"]]) == (unit, measure)
        assert row[COLUMN["计划数"]] == target
        assert Fraction(str(row[COLUMN["已完成"]])) == done
        if target:
            assert Fraction(str(row[COLUMN["尚差"]])) == max(target - done, 0)
            assert row[COLUMN["完成率"]] == pytest.approx(float(done / target))
        else:
            assert row[COLUMN["尚差"]] is None and row[COLUMN["完成率"]] is None
        fill = year.cell(n, 1).fill.fgColor.rgb
        assert (fill == "00FFC7CE") == (status in ("behind", "not_started")), unit
    percent_cells = [r[COLUMN["完成率"]] for r in year.iter_rows(min_row=4)]
    assert {c.number_format for c in percent_cells} == {"0.0%"}


async def test_month_sheets_list_the_schedule_and_add_up_like_the_notice(
    world: World, tmp_path: Path
) -> None:
    out = tmp_path / "tongbao.xlsx"
    async with world.sessions() as s:
        await export_progress(s, "zhangjiajie", 2018, out, today=date(2018, 12, 31))
    wb = load_workbook(out)
    march = wb["3月"]
    units = [r[COLUMN["单位"]] for r in rows_of(march)]
    assert units[0] == WJW and len(units) == 7  # 卫计委 and its six 其中 units
    total = [r for r in march.iter_rows(min_row=4, values_only=True) if r[1] == "3月合计"]
    (total_row,) = total
    done = ref_done(world, WJW, 2018, {3}, date(2018, 12, 31), "人")
    assert (total_row[COLUMN["计划数"]], Fraction(str(total_row[COLUMN["已完成"]]))) == (233, done)
    standby = [r for r in rows_of(wb["9月"]) if r[COLUMN["单位"]] == "市公安消防支队"]
    assert standby[0][COLUMN["计划数"]] is None and "应急" in str(standby[0][COLUMN["状态"]])
    assert [r[1] for r in wb["1月"].iter_rows(min_row=4, values_only=True)] == ["本月无计划安排"]


def test_the_command_writes_the_file(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_build(sqlite_url))
    monkeypatch.setenv("DONORBOT_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DONORBOT_CONFIG", str(tmp_path / "none.toml"))
    out = tmp_path / "qingpu.xlsx"
    args = [
        "export",
        "progress",
        "-j",
        "qingpu",
        "--year",
        "2021",
        "--out",
        str(out),
        "--date",
        "2021-09-30",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "5 lines of qingpu 2021 as of 2021-09-30" in result.output
    zhao = [r for r in rows_of(load_workbook(out)["9月"]) if r[COLUMN["单位"]] == "赵巷镇"]
    assert zhao[0][COLUMN["已完成"]] == 13.5 and zhao[0][COLUMN["时段"]] == "8-9月"
    assert "计入8月合计" in str(zhao[0][COLUMN["备注"]])
    missing = CliRunner().invoke(main, [*args[:3], "nowhere", *args[4:]])
    assert missing.exit_code == 2 and "nowhere" in missing.output


async def _build(url: str) -> None:
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    world = World(engine, session_factory(engine), {}, hand_donations() + random_donations())
    await insert_world(world)
    await engine.dispose()
