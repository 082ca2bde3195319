"""Shared, short-lived state: dedup keys, nonces, tokens, rate limits, conversation state, locks.

Embedded mode keeps it in this process (`MemoryStorage`); scale-out mode keeps it in
Redis (`RedisStorage`) so every `serve` and `worker` process sees the same thing.
Both implement `Storage`; tests run the same suite against each.
Anything that must not be lost lives in the database instead.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from redis.asyncio import Redis


class Storage(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    async def add(self, key: str, value: str, ttl: float) -> bool:
        """Set only if absent; True if this call created the key (an atomic claim)."""

    async def delete(self, *keys: str) -> None: ...

    async def incr(self, key: str, ttl: float) -> int:
        """Increment a counter that expires `ttl` seconds after its first increment."""

    def lock(self, key: str, timeout: float = 30.0) -> Any:
        """An async context manager serialising work on `key` across processes."""

    async def get_json(self, key: str) -> Any: ...

    async def set_json(self, key: str, value: Any, ttl: float | None = None) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class _JsonMixin:
    async def get_json(self, key: str) -> Any:
        raw = await self.get(key)  # type: ignore[attr-defined]
        return None if raw is None else json.loads(raw)

    async def set_json(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self.set(key, json.dumps(value, ensure_ascii=False), ttl)  # type: ignore[attr-defined]


class MemoryStorage(_JsonMixin):
    """In-process storage with TTLs; the embedded default (one process only)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: dict[str, tuple[str, float | None]] = {}
        # (expiry, key) in expiry order: each write drops what has expired, a little at a
        # time, so keys nobody reads again (nonces, dedup keys) never pile up and no
        # single call has to scan the whole store.
        self._expiries: list[tuple[float, str]] = []
        self._locks: dict[str, asyncio.Lock] = {}
        self._clock = clock

    def _alive(self, key: str) -> tuple[str, float | None] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] <= self._clock():
            del self._data[key]
            return None
        return item

    def _expire(self, now: float, budget: int = 8) -> None:
        heap = self._expiries
        while budget and heap and heap[0][0] <= now:
            expiry, key = heapq.heappop(heap)
            item = self._data.get(key)
            if item is not None and item[1] == expiry:  # not rewritten since
                del self._data[key]
            budget -= 1

    async def get(self, key: str) -> str | None:
        item = self._alive(key)
        return None if item is None else item[0]

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        now = self._clock()
        self._expire(now)
        expiry = None if ttl is None else now + ttl
        self._data[key] = (value, expiry)
        if expiry is not None:
            heapq.heappush(self._expiries, (expiry, key))

    async def add(self, key: str, value: str, ttl: float) -> bool:
        if self._alive(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def incr(self, key: str, ttl: float) -> int:
        item = self._alive(key)
        if item is None:
            await self.set(key, "1", ttl)
            return 1
        value = int(item[0]) + 1
        self._data[key] = (str(value), item[1])
        return value

    def lock(self, key: str, timeout: float = 30.0) -> _MemoryLock:
        return _MemoryLock(self._locks, key, timeout)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()
        self._expiries.clear()

    def __len__(self) -> int:
        return len(self._data)


class _MemoryLock:
    """An asyncio.Lock per key, dropped when nobody holds or waits for it.

    A class rather than @asynccontextmanager: it is taken for every message, and the
    uncontended path should cost no more than a dict lookup and a flag.
    """

    __slots__ = ("_key", "_lock", "_locks", "_timeout")

    def __init__(self, locks: dict[str, asyncio.Lock], key: str, timeout: float) -> None:
        self._locks, self._key, self._timeout = locks, key, timeout
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        lock = self._lock = self._locks.setdefault(self._key, asyncio.Lock())
        if lock.locked():
            async with asyncio.timeout(self._timeout):
                await lock.acquire()
        else:
            await lock.acquire()  # free: returns at once

    async def __aexit__(self, *exc: object) -> None:
        lock = self._lock
        assert lock is not None
        lock.release()
        if not lock.locked() and not getattr(lock, "_waiters", None):
            self._locks.pop(self._key, None)


class RedisStorage(_JsonMixin):
    """Redis-backed storage shared by every process; all keys carry `prefix`."""

    def __init__(self, redis: Redis, prefix: str = "donorbot:") -> None:
        self.redis = redis
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "donorbot:") -> RedisStorage:
        client = Redis.from_url(
            url, decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        return cls(client, prefix)

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def get(self, key: str) -> str | None:
        value = await self.redis.get(self._k(key))
        return None if value is None else str(value)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        if ttl is None:
            await self.redis.set(self._k(key), value)
        else:
            await self.redis.set(self._k(key), value, px=max(1, int(ttl * 1000)))

    async def add(self, key: str, value: str, ttl: float) -> bool:
        return bool(await self.redis.set(self._k(key), value, px=max(1, int(ttl * 1000)), nx=True))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self.redis.delete(*(self._k(k) for k in keys))

    async def incr(self, key: str, ttl: float) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(self._k(key))
            pipe.pexpire(self._k(key), max(1, int(ttl * 1000)), nx=True)
            value, _ = await pipe.execute()
        return int(value)

    @asynccontextmanager
    async def lock(self, key: str, timeout: float = 30.0) -> AsyncIterator[None]:
        async with self.redis.lock(
            self._k("lock:" + key), timeout=timeout, blocking_timeout=timeout
        ):
            yield

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()


def make_storage(redis_url: str | None, prefix: str = "donorbot:") -> Storage:
    if redis_url:
        return RedisStorage.from_url(redis_url, prefix)
    return MemoryStorage()
