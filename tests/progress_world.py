"""The progress tests' world: the seed notices' traps as units, plan lines and donations,
inserted into a real database (SQLite and PostgreSQL), and the plain-Python reference.

张家界 卫计委 233 = 12+202+1+4+10+4 with its sub-units rolled up, a group heading summing its
members, a standby unit, 青浦 赵巷镇 792 spanning 8–9月 in 人份 with platelets, 如皋 卫健系统
600 全年, 禄劝 shares with and without a headcount, distinct donors for 人, over-fulfilment and
a donation on the last day of a month. Shared by test_progress.py and test_export.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import Donation, Donor, JurisdictionRow, Plan, PlanLine, Unit
from models.db import create_engine, session_factory
from models.migrate import upgrade

ALL = set(range(1, 13))
WJW = "市卫生计生委及二级机构"
WJW_KIDS = {
    "市卫生计生委机关": 12,
    "市人民医院": 202,
    "市中心血站": 1,
    "市疾控中心": 4,
    "市妇幼保健院": 10,
    "市卫生计生综合监督执法局": 4,
}
GROUP = "社会发展部门（4个）"
# unit → (jurisdiction, parent, headcount, is_group)
UNITS: dict[str, tuple[str, str | None, int | None, bool]] = {
    WJW: ("zhangjiajie", None, None, False),
    **{k: ("zhangjiajie", WJW, None, False) for k in WJW_KIDS},
    "市人力资源社会保障局及二级机构": ("zhangjiajie", None, None, False),
    "市高级技工学校": ("zhangjiajie", "市人力资源社会保障局及二级机构", None, False),
    GROUP: ("zhangjiajie", None, None, True),
    "市教育局": ("zhangjiajie", GROUP, None, False),
    "市电大": ("zhangjiajie", "市教育局", None, False),
    "市科技局": ("zhangjiajie", GROUP, None, False),
    "市民宗委": ("zhangjiajie", GROUP, None, False),
    "市文体广电新闻出版局": ("zhangjiajie", GROUP, None, False),
    "市公安消防支队": ("zhangjiajie", None, None, False),
    "区县(含区县直单位、街道及乡镇直单位)": ("zhangjiajie", None, None, False),
    "慈利县": ("zhangjiajie", "区县(含区县直单位、街道及乡镇直单位)", None, False),
    "赵巷镇": ("qingpu", None, None, False),
    "白鹤镇": ("qingpu", None, None, False),
    "全区10个街镇春节保障": ("qingpu", None, None, True),
    "卫健系统": ("rugao", None, None, False),
    "审计局": ("rugao", None, None, False),
    "统计局": ("rugao", None, None, False),
    "屏山街道": ("luquan", None, 121, False),
    "县级各部门": ("luquan", None, None, False),
}
# (jurisdiction, year, measure, is_demo) → [(unit, kind, months, target, share %, expected target)]
Line = tuple[str, str, set[int], int | None, int | None, int | None]
PLANS: dict[tuple[str, int, str, bool], list[Line]] = {
    ("zhangjiajie", 2018, "人", False): [
        (WJW, "scheduled", {3}, 233, None, 233),
        *[(k, "scheduled", {3}, t, None, t) for k, t in WJW_KIDS.items()],
        ("市人力资源社会保障局及二级机构", "scheduled", {6}, 37, None, 37),
        ("市高级技工学校", "scheduled", {6}, 15, None, 15),
        (GROUP, "group", {7}, None, None, 64 + 5 + 2 + 6),  # 市电大 is inside 教育局's 64
        ("市教育局", "scheduled", {7}, 64, None, 64),
        ("市电大", "scheduled", {7}, 3, None, 3),
        ("市科技局", "scheduled", {7}, 5, None, 5),
        ("市民宗委", "scheduled", {7}, 2, None, 2),
        ("市文体广电新闻出版局", "scheduled", {7}, 6, None, 6),
        ("市公安消防支队", "emergency", {9}, None, None, None),
    ],
    ("zhangjiajie", 2018, "人次", False): [
        ("区县(含区县直单位、街道及乡镇直单位)", "annual", ALL, 6400, None, 6400),
        ("慈利县", "annual", {1, 3, 8, 10, 12}, 2800, None, 2800),
    ],
    ("zhangjiajie", 2018, "人", True): [(WJW, "scheduled", {3}, 999, None, 999)],
    ("zhangjiajie", 2026, "人", True): [(WJW, "scheduled", {3}, 100, None, 100)],
    ("qingpu", 2021, "人份", False): [
        ("赵巷镇", "scheduled", {8, 9}, 792, None, 792),
        ("赵巷镇", "annual", ALL, 804, None, 804),
        ("全区10个街镇春节保障", "group", {2}, 599, None, 599),
        ("白鹤镇", "scheduled", {1}, 660, None, 660),
        ("白鹤镇", "annual", ALL, 1066, None, 1066),
    ],
    ("qingpu", 2022, "ml", False): [("白鹤镇", "annual", ALL, 10000, None, 10000)],
    ("rugao", 2020, "人", False): [
        ("卫健系统", "annual", ALL, 600, None, 600),
        ("审计局", "scheduled", {2}, 6, None, 6),
        ("统计局", "scheduled", {2}, 5, None, 5),
    ],
    ("luquan", 2016, "人", False): [
        ("屏山街道", "share", ALL, None, 30, 37),  # ceil(121 × 30%) = ceil(36.3)
        ("县级各部门", "share", ALL, None, 30, None),  # no headcount: never a made-up number
    ],
}


@dataclass(frozen=True)
class D:
    unit: str | None
    day: date
    donor: int | None
    kind: str = "whole_blood"
    ml: int = 400
    tu: float = 0.0


@dataclass
class World:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    unit_ids: dict[str, int]
    donations: list[D] = field(default_factory=list)


def hand_donations() -> list[D]:
    """The rows whose totals the tests state by hand."""
    rows = [D(WJW, date(2018, 3, 5), 1), D(WJW, date(2018, 3, 6), 2), D(WJW, date(2018, 4, 1), 3)]
    counts = {
        "市卫生计生委机关": 3,
        "市人民医院": 20,
        "市中心血站": 1,
        "市妇幼保健院": 2,
        "市卫生计生综合监督执法局": 1,
    }
    donor = 100
    for unit, n in counts.items():
        for i in range(n):
            donor += 1
            rows.append(D(unit, date(2018, 3, 1 + i), donor))
    rows.append(D("市人民医院", date(2018, 3, 28), donor, "platelets", 0, 2.0))  # same donor again
    rows += [D("审计局", date(2020, 2, 3 + i), 200 + i) for i in range(8)]  # 8 donors…
    rows += [
        D("审计局", date(2020, 2, 20), 201, "platelets", 0, 1.0),  # …one of them twice
        D("审计局", date(2020, 2, 21), None, ml=200),  # no donor id: its own donor
        D("审计局", date(2020, 2, 29), 300),  # the last day of February (a leap year)
        D("审计局", date(2020, 3, 1), 301),
        D("审计局", date(2020, 1, 31), 302),
    ]
    zhao = [(8, 3, 400), (8, 3, 400), (8, 3, 400), (8, 15, 300), (8, 31, 200), (10, 5, 400)]
    rows += [D("赵巷镇", date(2021, m, d), None, ml=ml) for m, d, ml in zhao]
    rows += [
        D("赵巷镇", date(2021, 8, 20), 400, "platelets", 0, 1.0),
        D("赵巷镇", date(2021, 9, 10), 401, "platelets", 0, 1.5),
        D("赵巷镇", date(2021, 1, 10), 402, ml=200),
    ]
    return rows


HAND_UNITS = {WJW, *WJW_KIDS, "审计局", "赵巷镇"}


def random_donations(seed: int = 7) -> list[D]:
    rng = random.Random(seed)
    rows: list[D] = []
    years = {"zhangjiajie": 2018, "qingpu": 2021, "rugao": 2020, "luquan": 2016}
    for unit, (jur, *_rest) in UNITS.items():
        if unit in HAND_UNITS:
            continue
        for _ in range(rng.randint(20, 70)):
            year = years[jur] + rng.choice([0, 0, 0, 0, 1, -1])
            day = date(year, 1, 1) + timedelta(days=rng.randrange(365))
            donor = rng.choice([None, *range(1000, 1030)])
            if rng.random() < 0.3:
                rows.append(D(unit, day, donor, "platelets", 0, rng.choice([1.0, 1.5, 2.0])))
            else:
                rows.append(D(unit, day, donor, ml=rng.choice([200, 300, 400])))
    rows += [D(None, date(2018, 3, 9), None) for _ in range(5)]  # unmatched: count nowhere
    return rows


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    await asyncio.to_thread(upgrade, db_url)
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    built = World(engine, sessions, {}, hand_donations() + random_donations())
    await insert_world(built)
    yield built
    await engine.dispose()


async def insert_world(world: World) -> None:
    async with world.sessions() as s, s.begin():
        for code in ("zhangjiajie", "qingpu", "rugao", "luquan"):
            s.add(JurisdictionRow(code=code, name=code))
        await s.flush()
        for name, (jur, parent, headcount, is_group) in UNITS.items():
            unit = Unit(
                jurisdiction=jur,
                name=name,
                normalized=name,
                headcount=headcount,
                is_group=is_group,
                parent_id=world.unit_ids.get(parent or ""),
            )
            s.add(unit)
            await s.flush()
            world.unit_ids[name] = unit.id
        for (jur, year, measure, demo), lines in PLANS.items():
            plan = Plan(jurisdiction=jur, year=year, measure=measure, is_demo=demo)
            s.add(plan)
            await s.flush()
            for n, (unit, kind, months, target, share, _) in enumerate(lines):
                bits = sum(1 << m for m in months)
                s.add(
                    PlanLine(
                        plan_id=plan.id,
                        unit_id=world.unit_ids[unit],
                        kind=kind,
                        months=bits,
                        month_text="",
                        target=target,
                        share_percent=share,
                        line_no=n,
                    )
                )
        donors = {d.donor for d in world.donations if d.donor is not None}
        s.add_all(Donor(id=i, jurisdiction="zhangjiajie", id_hash=f"h{i}") for i in donors)
        await s.flush()
        s.add_all(
            Donation(
                jurisdiction=UNITS[d.unit][0] if d.unit else "zhangjiajie",
                record_id=f"R{n}",
                donated_at=d.day,
                donor_id=d.donor,
                kind=d.kind,
                volume_ml=d.ml,
                therapeutic_units=d.tu,
                unit_id=world.unit_ids[d.unit] if d.unit else None,
            )
            for n, d in enumerate(world.donations)
        )


# ---- the independent computation -------------------------------------------------------
def subtree(unit: str) -> set[str]:
    found = {unit}
    for name, (_, parent, *_rest) in UNITS.items():
        if parent == unit:
            found |= subtree(name)
    return found


def ref_done(
    world: World,
    unit: str,
    year: int,
    months: set[int],
    as_of: date,
    measure: str,
    platelet_units: float = 2.0,
) -> Fraction:
    names = subtree(unit)
    rows = [
        d
        for d in world.donations
        if d.unit in names and d.day.year == year and d.day.month in months and d.day <= as_of
    ]
    if measure == "人次":
        return Fraction(len(rows))
    if measure == "人":
        known = {d.donor for d in rows if d.donor is not None}
        return Fraction(len(known) + sum(1 for d in rows if d.donor is None))
    shares = Fraction(sum(d.ml for d in rows if d.kind == "whole_blood"), 200) + sum(
        (Fraction(d.tu) * Fraction(platelet_units) for d in rows if d.kind == "platelets"),
        Fraction(0),
    )
    return shares if measure == "人份" else shares * 200


def ref_pace(target: int, year: int, months: set[int], as_of: date) -> Fraction:
    days = [date(year, 1, 1) + timedelta(i) for i in range(366)]
    days = [d for d in days if d.year == year and d.month in months]
    return Fraction(target * sum(1 for d in days if d <= as_of), len(days))


def ref_status(target: int | None, done: Fraction, pace: Fraction, kind: str, started: bool) -> str:
    if kind == "emergency":
        return "standby"
    if target is None:
        return "needs_headcount" if kind == "share" else "no_target"
    if not started:
        return "upcoming"
    if done > target:
        return "over"
    if done == target:
        return "met"
    if done == 0:
        return "not_started"
    return "behind" if done < pace else "ahead"
