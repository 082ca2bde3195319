"""`donations import`: stream a station export (or synthetic rows) into the database.

One pass, one transaction: rows are validated and written in batches as they stream; the first
error stops the writing but not the reading, so every error is still listed, then everything is
rolled back. A dry run does the whole import and rolls it back, so its counts are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, SystemClock
from bot.imports.columns import DONATIONS
from bot.imports.common import Progress, ensure_jurisdictions, import_transaction
from bot.imports.donation_rows import DonationRowParser, Record
from bot.imports.donation_store import DonationWriter
from bot.imports.issues import IssueList
from bot.imports.reader import open_table
from bot.settings import Settings
from models.audit import audit
from models.units import UnitDirectory

BATCH = 20_000
_YIELD_EVERY = 500


@dataclass
class DonationImportReport:
    file: str
    dry_run: bool
    rows: int = 0  # valid data rows
    inserted: int = 0
    by_jurisdiction: Counter[str] = field(default_factory=Counter)
    # (jurisdiction, unit name as written) → rows left in the review queue
    unmatched: dict[tuple[str, str], int] = field(default_factory=dict)
    jurisdictions_created: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def already_present(self) -> int:
        """Rows whose record_id was already in the database (or repeated in the file)."""
        return self.rows - self.inserted

    @property
    def unmatched_rows(self) -> int:
        return sum(self.unmatched.values())


async def import_donation_file(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    path: Path,
    *,
    dry_run: bool = False,
    actor: str = "cli",
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> DonationImportReport:
    """Import a donations CSV/XLSX; raise ImportFailed (nothing written) listing every problem."""
    issues = IssueList()
    with open_table(path, DONATIONS, issues) as table:
        if progress is not None:
            progress.start(table.estimated_rows)
        return await _import(
            sessions,
            settings,
            table.file,
            table.rows,
            table.headers,
            issues,
            dry_run=dry_run,
            actor=actor,
            clock=clock,
            progress=progress,
            synthetic=False,
        )


async def import_donation_rows(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    rows: Iterable[Mapping[str, Any]],
    *,
    dry_run: bool = False,
    actor: str = "demo",
    synthetic: bool = True,
    clock: Clock | None = None,
    progress: Progress | None = None,
    source: str = "（程序生成）",
) -> DonationImportReport:
    """Import donations given as dicts with the file's canonical keys (values as text or typed:
    `date`, `int`, `float`); the demo loader's synthetic history goes through here, marked
    `Donation.synthetic`. Rows are consumed lazily, so a generator of a million rows is fine."""
    numbered: Iterator[tuple[int, dict[str, Any]]] = (
        (n, dict(row)) for n, row in enumerate(rows, start=2)
    )
    headers = {c: c for c in DONATIONS.columns}
    if progress is not None:
        progress.start(None)
    return await _import(
        sessions,
        settings,
        source,
        numbered,
        headers,
        IssueList(),
        dry_run=dry_run,
        actor=actor,
        clock=clock,
        progress=progress,
        synthetic=synthetic,
    )


async def _import(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    file: str,
    rows: Iterable[tuple[int, dict[str, Any]]],
    headers: dict[str, str],
    issues: IssueList,
    *,
    dry_run: bool,
    actor: str,
    clock: Clock | None,
    progress: Progress | None,
    synthetic: bool,
) -> DonationImportReport:
    started = time.perf_counter()
    report = DonationImportReport(file, dry_run)
    async with import_transaction(sessions, dry_run=dry_run) as session:
        directories = {
            code: await UnitDirectory.load(session, code) for code in settings.jurisdictions
        }
        parser = DonationRowParser(
            settings,
            clock or SystemClock(),
            directories,
            issues,
            file,
            headers,
            synthetic=synthetic,
        )
        writer = DonationWriter(await session.connection())
        await writer.start()
        await _stream(session, settings, rows, parser, writer, issues, report, progress)
        issues.raise_if_any()
        await writer.finish()
        report.inserted = writer.inserted
        report.unmatched = parser.unmatched
        _audit(session, report, actor)
    report.seconds = time.perf_counter() - started
    return report


async def _stream(
    session: AsyncSession,
    settings: Settings,
    rows: Iterable[tuple[int, dict[str, Any]]],
    parser: DonationRowParser,
    writer: DonationWriter,
    issues: IssueList,
    report: DonationImportReport,
    progress: Progress | None,
) -> None:
    """Parse in this task while the database inserts the previous batch in another.

    Parsing is CPU work in this process and inserting is mostly work in the database server,
    so overlapping them saves most of the parsing time; the queue bounds memory to a few batches.
    """
    queue: asyncio.Queue[list[Record] | None] = asyncio.Queue(maxsize=2)
    writing = asyncio.create_task(_write_batches(session, settings, queue, writer, issues, report))
    try:
        batch: list[Record] = []
        read = 0
        for row_no, row in rows:
            read += 1
            record = parser.parse(row_no, row)
            if record is not None:
                batch.append(record)
            if read % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the writer read a reply and send its next statement
            if read == BATCH:
                await _put(queue, batch, writing)
                batch, read = [], _report_progress(progress, read)
        await _put(queue, batch, writing)
        _report_progress(progress, read)
        await _put(queue, None, writing)
        await writing
    finally:
        if not writing.done():
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing


async def _put(
    queue: asyncio.Queue[list[Record] | None],
    item: list[Record] | None,
    writing: asyncio.Task[None],
) -> None:
    """Hand a batch to the writer, or surface the writer's failure instead of waiting forever."""
    putting = asyncio.ensure_future(queue.put(item))
    await asyncio.wait({putting, writing}, return_when=asyncio.FIRST_COMPLETED)
    if not putting.done():
        putting.cancel()
        writing.result()  # raises the writer's exception
        raise RuntimeError("donation writer stopped early")


def _report_progress(progress: Progress | None, read: int) -> int:
    if progress is not None and read:
        progress.advance(read)
    return 0


async def _write_batches(
    session: AsyncSession,
    settings: Settings,
    queue: asyncio.Queue[list[Record] | None],
    writer: DonationWriter,
    issues: IssueList,
    report: DonationImportReport,
) -> None:
    """Count each batch; write it unless an error was found (then the reader only validates)."""
    seen: set[str] = set()
    while (batch := await queue.get()) is not None:
        report.rows += len(batch)
        report.by_jurisdiction.update(r.jurisdiction for r in batch)
        if issues:
            continue
        new = {r.jurisdiction for r in batch} - seen
        if new:
            report.jurisdictions_created += await ensure_jurisdictions(session, settings, new)
            seen |= new
        await writer.write(batch)


def _audit(session: AsyncSession, report: DonationImportReport, actor: str) -> None:
    for jurisdiction, rows in sorted(report.by_jurisdiction.items()):
        unmatched = sum(n for (j, _), n in report.unmatched.items() if j == jurisdiction)
        audit(
            session,
            actor,
            "donations.import",
            jurisdiction,
            file=report.file,
            rows=rows,
            unmatched_rows=unmatched,
            inserted_all_jurisdictions=report.inserted,
        )
