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
from collections import deque
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
    """In-process storage with TTLs; the embedded default (one process only).

    No call awaits anything: a message whose handler needs no database completes
    without suspending (the webhook relies on that, see `in_process`).
    """

    in_process = True  # calls never wait for I/O

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: dict[str, tuple[str, float | None]] = {}
        # (expiry, key) in expiry order: each write drops what has expired, a little at a
        # time, so keys nobody reads again (nonces, dedup keys) never pile up and no
        # single call has to scan the whole store.
        self._expiries: list[tuple[float, str]] = []
        self._locks: dict[str, deque[asyncio.Future[None]]] = {}
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
        self.set_now(key, value, ttl)

    def set_now(self, key: str, value: str, ttl: float | None = None) -> None:
        """`set` for code that cannot await (this storage never waits anyway)."""
        now = self._clock()
        self._expire(now)
        expiry = None if ttl is None else now + ttl
        self._data[key] = (value, expiry)
        if expiry is not None:
            heapq.heappush(self._expiries, (expiry, key))

    async def add(self, key: str, value: str, ttl: float) -> bool:
        now = self._clock()
        item = self._data.get(key)
        if item is not None and (item[1] is None or item[1] > now):
            return False
        self._expire(now)
        expiry = now + ttl
        self._data[key] = (value, expiry)
        heapq.heappush(self._expiries, (expiry, key))
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
    """A lock per key: the entry in `locks` is the queue of those waiting for it.

    A class rather than @asynccontextmanager: it is taken for every message, and the
    uncontended path costs two dict operations.  A waiter's timeout is a timer on its
    own future, not `asyncio.timeout` (which cancels whichever task entered it), so it
    holds whatever task ends up running the waiting code.
    """

    __slots__ = ("_key", "_locks", "_timeout")

    def __init__(
        self, locks: dict[str, deque[asyncio.Future[None]]], key: str, timeout: float
    ) -> None:
        self._locks, self._key, self._timeout = locks, key, timeout

    async def __aenter__(self) -> None:
        queue = self._locks.get(self._key)
        if queue is None:  # free: take it
            self._locks[self._key] = deque()
            return
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        queue.append(turn)
        timer = loop.call_later(self._timeout, _time_out, turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._release()  # handed the lock just as the wait ended: pass it on
            elif turn in queue:
                queue.remove(turn)
            raise
        finally:
            timer.cancel()

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        queue = self._locks[self._key]
        while queue:
            turn = queue.popleft()
            if not turn.done():
                turn.set_result(None)  # the lock passes to that waiter
                return
        del self._locks[self._key]


def _time_out(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_exception(TimeoutError())


class RedisStorage(_JsonMixin):
    """Redis-backed storage shared by every process; all keys carry `prefix`."""

    in_process = False

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
