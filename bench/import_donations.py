"""Donation import benchmark (issue 3): a 1,000,000-row synthetic export on PostgreSQL and SQLite.

    .venv/bin/python bench/import_donations.py              # 1,000,000 rows, both backends
    .venv/bin/python bench/import_donations.py --rows 100000 --backend sqlite --no-write

The file is generated with a fixed seed for the units of the five seed plans (synthetic donor
codes and names, 2% of rows with a unit name the resolver leaves for review, 1% with none).
For each backend: a fresh database (a throwaway PostgreSQL database, dropped afterwards; a new
SQLite file), `db upgrade`, the five seed plans imported, then, measured, `donorbot donations
import FILE` as a child process: wall time → rows/s, and the child's own peak RSS (os.wait4).
A second import of the same file (every record already there) is measured too.
Targets: ≥ 20,000 rows/s on PostgreSQL, peak RSS ≤ 300 MB. Results: bench/sections/imports.md.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from bot.imports.columns import DONATIONS

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "data" / "seed_plans"
DONORBOT = [sys.executable, "-m", "bot"]
PG_ADMIN = os.environ.get(
    "DONORBOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁" + "谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
)
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国志红玉萍文辉鹏飞海燕春梅"


@dataclass
class Run:
    backend: str
    label: str
    rows: int
    seconds: float
    peak_rss_mb: float
    load: float  # 1-minute load average when the run ended (2 cores: other work competes)
    import_cpu: float  # CPU seconds of the import process
    postgres_cpu: float  # CPU seconds of PostgreSQL's processes meanwhile (0 for SQLite)

    @property
    def cpu_bound_rate(self) -> float:
        """The rate the two CPU consumers allow when each has a core to itself."""
        return self.rows / max(self.import_cpu, self.postgres_cpu)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def seed_units() -> list[tuple[str, str]]:
    """(jurisdiction, unit) for every unit of the seed plans that is not a group heading."""
    units: dict[tuple[str, str], None] = {}
    for path in sorted(SEEDS.glob("*.csv")):
        with path.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row["kind"] != "group":
                    units[(row["jurisdiction"], row["unit"])] = None
    return list(units)


def generate(path: Path, rows: int, seed: int = 20260315) -> None:
    """A station export: synthetic donors (codes, not ID numbers), dates in 2024–2025."""
    rng = random.Random(seed)
    units = seed_units()
    start = date(2024, 1, 1)
    donors = max(rows // 3, 1)
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(DONATIONS.columns)  # the canonical header, from the importer itself
        for n in range(rows):
            jurisdiction, unit = rng.choice(units)
            donor = rng.randrange(donors)
            name = SURNAMES[donor % len(SURNAMES)] + GIVEN[(donor // 7) % len(GIVEN)]
            roll = rng.random()
            if roll < 0.01:
                unit = ""
            elif roll < 0.03:
                unit = f"{unit}（驻外办）"  # unknown to the plans: goes to the review queue
            platelets = rng.random() < 0.1
            out.writerow(
                [
                    f"BENCH-{n:08d}",
                    (start + timedelta(days=rng.randrange(730))).isoformat(),
                    f"SYN-{jurisdiction[:3].upper()}-{donor:07d}",
                    name,
                    rng.choice("AABBOOOAB") if not platelets else "O",
                    "机采血小板" if platelets else "全血",
                    250 if platelets else rng.choice((200, 300, 400, 400)),
                    rng.choice((1, 1, 2, 1.5)) if platelets else "",
                    unit,
                    jurisdiction,
                ]
            )


def postgres_cpu_seconds() -> float:
    """CPU used so far by PostgreSQL: its live processes plus the backends that have exited
    (accumulated in the postmaster's cutime/cstime). Other clients' work counts too."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].split(")", 1)[0]
        except (OSError, IndexError):
            continue
        if comm == "postgres":  # fields[11:15] = utime stime cutime cstime
            total += sum(int(f) for f in fields[11:15]) / tick
    return total


def measure(args: list[str], env: dict[str, str]) -> tuple[float, float, float, float, str]:
    """(seconds, the child's peak RSS in MB, its CPU seconds, PostgreSQL's CPU s, its output)."""
    pg_before = postgres_cpu_seconds()
    started = time.perf_counter()
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert child.stdout is not None
    output = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({child.returncode}):\n{output}")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / 1024, cpu, postgres_cpu_seconds() - pg_before, output


def prepare(env: dict[str, str], workdir: Path) -> None:
    account = workdir / "donorbot.toml"
    subprocess.run(
        [*DONORBOT, "demo", "config", "--path", str(account)],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run([*DONORBOT, "db", "upgrade"], env=env, check=True, capture_output=True)
    for plan in sorted(SEEDS.glob("*.csv")):
        subprocess.run(
            [*DONORBOT, "plan", "import", str(plan)], env=env, check=True, capture_output=True
        )


def bench_backend(backend: str, url: str, data: Path, rows: int, workdir: Path) -> list[Run]:
    env = {
        **os.environ,
        "DONORBOT_CONFIG": str(workdir / "donorbot.toml"),
        "DONORBOT_DATABASE_URL": url,
    }
    prepare(env, workdir)
    runs = []
    for label in ("first import", "re-import (all present)"):
        args = [*DONORBOT, "donations", "import", str(data)]
        seconds, rss, cpu, pg_cpu, output = measure(args, env)
        pg_cpu = pg_cpu if backend == "PostgreSQL" else 0.0
        run = Run(backend, label, rows, seconds, rss, os.getloadavg()[0], cpu, pg_cpu)
        print(
            f"[{backend}] {label}: {run.rate:,.0f} rows/s, peak RSS {rss:.0f} MB, "
            f"CPU import {cpu:.0f} s + PostgreSQL {pg_cpu:.0f} s, load {run.load:.1f}"
        )
        print("    " + "\n    ".join(output.strip().splitlines()[:4]))
        runs.append(run)
    return runs


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_version() -> str:
    async def go() -> str:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    return asyncio.run(go())


NOTES = """
`rows/s` is wall time on this shared 2-core machine; `load` is the 1-minute load average when
the run ended (other sessions' tests and benchmarks compete for the same two cores). `CPU` is
the import process's own CPU time and PostgreSQL's (all its processes) during the run;
`CPU-bound rows/s` = rows ÷ the larger of the two: the rate when each has a core to itself.

Where PostgreSQL's time goes (EXPLAIN ANALYZE of one 20,000-row batch into a 1M-row table):
the `INSERT … SELECT … ON CONFLICT DO NOTHING` cost 45–55 µs a row (under load), of which the three
foreign-key triggers of `donations` (donor_id, jurisdiction, unit_id: each a `FOR KEY SHARE`
lookup) take 40–45% and the five indexes most of the rest. Creating a donor and learning its id
costs about 25 µs once per donor (the import remembers donor ids, so a repeat donor costs
nothing). Parsing, validating, hashing and masking in Python cost about 25 µs a row and overlap
with the database's work (the reader parses the next batch while the previous one is written).
Schema changes that would cut the database's share, for the lead to weigh: drop the redundant
`donations.jurisdiction` foreign key (the donor already carries the jurisdiction), and make
`ix_donations_unmatched` a partial index `WHERE unit_id IS NULL` (only the review queue uses it);
together about 5% in one trial here. A larger `shared_buffers` (2 GB instead of 128 MB) gave
about 10% in one trial on a private server. (Single trials on a loaded machine: indicative only.)
"""


def _verdict(r: Run) -> str:
    rss = "RSS met" if r.peak_rss_mb <= 300 else "**RSS missed**"
    if r.backend != "PostgreSQL":
        return rss
    rate = "rows/s met" if r.rate >= 20_000 else "**rows/s missed**"
    return f"{rate}, {rss}"


def write_section(runs: list[Run], rows: int, path: Path) -> None:
    lines = [
        "## Donation import (issue 3)",
        "",
        "```sh",
        ".venv/bin/python bench/import_donations.py   # 1,000,000 rows, PostgreSQL and SQLite",
        "```",
        "",
        f"A synthetic station export of {rows:,} rows (fixed seed; units of the five seed plans, "
        "2% unit names left for review, 1% blank), imported by `donorbot donations import` as a "
        "child process into a database holding the seed plans. Peak RSS is the child's own "
        "(`os.wait4`). Targets: ≥ 20,000 rows/s on PostgreSQL, peak RSS ≤ 300 MB.",
        "",
        "| backend | run | rows/s | seconds | CPU import / PostgreSQL (s) | CPU-bound rows/s "
        "| peak RSS (MB) | load | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        target = _verdict(r) if r.label == "first import" else ""
        lines.append(
            f"| {r.backend} | {r.label} | {r.rate:,.0f} | {r.seconds:.1f} | "
            f"{r.import_cpu:.0f} / {r.postgres_cpu:.0f} | {r.cpu_bound_rate:,.0f} | "
            f"{r.peak_rss_mb:.0f} | {r.load:.1f} | {target} |"
        )
    lines += [
        NOTES,
        f"Machine: {os.cpu_count()} cores ({platform.machine()}), Python "
        f"{platform.python_version()}, PostgreSQL {pg_version()}, SQLite {sqlite3.sqlite_version};"
        f" run {date.today()}.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("both", "postgresql", "sqlite"), default="both")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite the section")
    args = parser.parse_args()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="donorbot-bench-") as tmp:
        workdir = Path(tmp)
        data = workdir / "donations.csv"
        started = time.perf_counter()
        generate(data, args.rows)
        size = data.stat().st_size / 2**20
        print(
            f"generated {args.rows:,} rows ({size:.0f} MB) in {time.perf_counter() - started:.0f} s"
        )
        if args.backend in ("both", "postgresql"):
            name = f"donorbot_bench_{uuid.uuid4().hex[:8]}"
            asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
            try:
                url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
                runs += bench_backend("PostgreSQL", url, data, args.rows, workdir)
            finally:
                asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if args.backend in ("both", "sqlite"):
            url = f"sqlite+aiosqlite:///{workdir}/bench.db"
            runs += bench_backend("SQLite", url, data, args.rows, workdir)
    if not args.no_write:
        write_section(runs, args.rows, ROOT / "bench" / "sections" / "imports.md")


if __name__ == "__main__":
    main()
