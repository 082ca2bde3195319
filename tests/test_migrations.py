"""Alembic migrations on a real SQLite file and a real PostgreSQL database.

`models.migrate.upgrade` runs `asyncio.run` itself, so these tests are synchronous.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

import models
from models.db import create_engine
from models.migrate import alembic_config, downgrade, upgrade

MODEL_TABLES = set(models.Base.metadata.tables)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database: a fresh SQLite file, or a throwaway PostgreSQL database."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


def on_db(url: str, work: Callable[[Connection], Any]) -> Any:
    """Run `work` on a sync connection of the app's own async engine."""

    async def go() -> Any:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def tables(url: str) -> set[str]:
    return set(on_db(url, lambda conn: inspect(conn).get_table_names()))


def current_revision(url: str) -> str | None:
    return on_db(url, lambda conn: MigrationContext.configure(conn).get_current_revision())


def schema_diff(url: str) -> list[Any]:
    """What `donorbot db revision` (autogenerate) would put in a new migration."""

    def compare(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "render_as_batch": conn.dialect.name == "sqlite",
            },
        )
        return list(compare_metadata(context, models.Base.metadata))

    return on_db(url, compare)


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def test_there_is_one_head() -> None:
    # Two heads means two branches of migrations nobody merged: `upgrade head` would fail.
    assert len(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()) == 1


def test_upgrade_creates_every_model_table(db_url: str) -> None:
    assert tables(db_url) == set()

    upgrade(db_url)

    assert tables(db_url) == MODEL_TABLES | {"alembic_version"}
    assert current_revision(db_url) == head()


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    upgrade(db_url)
    assert schema_diff(db_url) == []


def test_upgrade_twice_is_a_no_op_and_keeps_data(db_url: str) -> None:
    upgrade(db_url)
    on_db(
        db_url,
        lambda conn: conn.execute(
            text(
                "INSERT INTO subscriber_daily (jurisdiction, day, subscribes, unsubscribes) "
                "VALUES ('gz', '2026-03-15', 3, 1)"
            )
        ),
    )

    upgrade(db_url)

    assert tables(db_url) == MODEL_TABLES | {"alembic_version"}
    assert current_revision(db_url) == head()
    rows = on_db(
        db_url,
        lambda conn: conn.execute(
            text("SELECT jurisdiction, subscribes, unsubscribes FROM subscriber_daily")
        ).all(),
    )
    assert [tuple(row) for row in rows] == [("gz", 3, 1)]


def test_downgrade_to_base_removes_everything_and_upgrade_works_again(db_url: str) -> None:
    upgrade(db_url)

    downgrade(db_url, "base")

    assert tables(db_url) <= {"alembic_version"}
    assert current_revision(db_url) is None
    # The comparison does see a missing schema (so an empty diff above means something).
    missing = {op[1].name for op in schema_diff(db_url) if op[0] == "add_table"}
    assert missing == MODEL_TABLES

    upgrade(db_url)

    assert tables(db_url) == MODEL_TABLES | {"alembic_version"}
    assert current_revision(db_url) == head()
    assert schema_diff(db_url) == []


async def test_upgrade_can_run_from_async_code(sqlite_url: str) -> None:
    # The app calls it at start-up from inside the event loop (`upgrade_async`).
    from models.migrate import upgrade_async

    await upgrade_async(sqlite_url)
    assert await asyncio.to_thread(tables, sqlite_url) == MODEL_TABLES | {"alembic_version"}


def test_revision_ids_fit_alembic_version_column() -> None:
    """alembic_version.version_num is VARCHAR(32): a longer id fails only on PostgreSQL."""
    from alembic.script import ScriptDirectory

    from models.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    too_long = [r.revision for r in script.walk_revisions() if len(r.revision) > 32]
    assert too_long == []
