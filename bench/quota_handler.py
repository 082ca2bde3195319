"""Handler time of a liaison's 「这个月还差多少」 with 1,000,000 donations on PostgreSQL.

    .venv/bin/python bench/quota_handler.py [--calls 1000] [--size 1000000] [--no-write]

Builds a throwaway PostgreSQL database the way bench/progress_query.py does (the five
seed plans, this year's demo copies, synthetic donations bulk-loaded with COPY), binds
one liaison per unit that has a line this month, then times the whole dispatcher path
of the real app — middlewares (per-user lock, sender resolution, one session), intent
parsing, the progress queries and the reply template — for that message, cycling over
the liaisons (so the sender cache is warm, as for a liaison who writes again). It is
handler time: no HTTP, no crypto (the webhook benchmark measures those).
Target (issue 4): p99 < 10 ms. Writes bench/sections/quota.md.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from progress_query import PG_ADMIN, build, pg_admin

from bot.app import SESSIONS, WEBHOOK, create_app
from bot.clock import FixedClock
from bot.settings import Jurisdiction, Settings, WeChatAccount
from bot.simulator import text_xml
from bot.wechat.message import parse_message
from models.users import Binding

SECTION = Path(__file__).resolve().parent / "sections" / "quota.md"


async def run(calls: int, size: int) -> dict[str, Any]:
    today = date.today()
    name = f"donorbot_bench_{uuid.uuid4().hex[:8]}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    try:
        db, targets = await build("PostgreSQL", url, size, today)
        await db.engine.dispose()
        return await _time_handler(url, targets, today, calls)
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _time_handler(
    url: str, targets: list[tuple[str, int]], today: date, calls: int
) -> dict[str, Any]:
    codes = sorted({j for j, _ in targets})
    account = {"appid": "wx1", "token": "t", "mode": "plain"}
    settings = Settings(
        database_url=url,
        jurisdictions={c: Jurisdiction(name=c, wechat=WeChatAccount(**account)) for c in codes},
    )
    clock = FixedClock(datetime(today.year, today.month, today.day, 4, tzinfo=UTC))
    app = create_app(settings, clock=clock, embedded_worker=False)
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    hook = app[WEBHOOK]
    senders = []
    async with app[SESSIONS]() as s:
        for i, (code, unit) in enumerate(targets):
            openid = f"o_bench_{i}"
            s.add(Binding(jurisdiction=code, openid=openid, role="liaison", unit_id=unit))
            senders.append((code, openid))
        await s.commit()
    channels = {code: hook.channels[("mp", code)] for code in codes}
    times: list[float] = []
    replies = 0
    for n in range(calls + 50):
        code, openid = senders[n % len(senders)]
        message = parse_message(text_xml(openid, "这个月还差多少", msg_id=n))
        data = hook._data(channels[code], message)
        started = time.perf_counter()
        reply = await hook._dispatch(message, data)
        elapsed = (time.perf_counter() - started) * 1000
        assert reply and "系统繁忙" not in reply, reply
        replies += "还差" in reply or "超额" in reply or "完成" in reply
        if n >= 50:  # warm-up: caches, prepared statements, the pool
            times.append(elapsed)
    await runner.cleanup()
    return {**summarize(times), "senders": len(senders), "answered_with_numbers": replies}


def summarize(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "calls": len(times),
        "median": statistics.median(times),
        "p99": times[int(len(times) * 0.99) - 1],
        "max": times[-1],
    }


def handler_section(title: str, setup: str, result: dict[str, Any], command: str) -> str:
    """A BENCHMARKS section for a handler-time benchmark (target: p99 < 10 ms)."""
    verdict = "PASS" if result["p99"] < 10 else "FAIL"
    return (
        f"## {title}\n\n"
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
        f"Python {platform.python_version()}\n"
        f"- Command: `{command}`\n"
        f"- {setup}\n\n"
        "| calls | median | p99 | max | target p99 |\n|---:|---:|---:|---:|---|\n"
        f"| {result['calls']} | {result['median']:.2f} ms | {result['p99']:.2f} ms | "
        f"{result['max']:.2f} ms | < 10 ms: **{verdict}** |\n"
    )


def render(result: dict[str, Any], size: int, command: str) -> str:
    setup = (
        f"PostgreSQL with {size:,} donations; {result['senders']} bound liaisons, each "
        "of a unit with a line this month, asked in turn; the app's dispatcher path "
        "(middlewares, intent, progress queries, template), no HTTP."
    )
    return handler_section("Quota handler (issue 4)", setup, result, command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.size))
    text = render(result, args.size, "python " + " ".join(sys.argv))
    print(text)
    if not args.no_write:
        SECTION.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
