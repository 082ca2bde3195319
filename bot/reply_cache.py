"""Answers to quota questions, kept in the shared storage until the data behind them changes.

A liaison's 「这个月还差多少」 costs a few milliseconds of progress queries, and every
liaison of a unit asks the same few questions many times a day.  The answer depends
only on the unit, the local day, the question's intent and slots, and the plan data;
so it is kept under a key made of exactly those, plus the *data version*: a value in
the storage that every change to the plan data replaces (`data_changed`, called by
each import, alias and rematch, see bot/imports/common.py).  A new version makes
every older answer unreachable at once, in every process sharing the storage; the old
entries expire after TTL.

The storage is Redis in scale-out mode, so a CLI import reaches every server.  In the
embedded mode the storage lives inside the server: an import run *in* it (tests, the
console) invalidates at once, one run by the CLI in another process cannot reach it,
and the answers it cached before are served for at most TTL.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import weakref
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from bot.intents import Query
    from bot.storage import Storage

log = logging.getLogger(__name__)

VERSION_KEY = "data_version"
TTL = 300.0  # seconds an answer is kept (and, embedded, how stale a CLI import can leave it)

# Storages that servers in this process cache answers in (weakly: a closed app drops out).
_watched: weakref.WeakSet[Storage] = weakref.WeakSet()


def watch(storage: Storage) -> None:
    """Let `data_changed` reach `storage` (a server calls this for the storage it caches in).

    Only in-process storage needs it: Redis is reached by `bot.imports.common.database`
    and by `follow_writes`, whatever process the change comes from.
    """
    if getattr(storage, "in_process", False):
        _watched.add(storage)


async def data_changed(*storages: Storage) -> None:
    """A new data version in `storages` and every watched one: cached answers are void."""
    version = _new_version()
    for storage in storages:
        await storage.set(VERSION_KEY, version)
    for storage in set(_watched) - set(storages):
        try:  # a server's storage that may have closed since (another app, an ended test)
            await storage.set(VERSION_KEY, version)
        except Exception:
            log.warning("data version not updated in a watched storage", exc_info=True)


def _new_version() -> str:
    return f"{time.time_ns():x}-{secrets.token_hex(4)}"


def follow_writes(engine: AsyncEngine, storage: Storage) -> None:
    """Any write committed through `engine` (a server's own) voids the cached answers.

    Imports call `data_changed` themselves; this catches everything else that changes
    rows in this process (an office's edit, a handler, a script on the app's sessions).
    In-process storage gets the new version before the commit returns; Redis a moment
    later (a task).  Writes are rare next to questions, so erring broad costs little.
    """
    sync = engine.sync_engine
    if sync in _followed:
        return
    _followed.add(sync)
    tasks: set[asyncio.Task[None]] = set()

    def wrote(conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any) -> None:
        if context is not None and (context.isinsert or context.isupdate or context.isdelete):
            conn.info[_WROTE] = True

    def committed(conn: Any) -> None:
        if not conn.info.pop(_WROTE, False):
            return
        version = _new_version()
        for target in {storage, *_watched}:
            set_now = getattr(target, "set_now", None)
            if set_now is not None:
                set_now(VERSION_KEY, version)
            else:
                task = asyncio.get_running_loop().create_task(target.set(VERSION_KEY, version))
                tasks.add(task)
                task.add_done_callback(_finished)

    def _finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("data version not updated", exc_info=task.exception())

    def rolled_back(conn: Any) -> None:
        conn.info.pop(_WROTE, None)

    event.listen(sync, "after_cursor_execute", wrote)
    event.listen(sync, "commit", committed)
    event.listen(sync, "rollback", rolled_back)


_followed: weakref.WeakSet[Any] = weakref.WeakSet()  # engines whose writes are followed
_WROTE = "donorbot_reply_cache_wrote"


async def answer_key(
    storage: Storage, jurisdiction: str, unit_id: int, today: date, query: Query, wording: str
) -> str:
    """The key of this unit's answer to `query` today, under the current data version.

    Only what `handlers.quota.answer` reads of the query is in it (intent, year, months,
    period): the wording of the question does not change the answer.  The stamp of the
    offices' reply templates is (bot/reply_templates.py): an edit rewords the answers.
    """
    version = await storage.get(VERSION_KEY) or "0"
    # `wording`: the stamp of the reply-template edits the caller's renderer has loaded
    # (an office's edit rewords the same numbers; storage's newest stamp may be ahead)
    return (
        f"answer:{jurisdiction}:{unit_id}:{today.isoformat()}:{version}:{wording}:"
        f"{query.intent}:{query.year}:{query.months}:{query.period}"
    )
