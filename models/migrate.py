"""`donorbot db upgrade`: Alembic, configured in code (no alembic.ini to keep in sync)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def revision(url: str, message: str) -> None:
    """Developer helper: autogenerate a migration from the models (`donorbot db revision`)."""
    command.revision(alembic_config(url), message=message, autogenerate=True)


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


async def schema_is_current(engine: AsyncEngine) -> bool:
    """True when the database has been migrated to the code's head revision."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        async with engine.connect() as conn:
            current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    except DBAPIError:
        return False
    return current == head_revision()


async def require_current_schema(engine: AsyncEngine) -> None:
    """Refuse to start on a database that `donorbot db upgrade` has not brought up to date."""
    from bot.errors import ConfigError

    if not await schema_is_current(engine):
        raise ConfigError(
            f"数据库 {engine.url.render_as_string(hide_password=True)} 还不是最新结构："
            "请先运行 `donorbot db upgrade`"
        )
