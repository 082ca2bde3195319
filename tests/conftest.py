"""Shared fixtures: an injected clock, real Redis and real PostgreSQL (never skipped).

Redis and PostgreSQL must be running (see README); a test that needs one fails
loudly when it is absent. Each run uses its own Redis key prefix and its own
throwaway PostgreSQL database, removed afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from bot.clock import FixedClock
from bot.storage import MemoryStorage, RedisStorage, Storage

REDIS_URL = os.environ.get("DONORBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PG_ADMIN_URL = os.environ.get(
    "DONORBOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 3, 15, 10, 0, tzinfo=UTC))


@pytest.fixture
async def redis_storage() -> AsyncIterator[RedisStorage]:
    prefix = f"donorbot-test:{RUN_ID}:{uuid.uuid4().hex[:6]}:"
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except Exception as exc:  # a loud failure, never a skip
        pytest.fail(f"Redis is required at {REDIS_URL} and is not reachable: {exc}")
    storage = RedisStorage(client, prefix)
    yield storage
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    """Every storage test runs once per backend."""
    if request.param == "memory":
        yield MemoryStorage()
    else:
        yield request.getfixturevalue("redis_storage")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for one test, dropped afterwards."""
    import asyncio

    import asyncpg

    name = f"donorbot_test_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    dsn = PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://")

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL} and is not usable: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/donorbot.db"
