"""Storage: the same behaviour from MemoryStorage (embedded) and a real Redis (scale-out).

Every test but the scale-out ones runs once per backend.  TTLs are short and the
waits are real sleeps, so Redis's own expiry is what is being tested.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import ConnectionPool, Redis

from bot.storage import MemoryStorage, RedisStorage, Storage

TTL = 0.2
PAST_TTL = 0.35


@pytest.fixture
async def other_client(redis_storage: RedisStorage) -> AsyncIterator[Redis]:
    """A second, independent connection to the same Redis: what another process would hold."""
    pool = redis_storage.redis.connection_pool
    client = Redis.from_pool(
        ConnectionPool(connection_class=pool.connection_class, **pool.connection_kwargs)
    )
    yield client
    await client.aclose()


async def test_set_get_delete(storage: Storage) -> None:
    assert await storage.get("state:o1") is None
    await storage.set("state:o1", "asking-unit")
    await storage.set("state:o2", "asking-month")
    assert await storage.get("state:o1") == "asking-unit"

    await storage.set("state:o1", "idle")
    assert await storage.get("state:o1") == "idle"

    await storage.delete("state:o1", "state:o2", "never-set")
    assert await storage.get("state:o1") is None
    assert await storage.get("state:o2") is None
    await storage.delete()  # deleting nothing is fine


async def test_value_expires_after_its_ttl(storage: Storage) -> None:
    await storage.set("nonce:1", "seen", ttl=TTL)
    await storage.set("token", "kept")
    assert await storage.get("nonce:1") == "seen"

    await asyncio.sleep(PAST_TTL)

    assert await storage.get("nonce:1") is None
    assert await storage.get("token") == "kept"


async def test_setting_again_without_ttl_makes_a_value_permanent(storage: Storage) -> None:
    await storage.set("k", "short-lived", ttl=TTL)
    await storage.set("k", "permanent")
    await asyncio.sleep(PAST_TTL)
    assert await storage.get("k") == "permanent"


async def test_add_claims_only_an_absent_key(storage: Storage) -> None:
    assert await storage.add("dedup:m:1", "first", ttl=5) is True
    assert await storage.add("dedup:m:1", "retry", ttl=5) is False
    assert await storage.get("dedup:m:1") == "first"


async def test_fifty_concurrent_adds_have_exactly_one_winner(storage: Storage) -> None:
    results = await asyncio.gather(*(storage.add("dedup:m:42", f"w{i}", ttl=5) for i in range(50)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert await storage.get("dedup:m:42") == f"w{winner}"


async def test_an_expired_claim_can_be_taken_again(storage: Storage) -> None:
    assert await storage.add("dedup:e:1", "1", ttl=TTL) is True
    await asyncio.sleep(PAST_TTL)
    assert await storage.add("dedup:e:1", "2", ttl=TTL) is True
    assert await storage.get("dedup:e:1") == "2"


async def test_incr_counts_per_key(storage: Storage) -> None:
    assert [await storage.incr("rate:o1", ttl=5) for _ in range(3)] == [1, 2, 3]
    assert await storage.incr("rate:o2", ttl=5) == 1
    assert await storage.get("rate:o1") == "3"


async def test_incr_window_runs_from_the_first_increment(storage: Storage) -> None:
    window = 0.4
    assert await storage.incr("rate:o1", ttl=window) == 1
    await asyncio.sleep(0.25)
    # A later increment must not push the window back...
    assert await storage.incr("rate:o1", ttl=window) == 2
    await asyncio.sleep(0.25)
    # ...so 0.5 s after the first one the count starts again.
    assert await storage.incr("rate:o1", ttl=window) == 1


async def test_concurrent_incr_loses_no_count(storage: Storage) -> None:
    results = await asyncio.gather(*(storage.incr("rate:burst", ttl=5) for _ in range(40)))
    assert sorted(results) == list(range(1, 41))


async def _read_modify_write(storage: Storage, key: str, times: int, *, locked: bool) -> None:
    for _ in range(times):
        if locked:
            async with storage.lock(key, timeout=10):
                value = int(await storage.get(key) or 0)
                await asyncio.sleep(0.002)  # give the other task every chance to interleave
                await storage.set(key, str(value + 1))
        else:
            value = int(await storage.get(key) or 0)
            await asyncio.sleep(0.002)
            await storage.set(key, str(value + 1))


async def test_lock_serialises_read_modify_write(storage: Storage) -> None:
    # Without the lock the two tasks overwrite each other (so this test can tell)...
    await asyncio.gather(
        *(_read_modify_write(storage, "unlocked", 10, locked=False) for _ in range(2))
    )
    assert int(await storage.get("unlocked") or 0) < 20
    # ...with it, no update is lost.
    await asyncio.gather(
        *(_read_modify_write(storage, "counter", 10, locked=True) for _ in range(2))
    )
    assert await storage.get("counter") == "20"


async def test_lock_is_released_when_the_work_fails(storage: Storage) -> None:
    with pytest.raises(RuntimeError):
        async with storage.lock("user:o1", timeout=5):
            raise RuntimeError("handler crashed")
    async with asyncio.timeout(2), storage.lock("user:o1", timeout=5):
        pass


async def test_json_round_trip_keeps_chinese_text(storage: Storage) -> None:
    state = {
        "步骤": "确认献血单位",
        "单位": "市第一人民医院",
        "候选": ["市中心血站", "城东献血屋 🩸"],
        "剩余名额": 3,
        "已确认": False,
        "备注": None,
    }
    await storage.set_json("state:o1", state)
    assert await storage.get_json("state:o1") == state
    assert await storage.get_json("state:missing") is None

    await storage.set_json("state:o2", state, ttl=TTL)
    await asyncio.sleep(PAST_TTL)
    assert await storage.get_json("state:o2") is None


async def test_ping(storage: Storage) -> None:
    assert await storage.ping() is True


# Scale-out: several processes, one Redis.  These only make sense for RedisStorage.


async def test_same_prefix_is_shared_between_processes(
    redis_storage: RedisStorage, other_client: Redis
) -> None:
    other = RedisStorage(other_client, redis_storage.prefix)

    await redis_storage.set("access_token:wx1", "TOKEN-A", ttl=60)
    assert await other.get("access_token:wx1") == "TOKEN-A"

    # A retry landing on the other process is still recognised as a duplicate.
    assert await redis_storage.add("dedup:m:7", "serve-1", ttl=60) is True
    assert await other.add("dedup:m:7", "serve-2", ttl=60) is False

    assert await redis_storage.incr("rate:o1", ttl=60) == 1
    assert await other.incr("rate:o1", ttl=60) == 2

    await other.set_json("state:o1", {"步骤": "选择月份"})
    assert await redis_storage.get_json("state:o1") == {"步骤": "选择月份"}

    await other.delete("access_token:wx1")
    assert await redis_storage.get("access_token:wx1") is None


async def test_lock_serialises_across_processes(
    redis_storage: RedisStorage, other_client: Redis
) -> None:
    other = RedisStorage(other_client, redis_storage.prefix)
    await asyncio.gather(
        _read_modify_write(redis_storage, "counter", 10, locked=True),
        _read_modify_write(other, "counter", 10, locked=True),
    )
    assert await redis_storage.get("counter") == "20"


async def test_different_prefixes_are_separate(
    redis_storage: RedisStorage, other_client: Redis
) -> None:
    # Nested under the fixture's prefix so its clean-up removes these keys too.
    other = RedisStorage(other_client, redis_storage.prefix + "other-office:")

    await redis_storage.set("access_token:wx1", "TOKEN-A")
    assert await other.get("access_token:wx1") is None

    assert await redis_storage.add("dedup:m:7", "a", ttl=60) is True
    assert await other.add("dedup:m:7", "b", ttl=60) is True

    assert await redis_storage.incr("rate:o1", ttl=60) == 1
    assert await other.incr("rate:o1", ttl=60) == 1
    assert await redis_storage.get("access_token:wx1") == "TOKEN-A"


async def test_memory_storage_forgets_expired_keys_nobody_reads_again() -> None:
    """Nonces and dedup keys are written once and never read: they must not pile up."""
    now = [0.0]
    storage = MemoryStorage(clock=lambda: now[0])
    for i in range(10_000):
        await storage.set(f"nonce:{i}", "x", ttl=60)
    assert len(storage) == 10_000
    now[0] = 61.0
    for i in range(10_000):  # ongoing traffic drops the expired ones along the way
        await storage.set(f"fresh:{i}", "x", ttl=60)
    assert len(storage) == 10_000
    assert await storage.get("nonce:1") is None and await storage.get("fresh:1") == "x"
