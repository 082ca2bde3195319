"""What every importer needs: a database for one command, and jurisdiction rows from the
account file (a jurisdiction the account file does not list is refused)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Protocol

from sqlalchemy import event, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import reply_cache
from bot.errors import ConfigError
from bot.settings import Settings
from bot.storage import make_storage
from models.db import create_engine, session_factory
from models.plans import JurisdictionRow
from models.units import Resolution


class Progress(Protocol):
    """A progress display (the CLI's rich bar); the importers call it as rows stream by."""

    def start(self, total: int | None) -> None:
        """Called once; `total` is the estimated number of rows, if known."""

    def advance(self, rows: int) -> None:
        """Called with the number of rows read since the last call."""


@asynccontextmanager
async def import_transaction(
    sessions: async_sessionmaker[AsyncSession], *, dry_run: bool
) -> AsyncIterator[AsyncSession]:
    """One transaction for a whole import: committed at the end, rolled back on --dry-run or
    on any error (nothing half-imported)."""
    async with sessions() as session:
        try:
            yield session
            await (session.rollback() if dry_run else session.commit())
        except BaseException:
            await session.rollback()
            raise
    if not dry_run:  # answers cached from the old data are void now (bot/reply_cache.py)
        await reply_cache.data_changed()


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions for one CLI command; a database that is absent or not migrated is a clear error.

    If the command commits anything and the servers share Redis, the data version there
    is replaced at the end, so no server keeps answering from the old data.
    """
    engine = create_engine(settings.database_url, sqlite_cache_mb=None)
    committed: list[bool] = []
    event.listen(engine.sync_engine, "commit", lambda conn: committed.append(True))
    try:
        yield session_factory(engine)
    except DBAPIError as exc:
        missing = any(s in str(exc.orig) for s in ("no such table", "does not exist"))
        hint = "\n（数据库未建立或未升级？请先运行 donorbot db upgrade）" if missing else ""
        raise ConfigError(f"数据库出错：{exc.orig}{hint}") from exc
    finally:
        await engine.dispose()
    if committed and settings.redis_url:
        shared = make_storage(settings.redis_url, settings.redis_prefix)
        try:
            await reply_cache.data_changed(shared)
        finally:
            await shared.close()


async def ensure_jurisdictions(
    session: AsyncSession, settings: Settings, codes: Iterable[str]
) -> list[str]:
    """Create the `jurisdictions` rows the data needs, from the account file; return new ones."""
    wanted = set(codes)
    if not wanted:
        return []
    existing = set(
        await session.scalars(select(JurisdictionRow.code).where(JurisdictionRow.code.in_(wanted)))
    )
    created = sorted(wanted - existing)
    for code in created:
        account = settings.jurisdiction(code)
        session.add(
            JurisdictionRow(
                code=code,
                name=account.name,
                timezone=account.timezone,
                policy=account.policy or None,
            )
        )
    await session.flush()
    return created


def unresolved_message(found: Resolution) -> str:
    """「县政府」未找到；最接近：县人民政府（86）… — for any file that names a unit."""
    if found.status == "ambiguous":
        return (
            f"单位「{found.query}」可能是：{'、'.join(c.name for c in found.choices[:8])}；请写全称"
        )
    hints = "、".join(f"{s.unit.name}（{s.score:.0f}）" for s in found.suggestions)
    return f"单位「{found.query}」未找到" + (
        f"；最接近：{hints}" if hints else "；请先导入计划或添加别名"
    )
