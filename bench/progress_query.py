"""Latency of a liaison's 「这个月还差多少」 (`models.progress.this_month`) at 10k vs 1M donations.

    .venv/bin/python bench/progress_query.py [--calls 500] [--sizes 10000,1000000] [--no-write]

For each backend — PostgreSQL (throwaway databases on DONORBOT_TEST_PG_URL's server) and
SQLite (temporary files) — one database per size: the five seed plans plus demo copies for
this year (through the importer), then synthetic donations spread over every seed unit and
2019-01-01..today, bulk-loaded (COPY on PostgreSQL, executemany on SQLite). Calls alternate
between the databases (same unit, same day), so machine noise hits every size alike; one
session per call, as a chat handler has. Targets: the 1M median ≤ 1.5 × the 10k median, and
under 5 ms on PostgreSQL. Writes bench/sections/progress.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.imports import import_plan_file
from bot.settings import Jurisdiction, Settings
from models.db import create_engine, session_factory
from models.migrate import upgrade
from models.plans import Plan, PlanLine, Unit
from models.progress import this_month
from models.progress_tally import tally_statement

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get(
    "DONORBOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SEEDS = sorted((ROOT / "data" / "seed_plans").glob("*.csv"))
OUT = ROOT / "bench" / "sections" / "progress.md"
DONORS = 200_000
COVERING = (
    "CREATE INDEX ix_bench_covering ON donations "
    "(unit_id, donated_at, kind, volume_ml, therapeutic_units, donor_id)"
)
# fmt: off
COLUMNS = ("jurisdiction", "record_id", "donated_at", "donor_id", "kind", "volume_ml",
           "therapeutic_units", "unit_id", "synthetic")
# fmt: on


@dataclass
class Result:
    label: str
    size: int
    load_seconds: float
    times: list[float]


@dataclass
class Database:
    backend: str
    size: int
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    load_seconds: float = 0.0
    times: list[float] = field(default_factory=list)

    @property
    def pg(self) -> bool:
        return self.backend == "PostgreSQL"


async def raw_connection(s: AsyncSession) -> Any:
    return (await (await s.connection()).get_raw_connection()).driver_connection


async def prepare(db: Database, today: date) -> list[tuple[str, int]]:
    """Seed plans + this year's demo copies; returns (jurisdiction, unit) with a line now."""
    codes = {p.stem.rsplit("-", 1)[0] for p in SEEDS}
    settings = Settings(jurisdictions={c: Jurisdiction(name=c) for c in codes})
    for path in SEEDS:
        await import_plan_file(db.sessions, settings, path, actor="bench")
        await import_plan_file(
            db.sessions, settings, path, actor="bench", year_override=today.year, demo=True
        )
    async with db.sessions() as s:
        lines = await s.execute(
            select(Plan.jurisdiction, PlanLine.unit_id, PlanLine.months)
            .join(Plan, Plan.id == PlanLine.plan_id)
            .where(Plan.year == today.year)
        )
        return sorted({(j, u) for j, u, months in lines if months & (1 << today.month)})


def synthetic(units: list[tuple[str, int]], n: int, today: date) -> list[tuple[Any, ...]]:
    rng = random.Random(n)
    first = date(2019, 1, 1)
    span = (today - first).days + 1
    rows: list[tuple[Any, ...]] = []
    for i in range(n):
        jur, unit = units[rng.randrange(len(units))]
        day = first + timedelta(days=rng.randrange(span))
        donor = rng.randrange(1, DONORS + 1) if rng.random() < 0.9 else None
        if rng.random() < 0.2:
            kind, ml, tu = "platelets", 0, rng.choice([1.0, 2.0])
        else:
            kind, ml, tu = "whole_blood", rng.choice([200, 300, 400]), 0.0
        rows.append((jur, f"B{i}", day, donor, kind, ml, tu, unit, True))
    return rows


async def bulk(db: Database, table: str, columns: tuple[str, ...], rows: list[Any]) -> None:
    async with db.sessions() as s, s.begin():
        raw = await raw_connection(s)
        if db.pg:
            await raw.copy_records_to_table(table, records=rows, columns=list(columns))
        else:
            marks = ", ".join("?" for _ in columns)
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            await raw.executemany(
                sql, [tuple(str(v) if isinstance(v, date) else v for v in r) for r in rows]
            )


async def build(backend: str, url: str, size: int, today: date) -> tuple[Database, list[Any]]:
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    db = Database(backend, size, url, engine, session_factory(engine))
    targets = await prepare(db, today)
    async with db.sessions() as s:
        units = [(j, u) for u, j in await s.execute(select(Unit.id, Unit.jurisdiction))]
    donors = [(i, "zhangjiajie", f"bench{i}", "") for i in range(1, DONORS + 1)]
    await bulk(db, "donors", ("id", "jurisdiction", "id_hash", "name_masked"), donors)
    started = time.perf_counter()
    await bulk(db, "donations", COLUMNS, synthetic(units, size, today))
    async with db.sessions() as s, s.begin():
        await s.execute(text("ANALYZE donations" if db.pg else "ANALYZE"))
    db.load_seconds = time.perf_counter() - started
    print(f"{backend:10} {size:>9,} donations loaded in {db.load_seconds:.1f} s", flush=True)
    return db, targets


async def one_call(db: Database, jurisdiction: str, unit: int, today: date) -> float:
    started = time.perf_counter()
    async with db.sessions() as s:
        await this_month(s, jurisdiction, unit, today=today)
    return (time.perf_counter() - started) * 1000


async def measure(dbs: list[Database], targets: list[Any], today: date, calls: int) -> None:
    rng = random.Random(11)
    for jur, unit in targets[:20]:  # warm the pools, caches and prepared statements
        for db in dbs:
            await one_call(db, jur, unit, today)
    for _ in range(calls):
        jur, unit = targets[rng.randrange(len(targets))]
        for db in dbs:
            db.times.append(await one_call(db, jur, unit, today))


async def explain(db: Database, unit: int, today: date) -> str:
    start = date(today.year, today.month, 1)
    stmt = tally_statement([unit], start, today + timedelta(days=1), by_donor=True)
    async with db.sessions() as s:
        sql = str(stmt.compile(s.bind, compile_kwargs={"literal_binds": True}))
        return "\n".join(r[0] for r in await s.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql)))


async def pg_admin(sql: str) -> Any:
    conn = await asyncpg.connect(PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def _big_cache(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA cache_size=-65536")  # 64 MB instead of the default 2 MB
    cur.execute("PRAGMA mmap_size=268435456")
    cur.close()


async def _with_big_cache(db: Database) -> None:
    event.listen(db.engine.sync_engine, "connect", _big_cache)


async def _with_covering_index(db: Database) -> None:
    event.remove(db.engine.sync_engine, "connect", _big_cache)
    async with db.sessions() as s, s.begin():
        await s.execute(text(COVERING))
        await s.execute(text("ANALYZE"))


VARIANTS = (
    ("SQLite, cache_size 64 MB + mmap", _with_big_cache),
    ("SQLite, covering index", _with_covering_index),
)


async def sqlite_variants(
    dbs: list[Database], targets: list[Any], today: date, calls: int
) -> list[Result]:
    """What the SQLite figures would be with a larger page cache, or with a covering index."""
    results = []
    for label, apply in VARIANTS:
        for db in dbs:
            await apply(db)
            await db.engine.dispose()
            db.times = []
        await measure(dbs, targets, today, calls)
        results += [Result(label, d.size, d.load_seconds, d.times) for d in dbs]
    return results


async def run(
    backend: str, sizes: list[int], args: argparse.Namespace, today: date, tmp: str
) -> tuple[list[Result], str]:
    dbs, names, plan = [], [], ""
    try:
        for size in sizes:
            if backend == "PostgreSQL":
                name = f"donorbot_bench_{uuid.uuid4().hex[:8]}"
                await pg_admin(f'CREATE DATABASE "{name}"')
                names.append(name)
                url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
            else:
                url = f"sqlite+aiosqlite:///{tmp}/bench-{size}.db"
            db, targets = await build(backend, url, size, today)
            dbs.append(db)
        await measure(dbs, targets, today, args.calls)
        results = [Result(d.backend, d.size, d.load_seconds, d.times) for d in dbs]
        if backend == "PostgreSQL":
            plan = await explain(dbs[-1], targets[0][1], today)
        elif args.sqlite_variants:
            results += await sqlite_variants(dbs, targets, today, args.calls)
    finally:
        for db in dbs:
            await db.engine.dispose()
        for name in names:
            await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results, plan


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100)[98]


def verdicts(results: list[Result]) -> list[str]:
    out = []
    for label in ("PostgreSQL", "SQLite"):
        rows = sorted((r for r in results if r.label == label), key=lambda r: r.size)
        if len(rows) < 2:
            continue
        small, large = statistics.median(rows[0].times), statistics.median(rows[-1].times)
        ratio = large / small
        line = (
            f"- {label}: the {rows[-1].size:,} median is {ratio:.2f}× the {rows[0].size:,} median "
            f"(target ≤ 1.5×: {'met' if ratio <= 1.5 else 'NOT met'})"
        )
        if label == "PostgreSQL":
            line += f"; {large:.2f} ms (target < 5 ms: {'met' if large < 5 else 'NOT met'})"
        out.append(line + ".")
    return out


def render(
    results: list[Result], plan: str, version: str, args: argparse.Namespace, today: date
) -> str:
    lines = [
        "## Progress query latency (`models.progress.this_month`)",
        "",
        f"Command: `.venv/bin/python bench/progress_query.py --calls {args.calls} "
        f"--sizes {args.sizes}{' --sqlite-variants' if args.sqlite_variants else ''}` "
        f"(run {date.today()}).",
        "",
        f"A liaison's 「这个月还差多少」 for a random unit with a line in {today:%Y-%m}, one",
        f"session per call, {args.calls} calls per size after 20 warm-up calls, alternating",
        "between one database per size. Donations spread evenly over every seed unit and",
        f"2019-01-01..today. {platform.machine()}, {os.cpu_count()} CPUs (shared with other work),",
        f"Python {platform.python_version()}, PostgreSQL {version}, "
        f"SQLite {sqlite3.sqlite_version}.",
        "",
        "| backend | donations | bulk load | median | p99 | median vs smallest |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        base = statistics.median(next(x for x in results if x.label == r.label).times)
        median = statistics.median(r.times)
        lines.append(
            f"| {r.label} | {r.size:,} | {r.load_seconds:.1f} s | {median:.2f} ms "
            f"| {p99(r.times):.2f} ms | {median / base:.2f}× |"
        )
    lines += ["", *verdicts(results)]
    if args.sqlite_variants:
        lines += [
            "",
            "The last SQLite rows are not the shipped configuration (`models/db.py` sets WAL,",
            "foreign keys and synchronous=NORMAL only). They show where SQLite's growth comes",
            "from: the rows of a unit's period are table lookups scattered over a 1M-row file,",
            "read through SQLite's default 2 MB page cache; a larger cache, or an index that",
            "covers the tally's columns, removes most of it.",
        ]
    if plan:
        title = "The tally statement for one unit this month, largest size, PostgreSQL:"
        lines += ["", title, "", "```", plan, "```"]
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--no-write", action="store_true", help="leave the section file alone")
    parser.add_argument(
        "--sqlite-variants",
        action="store_true",
        help="also time SQLite with a 64 MB page cache, and with a covering index",
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    today = date.today()
    version = str(await pg_admin("SHOW server_version")).split()[0]
    results: list[Result] = []
    plan = ""
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("PostgreSQL", "SQLite"):
            done, explained = await run(backend, sizes, args, today, tmp)
            results += done
            plan = plan or explained
    report = render(results, plan, version, args, today)
    print(report)
    if not args.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    asyncio.run(main())
