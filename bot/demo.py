"""`donorbot demo load`: seed plans, demo copies for this year, headcounts, synthetic history.

Idempotent: plans go through the importer (which re-imports without changes), headcounts
are set only when different, and the synthetic donations of the current year are diffed
against what is stored — the same day's second run inserts and deletes nothing.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import and_, delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, SystemClock, local_now
from bot.demo_bindings import DEMO_OFFICE, bind_demo_users
from bot.demo_history import DemoDonation, History, plan_history
from bot.imports import PlanImportReport, import_plan_file
from bot.settings import Settings
from bot.sites import load_sites
from models.donations import Donation, Donor
from models.plans import JurisdictionRow, Plan, Unit
from models.progress import jurisdiction_progress

DATA = Path(__file__).resolve().parent.parent / "data"
SEED_PLANS = DATA / "seed_plans"
HEADCOUNTS = DATA / "demo" / "headcounts.csv"
DEFAULT_TZ = "Asia/Shanghai"
_CHUNK = 500


@dataclass
class JurisdictionDemo:
    code: str
    today: date
    note: str = ""
    inserted: int = 0
    deleted: int = 0
    kept: int = 0
    states: Counter[str] = field(default_factory=Counter)  # this month's lines by status


@dataclass
class DemoReport:
    imports: list[str] = field(default_factory=list)
    headcounts: list[str] = field(default_factory=list)
    jurisdictions: list[JurisdictionDemo] = field(default_factory=list)
    bindings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [*self.imports, *self.headcounts]
        for j in self.jurisdictions:
            states = "，".join(f"{k} {v}" for k, v in sorted(j.states.items())) or "本月无计划行"
            out.append(
                f"{j.code} {j.today}: 演示献血记录 新增 {j.inserted}、删除 {j.deleted}、"
                f"保留 {j.kept}；{j.today.month}月：{states}{j.note}"
            )
        return [*out, *self.bindings]


async def load_demo(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sessions: async_sessionmaker[AsyncSession] | None = None,
) -> DemoReport:
    """Everything `make demo` needs in the database; see data/demo/README.md."""
    from models.db import create_engine, session_factory
    from models.migrate import require_current_schema

    engine = None
    if sessions is None:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
    try:
        if engine is not None:
            await require_current_schema(engine)
        return await _load(settings, clock or SystemClock(), sessions)
    finally:
        if engine is not None:
            await engine.dispose()


async def _load(
    settings: Settings, clock: Clock, sessions: async_sessionmaker[AsyncSession]
) -> DemoReport:
    report = DemoReport()
    todays: dict[str, date] = {}
    for path in sorted(SEED_PLANS.glob("*.csv")):
        code = path.stem.rsplit("-", 1)[0]
        seed = await import_plan_file(sessions, settings, path, actor="demo")
        report.imports.append(f"{path.name}: {_summary(seed)}")
        today = todays[code] = await _today(sessions, settings, clock, code)
        if await _has_real_plan(sessions, code, today.year):
            continue
        copy = await import_plan_file(
            sessions, settings, path, actor="demo", year_override=today.year, demo=True
        )
        report.imports.append(f"{path.name} → {today.year}（演示）: {_summary(copy)}")
    report.headcounts = await _apply_headcounts(sessions)
    async with sessions() as session:
        report.imports += (await load_sites(session, settings)).lines()
        await session.commit()
    for code, today in todays.items():
        report.jurisdictions.append(await _history(sessions, code, today))
        unit = await bind_demo_users(sessions, code, today)
        if unit:
            report.bindings.append(
                f"donorbot chat -j {code}：默认用户是「{unit}」的联络员；"
                f"--openid {DEMO_OFFICE} 是献血办工作人员"
            )
    return report


def _summary(report: PlanImportReport) -> str:
    plans = "；".join(
        f"{p.label} +{len(p.added)} −{len(p.removed)} ~{len(p.changed)} ={p.unchanged}"
        for p in report.plans
    )
    checks = "、".join(f"{k} {v}" for k, v in sorted(report.check_counts().items()))
    return f"{report.rows} 行；{plans or '无计划行'}；核对 {checks or '无'}"


async def _today(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, clock: Clock, code: str
) -> date:
    """Today in the jurisdiction's timezone (account file first, then the database)."""
    configured = settings.jurisdictions.get(code)
    tz = configured.timezone if configured else None
    if tz is None:
        async with sessions() as s:
            tz = await s.scalar(
                select(JurisdictionRow.timezone).where(JurisdictionRow.code == code)
            )
    return local_now(clock, tz or DEFAULT_TZ).date()


async def _has_real_plan(sessions: async_sessionmaker[AsyncSession], code: str, year: int) -> bool:
    async with sessions() as s:
        found = await s.scalar(
            select(Plan.id).where(Plan.jurisdiction == code, Plan.year == year, ~Plan.is_demo)
        )
    return found is not None


async def _apply_headcounts(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    notes = []
    with HEADCOUNTS.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    async with sessions() as s, s.begin():
        for row in rows:
            where = and_(Unit.jurisdiction == row["jurisdiction"], Unit.name == row["unit"])
            unit = (await s.execute(select(Unit.id, Unit.headcount).where(where))).first()
            if unit is None:
                notes.append(f"演示人数：{row['jurisdiction']} 没有单位 {row['unit']}，跳过")
            elif unit.headcount != int(row["headcount"]):
                await s.execute(
                    update(Unit).where(Unit.id == unit.id).values(headcount=int(row["headcount"]))
                )
                notes.append(f"演示人数：{row['jurisdiction']} {row['unit']} = {row['headcount']}")
    return notes


async def _history(
    sessions: async_sessionmaker[AsyncSession], code: str, today: date
) -> JurisdictionDemo:
    result = JurisdictionDemo(code, today)
    async with sessions() as s, s.begin():
        progress = await jurisdiction_progress(s, code, today.year, today=today)
        if not progress.plan_found or not progress.lines:
            result.note = "（没有计划行，不生成献血记录）"
            return result
        if not progress.is_demo:
            result.note = "（今年有正式计划：不生成演示记录）"
            return result
        history = plan_history(progress, today)
        await _sync(s, code, today.year, history, result)
    async with sessions() as s:
        after = await jurisdiction_progress(s, code, today.year, today=today)
    result.states = Counter(
        line.status for line in after.lines if line.period.contains(today.month)
    )
    return result


def _donor_hash(code: str, key: str) -> str:
    return f"DEMO-{code}-{key}"[:64]


async def _sync(
    s: AsyncSession, code: str, year: int, history: History, result: JurisdictionDemo
) -> None:
    """Make the year's DEMO- donations equal to `history`, touching only what differs."""
    donors = await _sync_donors(s, code, history.donations)
    wanted = {
        r.record_id: (
            r.day,
            r.unit_id,
            donors.get(r.donor or ""),
            r.kind,
            r.volume_ml,
            r.therapeutic_units,
            r.blood_type,
        )
        for r in history.donations
    }
    stored = await s.execute(
        select(
            Donation.record_id,
            Donation.donated_at,
            Donation.unit_id,
            Donation.donor_id,
            Donation.kind,
            Donation.volume_ml,
            Donation.therapeutic_units,
            Donation.blood_type,
        ).where(
            Donation.jurisdiction == code,
            Donation.synthetic,
            Donation.record_id.like("DEMO-%"),
            Donation.donated_at >= date(year, 1, 1),
            Donation.donated_at < date(year + 1, 1, 1),
        )
    )
    have = {row[0]: tuple(row[1:]) for row in stored}
    stale = [rid for rid, values in have.items() if wanted.get(rid) != values]
    fresh = [rid for rid, values in wanted.items() if have.get(rid) != values]
    for i in range(0, len(stale), _CHUNK):
        await s.execute(
            delete(Donation).where(
                Donation.jurisdiction == code, Donation.record_id.in_(stale[i : i + _CHUNK])
            )
        )
    if fresh:
        await s.execute(insert(Donation), [_donation_row(code, rid, wanted[rid]) for rid in fresh])
    if stale:
        await s.execute(
            delete(Donor).where(
                Donor.jurisdiction == code,
                Donor.id_hash.like("DEMO-%"),
                ~exists().where(Donation.donor_id == Donor.id),
            )
        )
    result.inserted, result.deleted, result.kept = len(fresh), len(stale), len(wanted) - len(fresh)


def _donation_row(code: str, record_id: str, values: tuple[object, ...]) -> dict[str, object]:
    day, unit_id, donor_id, kind, volume_ml, units, blood = values
    return {
        "jurisdiction": code,
        "record_id": record_id,
        "donated_at": day,
        "unit_id": unit_id,
        "donor_id": donor_id,
        "kind": kind,
        "volume_ml": volume_ml,
        "therapeutic_units": units,
        "blood_type": blood,
        "synthetic": True,
        "site": "演示献血屋",
    }


async def _sync_donors(s: AsyncSession, code: str, donations: list[DemoDonation]) -> dict[str, int]:
    """Synthetic donors (no ID number exists for them): key → donors.id, inserting the new."""
    first: dict[str, DemoDonation] = {}
    for r in donations:
        if r.donor is not None:
            first.setdefault(r.donor, r)
    query = select(Donor.id_hash, Donor.id).where(
        Donor.jurisdiction == code, Donor.id_hash.like("DEMO-%")
    )
    known = {h: i for h, i in await s.execute(query)}
    new = [
        {
            "jurisdiction": code,
            "id_hash": _donor_hash(code, key),
            "name_masked": f"演示献血者{n}",
            "blood_type": r.blood_type,
            "unit_id": r.unit_id,
        }
        for n, (key, r) in enumerate(first.items(), start=1)
        if _donor_hash(code, key) not in known
    ]
    if new:
        await s.execute(insert(Donor), new)
        known = {h: i for h, i in await s.execute(query)}
    return {key: known[_donor_hash(code, key)] for key in first}
