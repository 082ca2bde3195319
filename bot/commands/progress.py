"""`donorbot export progress …` (the 通报 workbook) and `donorbot demo load` (demo data)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

import click

from bot.clock import Clock, FixedClock, SystemClock, local_now
from bot.errors import DonorbotError
from bot.settings import Settings, load_settings
from models.progress import DEFAULT_PLATELET_UNITS, JurisdictionProgress

DEFAULT_TZ = "Asia/Shanghai"


def register(main: click.Group) -> None:
    """Add `export progress` (creating the `export` group if needed) and `demo load`."""
    export = main.commands.get("export")
    if not isinstance(export, click.Group):
        export = click.Group("export", help="Exports: progress 通报 workbooks.")
        main.add_command(export)
    export.add_command(export_progress_command)
    demo = main.commands.get("demo")
    if isinstance(demo, click.Group):
        demo.add_command(demo_load_command)


@click.command("progress")
@click.option("--jurisdiction", "-j", required=True, help="e.g. zhangjiajie")
@click.option("--year", type=int, required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--date",
    "as_of",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="count donations up to this local date (default: today in the jurisdiction)",
)
@click.option(
    "--platelet-units",
    type=float,
    default=DEFAULT_PLATELET_UNITS,
    show_default=True,
    help="人份 per 治疗量 of apheresis platelets",
)
def export_progress_command(
    jurisdiction: str, year: int, out: Path, as_of: datetime | None, platelet_units: float
) -> None:
    """Write the year's progress 通报 (a year sheet and one sheet per month) to an XLSX file."""
    settings = load_settings()
    day = as_of.date() if as_of else None
    progress = asyncio.run(_export(settings, jurisdiction, year, out, day, platelet_units))
    behind = sum(1 for line in progress.lines if line.behind_pace)
    click.echo(
        f"wrote {out}: {len(progress.lines)} lines of {jurisdiction} {year} "
        f"as of {progress.as_of}, {behind} behind pace"
        + ("（演示计划）" if progress.is_demo else "")
    )


async def _export(
    settings: Settings,
    jurisdiction: str,
    year: int,
    out: Path,
    day: date | None,
    platelet_units: float,
) -> JurisdictionProgress:
    from bot.export import export_progress, jurisdiction_timezone
    from models.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            tz = await jurisdiction_timezone(session, jurisdiction)
            if tz is None:
                raise DonorbotError(f"数据库中没有辖区 {jurisdiction!r}（先导入计划）")
            today = day or local_now(SystemClock(), tz).date()
            progress = await export_progress(
                session, jurisdiction, year, out, today=today, platelet_units=platelet_units
            )
    finally:
        await engine.dispose()
    if not progress.plan_found:
        raise DonorbotError(f"{jurisdiction} 没有 {year} 年的计划；已写出空表 {out}")
    return progress


@click.command("load")
@click.option(
    "--today",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="pretend today is this date (default: the real date)",
)
def demo_load_command(today: datetime | None) -> None:
    """Load the seed plans, demo copies for this year and a synthetic donation history."""
    from bot.demo import load_demo

    settings = load_settings()
    clock: Clock = (
        FixedClock(datetime(today.year, today.month, today.day, 4, tzinfo=UTC))
        if today
        else SystemClock()
    )
    report = asyncio.run(load_demo(settings, clock=clock))
    for line in report.lines():
        click.echo(line)
