"""Broadcast audiences (`models.audiences`) on SQLite and PostgreSQL.

A small 张家界 world in 2026 (today 15 March) with bound liaisons, office staff and donors,
and a 如皋 world beside it whose users must never appear. Every expectation is written out
by hand here (or, for the donation intervals, asked of the chat's own `next_eligible` over
each donor's full history) — never taken from the module under test.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.policy import Donation as PolicyDonation
from bot.policy import next_eligible
from handlers.donor import shipped_policies
from models import Binding, Donation, Donor, JurisdictionRow, Plan, PlanLine, Unit
from models.audiences import AudienceError, AudienceSpec, Recipient, preview, recipients
from models.db import create_engine, session_factory
from models.donor_extras import record_consent, withdraw_consent
from models.units import normalize_unit_name

ZJJ, RG = "zhangjiajie", "rugao"
TODAY = date(2026, 3, 15)
NOW = datetime(2026, 3, 15, 2, tzinfo=UTC)
ALL_MONTHS = set(range(1, 13))
HOSPITAL, CILI, FINANCE, FIRE, AUDIT = (
    "市人民医院",
    "慈利县",
    "市财政局",
    "市公安消防支队",
    "市审计局",
)
# unit → [(measure, kind, months, target)] in 张家界's 2026 plans
LINES: dict[str, list[tuple[str, str, set[int], int | None]]] = {
    HOSPITAL: [
        ("人次", "scheduled", {3}, 30),
        ("人次", "scheduled", set(range(2, 10)), 100),  # 「2~9月」 counts for March and May
        ("人", "scheduled", {3}, 10),
    ],
    CILI: [("人次", "scheduled", {5}, 20)],
    FINANCE: [("人次", "annual", ALL_MONTHS, 50)],  # 全年: never a month's line
    FIRE: [("人", "emergency", {3}, None)],  # 应急献血, listed in March
    AUDIT: [("人次", "scheduled", {3}, 4)],
}
LIAISONS = {
    "o_la1": HOSPITAL,
    "o_la2": HOSPITAL,
    "o_lb": CILI,
    "o_lc": FINANCE,
    "o_ld": FIRE,
    "o_le": AUDIT,
}


@dataclass
class World:
    sessions: async_sessionmaker[AsyncSession]
    units: dict[str, int] = field(default_factory=dict)
    donors: dict[str, int] = field(default_factory=dict)  # openid → donor id
    history: dict[str, list[tuple[date, str]]] = field(default_factory=dict)  # openid → donations


def wb(day: date) -> tuple[date, str]:
    return day, "whole_blood"


def pl(day: date) -> tuple[date, str]:
    return day, "platelets"


# donor openid → (unit, blood type on record, donations)
DONORS: dict[str, tuple[str | None, str | None, list[tuple[date, str]]]] = {
    "d_at_interval": (HOSPITAL, "O", [wb(date(2025, 3, 1)), wb(date(2025, 9, 15))]),  # +6 months
    "d_day_before": (HOSPITAL, "O", [wb(date(2025, 9, 16))]),  # allowed from 16 March
    "d_pl_at": (CILI, "A", [pl(date(2026, 3, 1))]),  # platelets: 2 weeks → 15 March
    "d_pl_before": (CILI, "A", [pl(date(2026, 3, 2))]),
    "d_never": (None, "O", []),  # no donation on record: eligible
    "d_cross": (CILI, "B", [wb(date(2026, 1, 10)), pl(date(2026, 2, 1))]),  # pl 3 months after wb
    "d_capped": (FINANCE, "AB", [pl(date(2026, 1, 1) + timedelta(days=2 * i)) for i in range(24)]),
    "d_future": (FINANCE, "B", [wb(date(2025, 1, 1)), wb(date(2026, 4, 1))]),  # not yet: ignored
    "d_month_end": (AUDIT, "O", [wb(date(2025, 8, 31))]),  # +6 months = 28 February 2026
    "d_aug_28": (AUDIT, "O", [wb(date(2025, 8, 28))]),
    "d_sep_1": (AUDIT, "O", [wb(date(2025, 9, 1))]),
}


async def build(sessions: async_sessionmaker[AsyncSession]) -> World:
    world = World(sessions)
    async with sessions() as s, s.begin():
        s.add(JurisdictionRow(code=ZJJ, name="张家界市", policy="hunan-2015"))
        s.add(JurisdictionRow(code=RG, name="如皋市", policy=None))
        await s.flush()
        for name in LINES:
            unit = Unit(jurisdiction=ZJJ, name=name, normalized=normalize_unit_name(name))
            s.add(unit)
            await s.flush()
            world.units[name] = unit.id
        rg_unit = Unit(jurisdiction=RG, name="审计局", normalized="审计局")
        s.add(rg_unit)
        await s.flush()
        plans: dict[str, Plan] = {}
        for name, lines in LINES.items():
            for measure, kind, months, target in lines:
                if measure not in plans:
                    plans[measure] = Plan(jurisdiction=ZJJ, year=2026, measure=measure)
                    s.add(plans[measure])
                    await s.flush()
                s.add(
                    PlanLine(
                        plan_id=plans[measure].id,
                        unit_id=world.units[name],
                        kind=kind,
                        months=sum(1 << m for m in months),
                        month_text="",
                        target=target,
                    )
                )
        rg_plan = Plan(jurisdiction=RG, year=2026, measure="人")
        s.add(rg_plan)
        await s.flush()
        s.add(
            PlanLine(
                plan_id=rg_plan.id,
                unit_id=rg_unit.id,
                kind="scheduled",
                months=1 << 3,
                month_text="3",
                target=6,
            )
        )
        # progress by 15 March: 医院 20 people (ahead on all three lines), 财政局 5 in January
        # (annual 50: pace 50×74/365 ≈ 10.14 → behind), 审计局 nothing (not started → behind)
        n = 0
        for i in range(20):
            n += 1
            s.add(donation(n, world.units[HOSPITAL], date(2026, 3, 1 + i % 10), donor=None))
        for i in range(5):
            n += 1
            s.add(donation(n, world.units[FINANCE], date(2026, 1, 5 + i), donor=None))
        for openid, (unit, blood, history) in DONORS.items():
            donor = Donor(
                jurisdiction=ZJJ, id_hash=f"h-{openid}", blood_type=blood,
                unit_id=world.units[unit] if unit else None,
            )  # fmt: skip
            s.add(donor)
            await s.flush()
            world.donors[openid] = donor.id
            world.history[openid] = history
            for day, kind in history:
                n += 1
                s.add(donation(n, None, day, donor=donor.id, kind=kind))  # progress stays put
            s.add(Binding(jurisdiction=ZJJ, openid=openid, role="donor", donor_id=donor.id))
        for openid, unit in LIAISONS.items():
            s.add(
                Binding(jurisdiction=ZJJ, openid=openid, role="liaison", unit_id=world.units[unit])
            )
        s.add(Binding(jurisdiction=ZJJ, openid="o_office", role="office"))
        # 如皋: a liaison with a March line, office staff, a donor, an O consent — never ours
        rg_donor = Donor(jurisdiction=RG, id_hash="h-rg", blood_type="O", unit_id=rg_unit.id)
        s.add(rg_donor)
        await s.flush()
        s.add_all(
            [
                Binding(jurisdiction=RG, openid="r_liaison", role="liaison", unit_id=rg_unit.id),
                Binding(jurisdiction=RG, openid="r_office", role="office"),
                Binding(jurisdiction=RG, openid="r_donor", role="donor", donor_id=rg_donor.id),
                # the same openid bound in both jurisdictions: only its 张家界 binding counts
                Binding(jurisdiction=RG, openid="o_la1", role="liaison", unit_id=rg_unit.id),
            ]
        )
        await s.flush()
        for openid, blood in [
            ("d_at_interval", "O"),
            ("d_day_before", "O"),  # withdrawn below
            ("d_never", "O+"),  # Rh is ignored: an O
            ("d_pl_at", "A"),
            ("o_follower", "O"),  # consented without binding a donor record
        ]:
            await record_consent(s, ZJJ, openid, blood, NOW)
        await record_consent(s, RG, "r_donor", "O", NOW)
        await record_consent(s, RG, "r_follower", "O", NOW)
        await withdraw_consent(s, ZJJ, "d_day_before", NOW)
    return world


def donation(
    n: int, unit_id: int | None, day: date, *, donor: int | None, kind: str = "whole_blood"
) -> Donation:
    platelets = kind == "platelets"
    return Donation(
        jurisdiction=ZJJ, record_id=f"R{n}", donated_at=day, donor_id=donor, kind=kind,
        volume_ml=0 if platelets else 400, therapeutic_units=1.0 if platelets else 0.0,
        unit_id=unit_id,
    )  # fmt: skip


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    engine = create_engine(db_url)
    try:
        yield await build(session_factory(engine))
    finally:
        await engine.dispose()


async def audience(world: World, *args: Any, today: date = TODAY, **kw: Any) -> list[Recipient]:
    async with world.sessions() as s:
        return await recipients(s, AudienceSpec(*args, **kw), today=today)


def openids(rows: list[Recipient]) -> set[str]:
    return {r.openid for r in rows}


def by_openid(rows: list[Recipient]) -> dict[str, Recipient]:
    return {r.openid: r for r in rows}


# ---- liaisons and office ------------------------------------------------------------------


async def test_all_liaisons_of_the_jurisdiction_and_nobody_elses(world: World) -> None:
    rows = await audience(world, ZJJ, "liaisons")
    assert openids(rows) == set(LIAISONS)
    assert len(rows) == len(LIAISONS)  # o_la1 is bound in 如皋 too: one row, 张家界's unit
    for r in rows:
        assert (r.role, r.unit, r.unit_id) == ("liaison", LIAISONS[r.openid], world.units[r.unit])
        assert r.params == {"unit": LIAISONS[r.openid], "month": "3月"}
    rg = await audience(world, RG, "liaisons")
    assert [(r.openid, r.unit) for r in rg] == [("o_la1", "审计局"), ("r_liaison", "审计局")]


async def test_liaisons_with_a_line_in_a_month_including_spanning_lines(world: World) -> None:
    march = by_openid(await audience(world, ZJJ, "liaisons", month=3))
    # 医院 (3月 and 2~9月), 消防 (standby, listed in March), 审计局; never 财政局's annual line
    assert set(march) == {"o_la1", "o_la2", "o_ld", "o_le"}
    assert march["o_la1"].params == {
        "unit": HOSPITAL, "month": "3月", "period": "3月、2~9月", "target": "130人次、10人",
    }  # fmt: skip
    assert march["o_ld"].params["target"] == "应急献血"
    assert march["o_le"].params["target"] == "4人次"
    may = by_openid(await audience(world, ZJJ, "liaisons", month=5))
    assert set(may) == {"o_la1", "o_la2", "o_lb"}  # the 2~9月 line reaches May
    assert may["o_la1"].params == {
        "unit": HOSPITAL, "month": "5月", "period": "2~9月", "target": "100人次",
    }  # fmt: skip
    assert may["o_lb"].params["target"] == "20人次"
    assert await audience(world, ZJJ, "liaisons", month=1) == []  # only the annual line
    in_may = await audience(world, ZJJ, "liaisons", month=5, unit="慈利县")
    assert openids(in_may) == {"o_lb"}
    assert await audience(world, ZJJ, "liaisons", month=3, unit="慈利县") == []


async def test_liaisons_of_units_behind_their_pace(world: World) -> None:
    rows = by_openid(await audience(world, ZJJ, "liaisons", behind=True))
    # 财政局: 5 of 50 over the year by 15 March (74 of 365 days: pace 10.14); 审计局: 0 of 4.
    # 医院 has 20 by 10 March: ahead of 14.52 (30 in March) and of 17.77 (100 over 2~9月).
    assert set(rows) == {"o_lc", "o_le"}
    assert rows["o_lc"].params == {
        "unit": FINANCE, "month": "3月", "period": "全年", "target": "50人次", "done": "5人次",
        "remaining": "45人次", "percent": "10.0%", "expected": "10.14人次",
    }  # fmt: skip
    assert rows["o_le"].params == {
        "unit": AUDIT, "month": "3月", "period": "3月", "target": "4人次", "done": "0人次",
        "remaining": "4人次", "percent": "0.0%", "expected": "1.94人次",
    }  # fmt: skip
    both = await audience(world, ZJJ, "liaisons", behind=True, month=3)
    assert openids(both) == {"o_le"}  # behind, and on March's schedule (财政局's line is annual)
    one = await audience(world, ZJJ, "liaisons", behind=True, unit="财政局")  # an alias-free name
    assert openids(one) == {"o_lc"}


async def test_office_staff(world: World) -> None:
    rows = await audience(world, ZJJ, "office")
    assert [(r.openid, r.role, r.unit) for r in rows] == [("o_office", "office", None)]
    assert [r.openid for r in await audience(world, RG, "office")] == ["r_office"]


# ---- donors -------------------------------------------------------------------------------


async def test_all_donors_and_donors_of_a_unit(world: World) -> None:
    rows = by_openid(await audience(world, ZJJ, "donors"))
    assert set(rows) == set(DONORS)
    assert rows["d_pl_at"].params == {"unit": CILI, "month": "3月", "blood_type": "A"}
    assert rows["d_never"].unit is None and rows["d_never"].params["unit"] == ""
    assert openids(await audience(world, ZJJ, "donors", unit="人民医院")) == {
        "d_at_interval", "d_day_before",
    }  # fmt: skip
    assert openids(await audience(world, RG, "donors")) == {"r_donor"}


async def test_donors_by_blood_type_leave_out_withdrawn_consents(world: World) -> None:
    ordered = await audience(world, ZJJ, "donors", blood_type="O")
    # no unit first (the unbound follower merged in by openid), then by unit name
    assert [r.openid for r in ordered] == ["d_never", "o_follower", "d_at_interval"]
    rows = by_openid(ordered)
    # d_day_before withdrew; d_never said 「O+」; o_follower consented without a donor record;
    # d_month_end is O on record but never consented; 如皋's O consents are not ours
    assert set(rows) == {"d_at_interval", "d_never", "o_follower"}
    assert rows["o_follower"].unit is None and rows["o_follower"].params["blood_type"] == "O"
    assert openids(await audience(world, ZJJ, "donors", blood_type="o型")) == set(rows)
    assert openids(await audience(world, ZJJ, "donors", blood_type="A")) == {"d_pl_at"}
    assert await audience(world, ZJJ, "donors", blood_type="AB") == []
    of_hospital = await audience(world, ZJJ, "donors", blood_type="O", unit=HOSPITAL)
    assert openids(of_hospital) == {"d_at_interval"}


async def test_eligible_donors_at_the_interval_boundaries(world: World) -> None:
    rows = by_openid(await audience(world, ZJJ, "donors", eligible=True))
    # whole blood + 6 months: 2025-09-15 → 2026-03-15 (in), 09-16 → 03-16 (out); platelets +
    # 2 weeks: 03-01 in, 03-02 out; platelets only 3 months after whole blood (d_cross: out);
    # 24 platelet donations this year: out; a donation dated 1 April is not yet: ignored
    assert set(rows) == {
        "d_at_interval", "d_pl_at", "d_never", "d_future", "d_month_end", "d_aug_28", "d_sep_1",
    }  # fmt: skip
    assert rows["d_at_interval"].params["last_donation"] == "2025年9月15日"
    assert rows["d_at_interval"].params["donate_kind"] == "全血"
    assert rows["d_pl_at"].params["donate_kind"] == "单采血小板"
    assert rows["d_never"].params["last_donation"] == "无记录"
    assert rows["d_future"].params["last_donation"] == "2025年1月1日"
    feb = await audience(world, ZJJ, "donors", eligible=True, today=date(2026, 2, 28))
    # 2025-08-31 + 6 months is 28 February (February is shorter), and so is 08-28 + 6 months;
    # 09-01 → 1 March: out. The March platelets are not on record yet: nothing to wait for.
    assert openids(feb) == {
        "d_never", "d_future", "d_month_end", "d_aug_28", "d_pl_at", "d_pl_before",
    }  # fmt: skip
    both = await audience(world, ZJJ, "donors", eligible=True, blood_type="O")
    assert openids(both) == {"d_at_interval", "d_never", "o_follower"}


async def test_eligible_agrees_with_the_chats_next_donation_answer(world: World) -> None:
    """Random histories: the audience equals the donors whose last kind `next_eligible` (the
    function behind 「下次什么时候能献」) allows today, for days across a year."""
    rng = random.Random(5)
    async with world.sessions() as s, s.begin():
        n = 10_000
        for i in range(60):
            openid = f"r{i}"
            donor = Donor(jurisdiction=ZJJ, id_hash=f"h-r{i}")
            s.add(donor)
            await s.flush()
            history = []
            for _ in range(rng.randint(0, 4)):
                day = date(2025, 1, 1) + timedelta(days=rng.randrange(500))
                history.append((day, rng.choice(["whole_blood", "platelets"])))
            world.history[openid] = history
            for day, kind in history:
                n += 1
                s.add(donation(n, None, day, donor=donor.id, kind=kind))
            s.add(Binding(jurisdiction=ZJJ, openid=openid, role="donor", donor_id=donor.id))
    policy = shipped_policies()["hunan-2015"]
    for today in [
        date(2025, 6, 30),
        date(2025, 12, 31),
        TODAY,
        date(2026, 2, 28),
        date(2026, 5, 1),
    ]:
        expected = set()
        for openid, history in world.history.items():
            donations = [PolicyDonation(d, k, 400, 1.0) for d, k in history]  # type: ignore[arg-type]
            past = [d for d in donations if d.date <= today]
            if not past:
                expected.add(openid)
                continue
            last = max(past, key=lambda d: (d.date, d.kind == "whole_blood"))
            if next_eligible(policy, donations, today=today)[last.kind] == today:
                expected.add(openid)
        got = openids(await audience(world, ZJJ, "donors", eligible=True, today=today))
        assert got == expected, today


# ---- bad specs, preview, order, description -----------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"kind": "liaisons", "month": 13}, "没有 13 月"),
        ({"kind": "liaisons", "month": 0}, "没有 0 月"),
        ({"kind": "donors", "blood_type": "C"}, "可选 A、B、O、AB"),
        ({"kind": "donors", "month": 3}, "只能筛选联络员"),
        ({"kind": "donors", "behind": True}, "只能筛选联络员"),
        ({"kind": "liaisons", "eligible": True}, "只能筛选献血者"),
        ({"kind": "office", "blood_type": "O"}, "只能筛选献血者"),
        ({"kind": "office", "unit": HOSPITAL}, "不能按单位"),
        ({"kind": "everyone"}, "未知的受众"),
        ({"kind": "liaisons", "year": 2026}, "只和月份"),
        ({"kind": "liaisons", "unit": "  "}, "单位名称"),
    ],
)
def test_bad_specs_are_refused_when_built(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(AudienceError, match=message):
        AudienceSpec(ZJJ, **kw)


async def test_bad_specs_the_database_refuses(world: World) -> None:
    with pytest.raises(AudienceError, match="没有辖区「nowhere」；已有：rugao、zhangjiajie"):
        await audience(world, "nowhere", "liaisons")
    with pytest.raises(AudienceError, match="单位「市人民医」未找到；最接近：市人民医院"):
        await audience(world, ZJJ, "liaisons", unit="市人民医")
    with pytest.raises(AudienceError, match="2025年的献血计划还没有导入"):
        await audience(world, ZJJ, "liaisons", month=3, year=2025)
    with pytest.raises(AudienceError, match="今天（2026年03月15日）所在的月份"):
        await audience(world, ZJJ, "liaisons", behind=True, month=5)
    with pytest.raises(AudienceError, match="如皋市没有配置献血间隔规则"):
        await audience(world, RG, "donors", eligible=True)


async def test_preview_counts_and_shows_the_first_rows_in_order(world: World) -> None:
    spec = AudienceSpec(ZJJ, "donors")
    async with world.sessions() as s:
        everyone = await recipients(s, spec, today=TODAY)
        count, first = await preview(s, spec, today=TODAY, limit=3)
        none_count, none = await preview(s, spec, today=TODAY, limit=0)
    assert count == none_count == len(everyone) == len(DONORS)
    assert first == everyone[:3] and none == []
    # by unit name (code points; no unit first), then openid
    keys = [(r.unit or "", r.openid) for r in everyone]
    assert keys == sorted(keys)
    assert everyone[0].openid == "d_never"


def test_descriptions() -> None:
    assert (
        AudienceSpec(ZJJ, "liaisons", month=3).describe("张家界市")
        == "张家界市 · 3月有计划的单位联络员"
    )
    assert AudienceSpec(ZJJ, "liaisons").describe() == "zhangjiajie · 全部单位联络员"
    assert (
        AudienceSpec(ZJJ, "liaisons", month=3, behind=True).describe("张家界市")
        == "张家界市 · 3月有计划且本月落后于应有进度的单位联络员"
    )
    assert (
        AudienceSpec(ZJJ, "donors", blood_type="o").describe("张家界市")
        == "张家界市 · 愿意接收应急献血通知的O型献血者"
    )
    assert (
        AudienceSpec(ZJJ, "donors", eligible=True, blood_type="O", unit="慈利县").describe()
        == "zhangjiajie · 已过献血间隔、可再次献血且愿意接收应急献血通知的「慈利县」的O型献血者"
    )
    assert (
        AudienceSpec(ZJJ, "donors", unit="慈利县").describe("张家界市")
        == "张家界市 · 「慈利县」的献血者"
    )
    assert AudienceSpec(ZJJ, "office").describe("张家界市") == "张家界市 · 献血办工作人员"
