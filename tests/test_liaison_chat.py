"""Liaisons through signed XML over HTTP, against the seed plans and a known donation file.

Every number in a reply is checked against an independent computation over the
donation rows this test writes (plain Python, not the progress module).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import SESSIONS
from bot.binding import create_invite
from bot.imports import import_donation_file, import_plan_file
from models.units import resolve_unit

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed_plans"
COLUMNS = (
    "record_id,donated_at,donor_id,donor_name,blood_type,kind,volume_ml,therapeutic_units,"
    "unit,jurisdiction"
)


@dataclass(frozen=True)
class Row:
    record_id: str
    day: date
    donor: str
    unit: str
    jurisdiction: str
    kind: str = "whole_blood"
    volume: int = 400
    platelets: float = 0.0


def _rows(code: str, unit: str, day: date, n: int, *, start: int = 0, **kw: Any) -> list[Row]:
    """n donations by n distinct synthetic donors of `unit` on `day`."""
    return [
        Row(
            f"{code}-{unit}-{day:%m%d}-{start + i}",
            day,
            f"SYN{code}{start + i:06d}",
            unit,
            code,
            **kw,
        )
        for i in range(n)
    ]


def _write(path: Path, rows: Iterable[Row]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(COLUMNS.split(","))
        for r in rows:
            out.writerow(
                [r.record_id, r.day.isoformat(), r.donor, "测试者", "O", r.kind, r.volume,
                 r.platelets, r.unit, r.jurisdiction]
            )  # fmt: skip
    return path


def distinct_donors(rows: list[Row], units: set[str], months: set[int], year: int) -> int:
    return len(
        {r.donor for r in rows if r.unit in units and r.day.year == year and r.day.month in months}
    )


def count(rows: list[Row], units: set[str], months: set[int], year: int) -> int:
    return sum(1 for r in rows if r.unit in units and r.day.year == year and r.day.month in months)


def numbers(reply: str) -> dict[str, str]:
    """The figures of the first line block: 任务 / 已完成 / 还差 / 超额."""
    found = {}
    for label in ("任务", "已完成", "还差", "已超额完成"):
        m = re.search(label + r" (\d+(?:\.\d+)?)", reply)
        if m:
            found[label] = m.group(1)
    return found


ZJJ_HEALTH = "市卫生计生委及二级机构"
ZJJ_CHILDREN = {
    "市卫生计生委机关", "市人民医院(含市妇幼保健院)", "市计生协会",
    "市卫生计生综合监督执法局", "市疾控中心", "市中心血站",
}  # fmt: skip

ROWS: list[Row] = [
    # 张家界 2018 (附件2 in 人, 附件1 in 人次)
    *_rows("zhangjiajie", "慈利县", date(2018, 3, 5), 180),
    *_rows("zhangjiajie", "慈利县", date(2018, 3, 19), 70, start=1000),
    *[  # repeat donors (their second donation in March): 人 ≠ 人次
        Row(f"zjj-repeat-{i}", date(2018, 3, 21), f"SYNzhangjiajie{i:06d}", "慈利县", "zhangjiajie")
        for i in range(30)
    ],
    *_rows("zhangjiajie", "慈利县", date(2018, 1, 9), 40, start=5000),
    *_rows("zhangjiajie", "慈利县", date(2018, 6, 2), 25, start=7000),
    *_rows("zhangjiajie", ZJJ_HEALTH, date(2018, 2, 6), 3, start=100),
    *_rows("zhangjiajie", "市人民医院(含市妇幼保健院)", date(2018, 2, 7), 150, start=200),
    *_rows("zhangjiajie", "市疾控中心", date(2018, 2, 8), 13, start=400),
    *_rows("zhangjiajie", "市国家安全局", date(2018, 9, 3), 2, start=600),
    # 如皋 2020
    *_rows("rugao", "卫健系统", date(2020, 4, 1), 120),
    *_rows("rugao", "卫健系统", date(2020, 11, 30), 90, start=200),
    *_rows("rugao", "审计局", date(2020, 2, 12), 6, start=500),
    *_rows("rugao", "统计局", date(2020, 2, 13), 2, start=600),
    # 青浦 2021 (人份: 400 ml = 2 人份, 200 ml = 1, one platelet 治疗量 = 2)
    *_rows("qingpu", "赵巷镇", date(2021, 8, 20), 300),
    *_rows("qingpu", "赵巷镇", date(2021, 9, 10), 100, start=400, volume=200),
    *_rows("qingpu", "赵巷镇", date(2021, 9, 11), 10, start=600, kind="platelets", volume=0,
           platelets=1.0),
    *_rows("qingpu", "白鹤镇", date(2021, 1, 15), 200),
]  # fmt: skip


@pytest.fixture
async def seeded(make_bot: Any, tmp_path: Path) -> Any:
    bot = await make_bot()
    sessions = bot.app[SESSIONS]
    for name in ("zhangjiajie-2018", "rugao-2020", "qingpu-2021", "luquan-2016"):
        await import_plan_file(sessions, bot.settings, SEEDS / f"{name}.csv", actor="test")
    bot.clock.set(datetime(2022, 1, 1, tzinfo=UTC))  # donations are all in the past
    await import_donation_file(
        sessions, bot.settings, _write(tmp_path / "donations.csv", ROWS), clock=bot.clock
    )
    return bot


async def bind(bot: Any, code: str, unit: str | None, openid: str, role: str = "liaison") -> None:
    async with bot.app[SESSIONS]() as s:
        ref = None
        if unit is not None:
            found = await resolve_unit(s, code, unit)
            assert found.unit is not None, found
            ref = found.unit
        new = await create_invite(
            s, bot.settings, jurisdiction=code, role=role, unit=ref,
            ttl=timedelta(days=1), actor="test", now=bot.clock.now(),
        )  # fmt: skip
        await s.commit()
    reply = await bot.say(code, f"绑定 {new.code}", openid=openid)
    assert reply is not None and "绑定成功" in reply, reply


def at(bot: Any, day: date) -> None:
    bot.clock.set(datetime(day.year, day.month, day.day, 4, 0, tzinfo=UTC))  # noon in Beijing


async def test_cili_in_march_counts_people_for_the_month_and_donations_for_the_year(
    seeded: Any,
) -> None:
    bot = seeded
    at(bot, date(2018, 3, 25))
    await bind(bot, "zhangjiajie", "慈利县", "o_cili")
    reply = await bot.say("zhangjiajie", "这个月还差多少", openid="o_cili")
    assert reply is not None
    month_block, year_block = reply.split("全年任务")[1], reply.split("全年任务")[0]
    del month_block
    people = distinct_donors(ROWS, {"慈利县"}, {3}, 2018)
    assert people == 250
    assert f"任务 600人，已完成 {people}人" in reply and f"还差 {600 - people}人" in reply
    donations = count(ROWS, {"慈利县"}, {1, 3}, 2018)  # 附件1: months 1,3,8,10,12 so far
    assert f"任务 2800人次，已完成 {donations}人次" in reply
    assert "3月" in year_block


async def test_cili_in_june_has_no_drive_and_is_told_the_next_month(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2018, 6, 10))
    await bind(bot, "zhangjiajie", "慈利县", "o_cili")
    reply = await bot.say("zhangjiajie", "这个月还差几个", openid="o_cili")
    assert reply is not None
    assert "6月没有献血任务" in reply and "下一次安排在8月" in reply
    # the year's status: the March line with what was done in March
    assert f"已完成 {distinct_donors(ROWS, {'慈利县'}, {3}, 2018)}人" in reply


async def test_health_commission_rolls_up_its_sub_units(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2018, 2, 20))
    await bind(bot, "zhangjiajie", ZJJ_HEALTH, "o_health")
    reply = await bot.say("zhangjiajie", "本月任务完成没", openid="o_health")
    assert reply is not None
    done = distinct_donors(ROWS, {ZJJ_HEALTH, *ZJJ_CHILDREN}, {2}, 2018)
    assert done == 166
    assert f"任务 233人，已完成 {done}人" in reply and f"还差 {233 - done}人" in reply


async def test_a_sub_unit_over_its_target_is_celebrated(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2018, 2, 20))
    await bind(bot, "zhangjiajie", "市疾控中心", "o_cdc")
    reply = await bot.say("zhangjiajie", "进度咋样", openid="o_cdc")
    assert reply is not None
    done = distinct_donors(ROWS, {"市疾控中心"}, {2}, 2018)
    assert f"已完成 {done}人" in reply and f"已超额完成 {done - 10}人" in reply
    assert "还差" not in reply and "-" not in numbers(reply).get("还差", "")


async def test_an_emergency_unit_is_told_it_has_no_fixed_quota(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2018, 9, 12))
    await bind(bot, "zhangjiajie", "市国家安全局", "o_standby")
    reply = await bot.say("zhangjiajie", "这个月还差多少", openid="o_standby")
    assert reply is not None and "没有固定任务" in reply
    assert "任务 " not in reply  # no made-up number


async def test_rugao_annual_health_line_and_the_two_unseparated_bureaus(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2020, 12, 5))
    await bind(bot, "rugao", "卫健系统", "o_health")
    reply = await bot.say("rugao", "今年完成几个了", openid="o_health")
    assert reply is not None
    done = distinct_donors(ROWS, {"卫健系统"}, set(range(1, 13)), 2020)
    assert f"任务 600人，已完成 {done}人" in reply and f"还差 {600 - done}人" in reply

    at(bot, date(2020, 2, 20))
    for unit, target, openid in (("审计局", 6, "o_audit"), ("统计局", 5, "o_stats")):
        await bind(bot, "rugao", unit, openid)
        reply = await bot.say("rugao", "这个月还差多少", openid=openid)
        assert reply is not None and unit in reply
        done = distinct_donors(ROWS, {unit}, {2}, 2020)
        assert f"任务 {target}人，已完成 {done}人" in reply


async def test_qingpu_zhaoxiang_spans_august_and_september_in_units(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2021, 9, 15))
    await bind(bot, "qingpu", "赵巷镇", "o_zx")
    reply = await bot.say("qingpu", "这个月还差多少", openid="o_zx")
    assert reply is not None
    units = sum(
        (r.volume / 200 if r.kind == "whole_blood" else r.platelets * 2)
        for r in ROWS
        if r.unit == "赵巷镇" and r.day.month in (8, 9)
    )
    assert units == 300 * 2 + 100 + 10 * 2
    assert "8、9月（2个月合计）" in reply
    assert f"任务 792人份，已完成 {units:g}人份" in reply and f"还差 {792 - units:g}人份" in reply


async def test_qingpu_baihe_january_line(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2021, 1, 20))
    await bind(bot, "qingpu", "白鹤镇", "o_bh")
    reply = await bot.say("qingpu", "1月份的任务多少", openid="o_bh")
    assert reply is not None
    assert f"任务 660人份，已完成 {200 * 2}人份" in reply


async def test_luquan_share_target_without_and_with_headcount(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2016, 5, 10))
    await bind(bot, "luquan", "屏山街道", "o_ps")
    reply = await bot.say("luquan", "今年一共要多少人", openid="o_ps")
    assert reply is not None and "在职人数" in reply and "30%" in reply
    assert "任务 " not in reply  # never a made-up number
    from sqlalchemy import update

    from models.plans import Unit

    async with bot.app[SESSIONS]() as s:
        await s.execute(update(Unit).where(Unit.name == "屏山街道").values(headcount=87))
        await s.commit()
    reply = await bot.say("luquan", "今年一共要多少人", openid="o_ps")
    assert reply is not None and "任务 27人" in reply  # ceil(87 × 30%) = 27


async def test_unbound_user_is_told_how_to_bind(seeded: Any) -> None:
    reply = await seeded.say("zhangjiajie", "这个月还差多少", openid="o_stranger")
    assert reply is not None and "绑定 邀请码" in reply and "任务" not in reply


async def test_liaison_never_sees_another_units_numbers(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2018, 3, 25))
    await bind(bot, "zhangjiajie", "慈利县", "o_cili")
    reply = await bot.say("zhangjiajie", "市人民医院今年完成了吗", openid="o_cili")
    assert reply is not None and "只能查询本单位" in reply
    assert "202" not in reply and "150" not in reply


async def test_office_names_a_unit_and_answers_an_ambiguous_one_by_number(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2018, 3, 25))
    await bind(bot, "zhangjiajie", None, "o_office", role="office")
    reply = await bot.say("zhangjiajie", "慈利县三月还差多少", openid="o_office")
    assert reply is not None and "慈利县" in reply
    assert f"已完成 {distinct_donors(ROWS, {'慈利县'}, {3}, 2018)}人" in reply
    reply = await bot.say("zhangjiajie", "市卫生今年完成了吗", openid="o_office")
    assert reply is not None
    if "请回复序号" in reply:
        options = re.findall(r"(\d+)\. (\S+)", reply)
        pick = next(n for n, name in options if name == ZJJ_HEALTH)
        reply = await bot.say("zhangjiajie", pick, openid="o_office")
        assert reply is not None and ZJJ_HEALTH in reply


async def test_office_asks_which_units_are_behind(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2018, 3, 25))
    await bind(bot, "zhangjiajie", None, "o_office", role="office")
    reply = await bot.say("zhangjiajie", "哪些单位落后", openid="o_office")
    assert reply is not None and "落后于应有进度的单位" in reply
    assert "1. " in reply
