"""Time of `models.audiences.recipients` for each audience kind on PostgreSQL.

    .venv/bin/python bench/audience_query.py [--donors 100000] [--liaisons 10000] [--runs 5]

A throwaway database on DONORBOT_TEST_PG_URL's server (dropped afterwards): one jurisdiction
(policy hunan-2015, so GB 18467-2011's intervals) with 2,000 units, each with a scheduled
line (a month or a 2–4 month range) in this year's 人次 plan; `--liaisons` liaison bindings
spread over the units; `--donors` donors, each with a donor binding and 0–5 donations over
the last three years (a fifth of them platelets, credited to the donor's unit); emergency
consents for a third of them; ten office bindings. Bulk-loaded with COPY, then ANALYZE.

Each audience is asked `--runs` times (one session per call, as the broadcast command has)
after one warm-up call; the median and the slowest are printed with the audience's size.
Target (issue 6): well under 2 s for 100k recipients, so that creating a 100,000-recipient
broadcast fits in 5 s in all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.audiences import AudienceSpec, recipients
from models.db import create_engine, session_factory
from models.migrate import upgrade
from models.plans import JurisdictionRow, Plan

PG_ADMIN = os.environ.get(
    "DONORBOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
J = "bench"
UNITS = 2_000
BLOOD = ("A", "B", "O", "AB")


async def pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def copy(sessions: async_sessionmaker[AsyncSession], table: str, rows: list[Any]) -> None:
    columns, *records = rows
    async with sessions() as s, s.begin():
        raw = (await (await s.connection()).get_raw_connection()).driver_connection
        await raw.copy_records_to_table(table, records=records, columns=list(columns))


async def load(
    sessions: async_sessionmaker[AsyncSession], donors: int, liaisons: int, today: date
) -> None:
    rng = random.Random(6)
    now = datetime(today.year, today.month, today.day, tzinfo=UTC)
    async with sessions() as s, s.begin():
        s.add(JurisdictionRow(code=J, name="基准市", policy="hunan-2015"))
        await s.flush()
        s.add(Plan(id=1, jurisdiction=J, year=today.year, measure="人次", source="bench"))
    units: list[Any] = [("id", "jurisdiction", "name", "normalized", "is_group")]
    lines: list[Any] = [
        ("plan_id", "unit_id", "kind", "months", "month_text", "target", "note", "line_no")
    ]
    for u in range(1, UNITS + 1):
        units.append((u, J, f"单位{u:04d}", f"单位{u:04d}", False))
        first = rng.randint(1, 12)
        last = min(12, first + rng.choice([0, 0, 0, 1, 3]))
        bits = sum(1 << m for m in range(first, last + 1))
        lines.append((1, u, "scheduled", bits, f"{first}-{last}", rng.randint(5, 60), "", u))
    await copy(sessions, "units", units)
    await copy(sessions, "plan_lines", lines)
    bindings: list[Any] = [("jurisdiction", "openid", "role", "unit_id", "donor_id")]
    bindings += [(J, f"oL{i:06d}", "liaison", rng.randint(1, UNITS), None) for i in range(liaisons)]
    bindings += [(J, f"oF{i:02d}", "office", None, None) for i in range(10)]
    people: list[Any] = [("id", "jurisdiction", "id_hash", "name_masked", "blood_type", "unit_id")]
    gifts: list[Any] = [
        ("jurisdiction", "record_id", "donated_at", "donor_id", "kind", "volume_ml",
         "therapeutic_units", "unit_id", "synthetic"),
    ]  # fmt: skip
    consents: list[Any] = [("jurisdiction", "openid", "blood_type", "consented_at")]
    start = today - timedelta(days=3 * 365)
    for d in range(1, donors + 1):
        unit = rng.randint(1, UNITS)
        blood = rng.choice(BLOOD)
        people.append((d, J, f"h{d}", "", blood, unit))
        bindings.append((J, f"oD{d:07d}", "donor", None, d))
        for _ in range(rng.choice([0, 1, 1, 2, 3, 5])):
            day = start + timedelta(days=rng.randrange(3 * 365 + 1))
            if rng.random() < 0.2:
                row = (J, f"R{len(gifts)}", day, d, "platelets", 0, 1.0, unit, True)
            else:
                row = (J, f"R{len(gifts)}", day, d, "whole_blood", 400, 0.0, unit, True)
            gifts.append(row)
        if rng.random() < 0.33:
            consents.append((J, f"oD{d:07d}", blood, now))
    await copy(sessions, "donors", people)
    await copy(sessions, "bindings", bindings)
    await copy(sessions, "donations", gifts)
    await copy(sessions, "emergency_consents", consents)
    async with sessions() as s, s.begin():
        await s.execute(text("ANALYZE"))
    print(
        f"loaded: {UNITS:,} units, {liaisons:,} liaisons, {donors:,} donors, "
        f"{len(gifts) - 1:,} donations, {len(consents) - 1:,} consents",
        flush=True,
    )


def audiences(today: date) -> list[tuple[str, AudienceSpec]]:
    return [
        ("liaisons (all)", AudienceSpec(J, "liaisons")),
        (f"liaisons, month {today.month}", AudienceSpec(J, "liaisons", month=today.month)),
        ("liaisons, behind", AudienceSpec(J, "liaisons", behind=True)),
        ("office", AudienceSpec(J, "office")),
        ("donors (all)", AudienceSpec(J, "donors")),
        ("donors, blood type O", AudienceSpec(J, "donors", blood_type="O")),
        ("donors, eligible", AudienceSpec(J, "donors", eligible=True)),
        ("donors, eligible + O", AudienceSpec(J, "donors", eligible=True, blood_type="O")),
        ("donors of one unit", AudienceSpec(J, "donors", unit="单位0007")),
    ]


async def measure(
    sessions: async_sessionmaker[AsyncSession], spec: AudienceSpec, today: date, runs: int
) -> tuple[int, list[float]]:
    times, size = [], 0
    for n in range(runs + 1):
        started = time.perf_counter()
        async with sessions() as s:
            size = len(await recipients(s, spec, today=today))
        if n:  # the first call warms the pool and the policy cache
            times.append(time.perf_counter() - started)
    return size, times


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--donors", type=int, default=100_000)
    parser.add_argument("--liaisons", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    today = date.today()
    name = f"donorbot_bench_{uuid.uuid4().hex[:8]}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    engine = create_engine(url)
    try:
        await asyncio.to_thread(upgrade, url)
        sessions = session_factory(engine)
        await load(sessions, args.donors, args.liaisons, today)
        print(f"\n{'audience':26} {'recipients':>10} {'median':>9} {'slowest':>9}")
        for label, spec in audiences(today):
            size, times = await measure(sessions, spec, today, args.runs)
            print(
                f"{label:26} {size:>10,} {statistics.median(times) * 1000:>7.0f} ms "
                f"{max(times) * 1000:>6.0f} ms",
                flush=True,
            )
    finally:
        await engine.dispose()
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
