"""Handler time of a bound donor's 「我能免费用多少血」 on PostgreSQL with 1,000,000 donations.

    .venv/bin/python bench/entitlement_handler.py [--calls 1000] [--size 1000000] [--no-write]

The database is built as in bench/progress_query.py (seed plans, synthetic donations
bulk-loaded with COPY); then one donor with 60 donations and a ledger of 10 entries is
bound to an openid in 张家界 (policy hunan-2015), and the real app's dispatcher path —
middlewares, donor intent, the donor's records and ledger, the policy engine, the reply
template — is timed for that message. Target (issue 5): p99 < 10 ms. Writes
bench/sections/entitlement.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from progress_query import PG_ADMIN, build, pg_admin
from quota_handler import handler_section, summarize

from bot.app import SESSIONS, WEBHOOK, create_app
from bot.clock import FixedClock
from bot.privacy import keyed_hash
from bot.settings import Jurisdiction, Settings, WeChatAccount
from bot.simulator import text_xml
from bot.wechat.message import parse_message
from models.donations import BloodUse, Donation, Donor
from models.users import Binding

SECTION = Path(__file__).resolve().parent / "sections" / "entitlement.md"
OPENID = "o_bench_donor"


async def run(calls: int, size: int) -> dict[str, Any]:
    today = date.today()
    name = f"donorbot_bench_{uuid.uuid4().hex[:8]}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    try:
        db, _ = await build("PostgreSQL", url, size, today)
        await db.engine.dispose()
        return await _time_handler(url, today, calls)
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _seed_donor(app: web.Application, settings: Settings, today: date) -> None:
    key = settings.id_hash_key.get_secret_value()
    async with app[SESSIONS]() as s:
        # the bulk load gave donors explicit ids: move the sequence past them
        await s.execute(text("SELECT setval('donors_id_seq', (SELECT max(id) FROM donors))"))
        donor = Donor(jurisdiction="zhangjiajie", id_hash=keyed_hash(key, "bench-donor"),
                      name_masked="测*", blood_type="O")  # fmt: skip
        s.add(donor)
        await s.flush()
        for n in range(60):  # every ~2 months back to 10 years ago, some platelets
            kind = "platelets" if n % 5 == 0 else "whole_blood"
            s.add(Donation(
                jurisdiction="zhangjiajie", record_id=f"BENCH-D{n}", donor_id=donor.id,
                donated_at=today - timedelta(days=61 * n + 3), kind=kind,
                volume_ml=0 if kind == "platelets" else 400,
                therapeutic_units=1.0 if kind == "platelets" else 0.0, synthetic=True,
            ))  # fmt: skip
        for n in range(10):
            s.add(BloodUse(donor_id=donor.id, used_at=today - timedelta(days=90 * n + 1),
                           volume_ml=200, relation="self" if n % 2 else "spouse"))  # fmt: skip
        s.add(Binding(jurisdiction="zhangjiajie", openid=OPENID, role="donor", donor_id=donor.id))
        await s.commit()


async def _time_handler(url: str, today: date, calls: int) -> dict[str, Any]:
    account = WeChatAccount(appid="wx1", token="t", mode="plain")  # type: ignore[arg-type]
    settings = Settings(
        database_url=url,
        jurisdictions={
            "zhangjiajie": Jurisdiction(name="张家界市", policy="hunan-2015", wechat=account)
        },
    )
    clock = FixedClock(datetime(today.year, today.month, today.day, 4, tzinfo=UTC))
    app = create_app(settings, clock=clock, embedded_worker=False)
    runner = web.AppRunner(app)
    await runner.setup()
    await _seed_donor(app, settings, today)
    hook = app[WEBHOOK]
    channel = hook.channels[("mp", "zhangjiajie")]
    times: list[float] = []
    for n in range(calls + 50):
        message = parse_message(text_xml(OPENID, "我能免费用多少血", msg_id=n))
        data = hook._data(channel, message)
        started = time.perf_counter()
        reply = await hook._dispatch(message, data)
        elapsed = (time.perf_counter() - started) * 1000
        assert reply and "毫升" in reply and "系统繁忙" not in reply, reply
        if n >= 50:
            times.append(elapsed)
    await runner.cleanup()
    return {**summarize(times), "reply": reply}


def render(result: dict[str, Any], size: int, command: str) -> str:
    setup = (
        f"PostgreSQL with {size:,} donations; one bound donor with 60 donations and 10 "
        "ledger entries asks 「我能免费用多少血」 (policy hunan-2015); the app's dispatcher "
        "path, no HTTP."
    )
    return handler_section("Donor entitlement handler (issue 5)", setup, result, command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.size))
    text = render(result, args.size, "python " + " ".join(sys.argv))
    print(text)
    print(result["reply"])
    if not args.no_write:
        SECTION.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
