"""Data commands: `plan import`, `donations import`, `liaisons import`, `ledger import`, and
the unit review queue (`units unmatched`, `units alias add`, `units rematch`).

Exit codes: 0 done, 1 the file (or the request) has errors — all printed, nothing written —,
2 configuration or database errors (printed by the CLI's group, never a traceback).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from bot.imports import render
from bot.imports.common import database
from bot.imports.issues import ImportFailed
from bot.imports.review import ReviewError
from bot.settings import Settings, load_settings

T = TypeVar("T")
FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def register(main: click.Group) -> None:
    """Add this module's commands to `main` (reusing a group another module already made)."""
    _group(main, "plan", "计划：导入与对账。").add_command(plan_import, "import")
    _group(main, "donations", "献血记录：导入。").add_command(donations_import, "import")
    _group(main, "liaisons", "联络员：导入。").add_command(liaisons_import, "import")
    _group(main, "ledger", "用血/报销台账：导入。").add_command(ledger_import, "import")
    units = _group(main, "units", "单位：待核对队列与别名。")
    units.add_command(units_unmatched, "unmatched")
    units.add_command(units_rematch, "rematch")
    _group(units, "alias", "单位别名。").add_command(alias_add, "add")


def _group(parent: click.Group, name: str, help_text: str) -> click.Group:
    existing = parent.commands.get(name)
    if isinstance(existing, click.Group):
        return existing
    group = click.Group(name, help=help_text)
    parent.add_command(group)
    return group


def _run(work: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Run one import; print every error of a bad file and exit 1 (nothing was written)."""
    settings = load_settings()
    try:
        return asyncio.run(work(settings))
    except (ImportFailed, ReviewError) as exc:
        click.secho(str(exc), err=True, fg="red")
        sys.exit(1)


def import_options(command: Callable[..., None]) -> Callable[..., None]:
    """FILE, --dry-run and --actor, the same for every import command."""
    command = click.option("--actor", default="cli", show_default=True, help="审计日志中的操作人")(
        command
    )
    command = click.option(
        "--dry-run", is_flag=True, help="完整试导入后回滚：显示确切的改动，不写入"
    )(command)
    return click.argument("file", type=FILE)(command)


def _echo(lines: list[str]) -> None:
    click.echo("\n".join(lines))


@click.command()
@import_options
def plan_import(file: Path, dry_run: bool, actor: str) -> None:
    """导入计划文件（CSV/XLSX），打印改动与对账报告。"""
    from bot.imports.plans import import_plan_file

    async def work(settings: Settings) -> None:
        async with database(settings) as sessions:
            report = await import_plan_file(sessions, settings, file, dry_run=dry_run, actor=actor)
        _echo(render.plan_report(report))

    _run(work)


@click.command()
@import_options
def donations_import(file: Path, dry_run: bool, actor: str) -> None:
    """导入献血记录（可达百万行，流式读取）；重复的记录号不会重复计数。"""
    from bot.imports.donations import import_donation_file

    async def work(settings: Settings) -> None:
        with _ProgressBar() as bar:
            async with database(settings) as sessions:
                report = await import_donation_file(
                    sessions, settings, file, dry_run=dry_run, actor=actor, progress=bar
                )
        _echo(render.donation_report(report))

    _run(work)


@click.command()
@import_options
def liaisons_import(file: Path, dry_run: bool, actor: str) -> None:
    """导入联络员名录；电话只保存加密摘要和后四位，输出中姓名、电话均打码。"""
    from bot.imports.liaisons import import_liaison_file

    async def work(settings: Settings) -> None:
        async with database(settings) as sessions:
            report = await import_liaison_file(
                sessions, settings, file, dry_run=dry_run, actor=actor
            )
        _echo(render.liaison_report(report))

    _run(work)


@click.command()
@import_options
def ledger_import(file: Path, dry_run: bool, actor: str) -> None:
    """导入用血/报销台账；献血者须已存在，已有的记录不会重复计入。"""
    from bot.imports.ledger import import_ledger_file, report_lines

    async def work(settings: Settings) -> None:
        async with database(settings) as sessions:
            report = await import_ledger_file(
                sessions, settings, file, dry_run=dry_run, actor=actor
            )
        _echo(report_lines(report))

    _run(work)


@click.command()
@click.option("--jurisdiction", "-j", required=True)
def units_unmatched(jurisdiction: str) -> None:
    """列出单位未匹配的献血记录（按名称汇总），附相近单位建议。"""
    from bot.imports.review import unmatched_queue

    async def work(settings: Settings) -> None:
        settings.jurisdiction(jurisdiction)
        async with database(settings) as sessions, sessions() as session:
            entries = await unmatched_queue(session, jurisdiction)
        _echo(render.queue_lines(jurisdiction, entries))

    _run(work)


@click.command()
@click.option("--jurisdiction", "-j", required=True)
@click.option("--alias", "alias", required=True, help="文件中出现的名称")
@click.option("--unit", "unit", required=True, help="它所指的已有单位")
@click.option("--actor", default="cli", show_default=True)
def alias_add(jurisdiction: str, alias: str, unit: str, actor: str) -> None:
    """添加单位别名，并把该名称下待核对的献血记录计入该单位。"""
    from bot.imports.review import alias_and_credit

    async def work(settings: Settings) -> None:
        settings.jurisdiction(jurisdiction)
        async with database(settings) as sessions, sessions() as session, session.begin():
            target, created, credited = await alias_and_credit(
                session, jurisdiction, alias, unit, actor
            )
        what = "已添加别名" if created else "别名已存在"
        click.echo(f"{what}「{alias}」→「{target.name}」；计入待核对的献血记录 {credited} 条。")

    _run(work)


@click.command()
@click.option("--jurisdiction", "-j", required=True)
@click.option("--actor", default="cli", show_default=True)
def units_rematch(jurisdiction: str, actor: str) -> None:
    """把现在能确定匹配的待核对记录计入其单位（如计划导入新增了该单位之后）。"""
    from bot.imports.review import rematch

    async def work(settings: Settings) -> None:
        settings.jurisdiction(jurisdiction)
        async with database(settings) as sessions, sessions() as session, session.begin():
            moved = await rematch(session, jurisdiction, actor)
        for entry, count in moved:
            assert entry.resolution.unit is not None
            click.echo(f"「{entry.raw}」→「{entry.resolution.unit.name}」：{count} 条")
        click.echo(
            f"共计入 {sum(n for _, n in moved)} 条。" if moved else "没有可以确定匹配的记录。"
        )

    _run(work)


class _ProgressBar:
    """A rich bar on stderr, shown only on a terminal (logs and tests stay clean)."""

    def __init__(self) -> None:
        console = Console(stderr=True)
        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        )
        self.task = self.bar.add_task("导入", total=None)

    def __enter__(self) -> _ProgressBar:
        self.bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.stop()

    def start(self, total: int | None) -> None:
        self.bar.update(self.task, total=total)

    def advance(self, rows: int) -> None:
        self.bar.advance(self.task, rows)
