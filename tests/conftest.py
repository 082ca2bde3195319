"""Shared fixtures: an injected clock, real Redis and real PostgreSQL (never skipped).

Redis and PostgreSQL must be running (see README); a test that needs one fails
loudly when it is absent. Each run uses its own Redis key prefix and its own
throwaway PostgreSQL database, removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from bot.app import CHANNELS, create_app
from bot.clock import FixedClock
from bot.dispatcher import Dispatcher
from bot.fake_wechat import FakeWeChat, create_fake_app
from bot.settings import Settings
from bot.simulator import Simulator, text_xml
from bot.storage import MemoryStorage, RedisStorage, Storage
from models.migrate import upgrade

REDIS_URL = os.environ.get("DONORBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PG_ADMIN_URL = os.environ.get(
    "DONORBOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 3, 15, 10, 0, tzinfo=UTC))


@contextlib.asynccontextmanager
async def _redis_storage() -> AsyncIterator[RedisStorage]:
    prefix = f"donorbot-test:{RUN_ID}:{uuid.uuid4().hex[:6]}:"
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except Exception as exc:  # a loud failure, never a skip
        pytest.fail(f"Redis is required at {REDIS_URL} and is not reachable: {exc}")
    try:
        yield RedisStorage(client, prefix)
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def redis_storage() -> AsyncIterator[RedisStorage]:
    async with _redis_storage() as storage:
        yield storage


@pytest.fixture(params=["memory", "redis"])
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    """Every storage test runs once per backend."""
    if request.param == "memory":
        yield MemoryStorage()
    else:
        async with _redis_storage() as redis_backed:
            yield redis_backed


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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database, once on SQLite and once on PostgreSQL."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    upgrade(url)
    return url


@pytest.fixture
def settings(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The five seed jurisdictions' account file (`donorbot demo config`), as the CLI sees it."""
    from click.testing import CliRunner

    from bot.cli import main
    from bot.settings import load_settings

    account = tmp_path / "donorbot.toml"
    assert CliRunner().invoke(main, ["demo", "config", "--path", str(account)]).exit_code == 0
    monkeypatch.setenv("DONORBOT_CONFIG", str(account))
    monkeypatch.setenv("DONORBOT_DATABASE_URL", db_url)
    return load_settings()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/donorbot.db"


# ---- the bot behind its webhook, with a fake WeChat API ---------------------------------

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OLD_AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkj"
WECOM_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


@pytest.fixture(autouse=True)
def _no_account_file(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """Tests build their own Settings; a developer's donorbot.toml must not leak in."""
    monkeypatch.setenv("DONORBOT_CONFIG", f"{tmp_path}/absent.toml")


def account_settings(database_url: str, api_base: str, **overrides: object) -> Settings:
    """Three Official Accounts, one per mode, and a WeCom app on the safe-mode one."""

    def mp(n: int, mode: str, key: str = AES_KEY, previous: str = "") -> dict[str, object]:
        return {
            "appid": f"wx{n:016d}",
            "token": f"token{n}",
            "encoding_aes_key": key if mode != "plain" else "",
            "previous_encoding_aes_key": previous,
            "secret": f"secret{n}",
            "mode": mode,
        }

    jurisdictions = {
        "rugao": {"name": "如皋市", "wechat": mp(1, "plain")},
        "luquan": {"name": "禄劝彝族苗族自治县", "wechat": mp(4, "plain")},
        "qingpu": {"name": "上海市青浦区", "wechat": mp(2, "compatible")},
        "zhangjiajie": {
            "name": "张家界市",
            "wechat": mp(3, "safe", previous=OLD_AES_KEY),
            "wecom": {
                "corp_id": "ww0000000000000003",
                "agent_id": 1000002,
                "token": "wecomtoken",
                "encoding_aes_key": WECOM_KEY,
                "secret": "wecomsecret",
            },
        },
    }
    values: dict[str, object] = {
        "database_url": database_url,
        "wechat_api_base": api_base,
        "wecom_api_base": api_base,
        "jurisdictions": jurisdictions,
        "log_json": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class Bot:
    """The app under test, its fake WeChat, and helpers to talk to it as WeChat does."""

    client: TestClient
    app: web.Application
    fake: FakeWeChat
    clock: FixedClock
    settings: Settings

    def sim(self, code: str, kind: str = "mp", **kw: Any) -> Simulator:
        channel = self.app[CHANNELS][(kind, code)]
        return Simulator(channel, now=self.clock.timestamp, **kw)

    async def post(
        self, code: str, xml: bytes, *, kind: str = "mp", sim: Simulator | None = None
    ) -> tuple[int, dict[str, Any] | None, bytes]:
        sim = sim or self.sim(code, kind)
        query, body = sim.request(xml)
        resp = await self.client.post(sim.path, params=query, data=body)
        raw = await resp.read()
        reply = sim.open_reply(raw) if resp.status == 200 else None
        return resp.status, reply, raw

    async def say(self, code: str, text: str, openid: str = "o_user_1", **kw: Any) -> str | None:
        status, reply, raw = await self.post(
            code, text_xml(openid, text, create_time=int(self.clock.timestamp())), **kw
        )
        assert status == 200, raw
        return None if reply is None else str(reply["Content"])

    async def wait_for_late(self, openid: str, timeout: float = 8.0) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            got = [m for m in self.fake.messages if m["touser"] == openid]
            if got:
                return got
            await asyncio.sleep(0.05)
        return []


@pytest.fixture
def make_bot(
    aiohttp_client: Any, aiohttp_server: Any, sqlite_url: str, clock: FixedClock
) -> Callable[..., Awaitable[Bot]]:
    """`await make_bot(storage=…, dispatcher=…, **settings)` → a running Bot."""

    async def build(
        *,
        storage: Storage | None = None,
        dispatcher: Dispatcher | None = None,
        database_url: str | None = None,
        **overrides: object,
    ) -> Bot:
        url = database_url or sqlite_url
        await asyncio.to_thread(upgrade, url)
        fake = FakeWeChat({}, clock=clock, enforce_window=True)
        fake_server = await aiohttp_server(create_fake_app(fake))
        settings = account_settings(url, str(fake_server.make_url("")).rstrip("/"), **overrides)
        for j in settings.jurisdictions.values():
            if j.wechat:
                fake.accounts[j.wechat.appid] = j.wechat.secret.get_secret_value()
            if j.wecom:
                fake.wecom[j.wecom.corp_id] = j.wecom.secret.get_secret_value()
        app = create_app(settings, clock=clock, storage=storage, dispatcher=dispatcher)
        client = await aiohttp_client(app)
        return Bot(client, app, fake, clock, settings)

    return build
