"""The quota reply cache (bot/reply_cache.py): served again, voided by any data change,
never one unit's numbers to another unit's liaison."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from bot import reply_cache
from bot.app import SESSIONS, STORAGE
from bot.imports import import_donation_file
from bot.imports.common import database
from bot.storage import MemoryStorage
from models.db import create_engine, session_factory
from models.migrate import upgrade
from models.plans import Unit
from tests.conftest import REDIS_URL, account_settings
from tests.test_liaison_chat import ROWS, Row, _rows, _write, at, bind, numbers, seeded

__all__ = ["seeded"]  # the fixture, from the liaison tests


def _answers(bot: Any) -> list[str]:
    storage = bot.app[STORAGE]
    assert isinstance(storage, MemoryStorage)
    return [k for k in storage._data if k.startswith("answer:")]


async def test_an_answer_is_kept_and_an_import_elsewhere_voids_it(
    seeded: Any, sqlite_url: str, tmp_path: Path
) -> None:
    bot = seeded
    at(bot, date(2018, 3, 25))
    await bind(bot, "zhangjiajie", "慈利县", "o_cili")
    first = await bot.say("zhangjiajie", "这个月还差多少", openid="o_cili")
    assert first is not None and len(_answers(bot)) == 1
    assert await bot.say("zhangjiajie", "这个月还差几个", openid="o_cili") == first  # kept
    assert len(_answers(bot)) == 1  # the same question in other words: the same answer
    done = int(numbers(first)["已完成"])

    # ten more donors in March, imported through an engine of its own (as the CLI does)
    more: list[Row] = _rows("zhangjiajie", "慈利县", date(2018, 3, 22), 10, start=9000)
    engine = create_engine(sqlite_url)
    try:
        await import_donation_file(
            session_factory(engine),
            bot.settings,
            _write(tmp_path / "more.csv", more),
            clock=bot.clock,
        )
    finally:
        await engine.dispose()
    again = await bot.say("zhangjiajie", "这个月还差多少", openid="o_cili")
    assert again is not None and int(numbers(again)["已完成"]) == done + 10


async def test_a_dry_run_import_keeps_the_answers(seeded: Any, tmp_path: Path) -> None:
    bot = seeded
    at(bot, date(2018, 3, 25))
    await bind(bot, "zhangjiajie", "慈利县", "o_cili")
    await bot.say("zhangjiajie", "这个月还差多少", openid="o_cili")
    version = await bot.app[STORAGE].get(reply_cache.VERSION_KEY)
    await import_donation_file(
        bot.app[SESSIONS],
        bot.settings,
        _write(tmp_path / "same.csv", [r for r in ROWS if r.day <= date(2018, 3, 25)]),
        clock=bot.clock,
        dry_run=True,
    )
    assert await bot.app[STORAGE].get(reply_cache.VERSION_KEY) == version


async def test_one_units_answer_never_reaches_another_units_liaison(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2018, 2, 20))
    await bind(bot, "zhangjiajie", "慈利县", "o_cili")
    await bind(bot, "zhangjiajie", "市疾控中心", "o_cdc")
    await bind(bot, "zhangjiajie", "慈利县", "o_cili_2")  # a second liaison of the same unit
    cili = await bot.say("zhangjiajie", "这个月还差多少", openid="o_cili")
    cdc = await bot.say("zhangjiajie", "这个月还差多少", openid="o_cdc")
    assert cili is not None and cdc is not None
    assert "慈利县" in cili and "市疾控中心" not in cili
    assert "市疾控中心" in cdc and "慈利县" not in cdc
    assert await bot.say("zhangjiajie", "这个月还差多少", openid="o_cili_2") == cili
    assert len(_answers(bot)) == 2


async def test_a_write_through_the_apps_own_sessions_voids_the_answers(seeded: Any) -> None:
    bot = seeded
    at(bot, date(2018, 3, 25))
    await bind(bot, "zhangjiajie", "慈利县", "o_cili")
    before = await bot.say("zhangjiajie", "这个月还差多少", openid="o_cili")
    async with bot.app[SESSIONS]() as s:
        unit = await s.scalar(select(Unit).where(Unit.name == "慈利县"))
        assert unit is not None
        await s.execute(update(Unit).where(Unit.id == unit.id).values(name="慈利县（新名）"))
        await s.commit()
    after = await bot.say("zhangjiajie", "这个月还差多少", openid="o_cili")
    assert before is not None and after is not None and "慈利县（新名）" in after


async def test_a_cli_command_that_commits_replaces_the_shared_version(
    sqlite_url: str, redis_storage: Any
) -> None:
    await asyncio.to_thread(upgrade, sqlite_url)
    settings = account_settings(
        sqlite_url,
        "http://127.0.0.1:9",
        redis_url=REDIS_URL,
        redis_prefix=redis_storage.prefix,
    )
    async with database(settings) as sessions, sessions() as s:  # reads only
        await s.execute(select(Unit.id))
    assert await redis_storage.get(reply_cache.VERSION_KEY) is None
    async with database(settings) as sessions, sessions() as s:
        await s.execute(update(Unit).values(headcount=1))
        await s.commit()
    assert await redis_storage.get(reply_cache.VERSION_KEY) is not None
