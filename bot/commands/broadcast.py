"""`donorbot broadcast create|list|status|cancel|retry-failed`."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts.compose import HIDDEN_TEMPLATE_FIELDS, Composer, parse_params
from bot.broadcasts.service import (
    Created,
    Progress,
    cancel,
    create_broadcast,
    list_broadcasts,
    progress,
    retry_failed,
)
from bot.clock import SystemClock, local_now
from bot.errors import DonorbotError
from bot.settings import load_settings

T = TypeVar("T")


def register(main: click.Group) -> None:
    main.add_command(broadcast)


@click.group()
def broadcast() -> None:
    """Broadcasts to liaisons, donors or office staff (template, custom or subscribe)."""


@asynccontextmanager
async def _session() -> AsyncIterator[AsyncSession]:
    from models.db import create_engine, session_factory

    settings = load_settings()
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            yield session
    finally:
        await engine.dispose()


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def go() -> T:
        async with _session() as session:
            return await work(session)

    return asyncio.run(go())


def _send_at(text: str | None, tz: str) -> datetime:
    if not text:
        return SystemClock().now()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise DonorbotError(
            f"--send-at {text!r} 不是 ISO-8601 时间，例如 2026-12-01T09:00"
        ) from None
    if when.tzinfo is None:  # a local time of the jurisdiction
        when = when.replace(tzinfo=ZoneInfo(tz))
    return when.astimezone(UTC)


@broadcast.command("create")
@click.option("--jurisdiction", "-j", required=True)
@click.option("--audience", type=click.Choice(["liaisons", "donors", "office"]), required=True)
@click.option("--month", type=int, default=None, help="liaisons: units with a plan line in M")
@click.option("--year", type=int, default=None, help="with --month (default: this year)")
@click.option("--behind", is_flag=True, help="liaisons: units behind their expected pace")
@click.option("--unit", default=None, help="liaisons or donors of one unit")
@click.option("--blood-type", default=None, help="donors opted in to emergency calls: A/B/O/AB")
@click.option("--eligible", is_flag=True, help="donors whose donation interval has passed")
@click.option("--channel", type=click.Choice(["template", "custom", "subscribe"]), required=True)
@click.option("--template-id", default="", help="template / subscribe: WeChat's template id")
@click.option("--param", "params", multiple=True, help="key=value (Jinja over unit, month, …)")
@click.option("--url", default="", help="template: link; subscribe: page")
@click.option("--send-at", default=None, help="ISO-8601; a time without zone is local")
@click.option("--critical", is_flag=True, help="also to users who sent 「退订」, and at night")
@click.option("--key", default=None, help="idempotency key: the same key creates one broadcast")
@click.option("--dry-run", is_flag=True, help="show the audience and the message; send nothing")
@click.option("--actor", default="cli", show_default=True, help="who sends it (audit log)")
def create(**o: Any) -> None:
    """Create a broadcast; its id is printed on the last line."""
    from models.audiences import AudienceError, AudienceSpec

    settings = load_settings()
    j = settings.jurisdiction(o["jurisdiction"])
    try:
        spec = AudienceSpec(
            jurisdiction=o["jurisdiction"],
            kind=o["audience"],
            month=o["month"],
            year=o["year"],
            behind=o["behind"],
            blood_type=o["blood_type"],
            eligible=o["eligible"],
            unit=o["unit"],
        )
    except AudienceError as exc:
        raise DonorbotError(str(exc)) from None
    composer = Composer(o["channel"], o["template_id"], parse_params(o["params"]))
    send_at = _send_at(o["send_at"], j.timezone)
    today = local_now(SystemClock(), j.timezone).date()

    async def work(session: AsyncSession) -> Created:
        try:
            return await create_broadcast(
                session,
                spec=spec,
                composer=composer,
                send_at=send_at,
                today=today,
                creator=o["actor"],
                critical=o["critical"],
                key=o["key"],
                url=o["url"],
                dry_run=o["dry_run"],
            )
        except AudienceError as exc:
            raise DonorbotError(str(exc)) from None

    made = _run(work)
    hidden = sorted(HIDDEN_TEMPLATE_FIELDS & composer.fields.keys())
    if composer.channel == "template" and hidden:
        click.echo(f"注意：微信已不再显示模板消息的 {'、'.join(hidden)} 字段，收件人看不到其内容")
    click.echo(f"受众：{made.audience}")
    click.echo(
        f"收件人：{made.total} 人"
        + (f"（{made.opted_out} 人已退订，不发送）" if made.opted_out else "")
    )
    for who, shown in made.sample:
        click.echo(f"  {who}：" + "；".join(f"{k}={v}" for k, v in shown.items()))
    if o["dry_run"]:
        click.echo("演练（--dry-run）：没有创建群发")
        return
    if not made.created:
        click.echo(f"幂等键已存在：沿用群发 {made.id}，没有重复创建")
    click.echo(made.id)


@broadcast.command("list")
@click.option("--jurisdiction", "-j", default=None)
@click.option("--limit", type=int, default=50, show_default=True)
def list_command(jurisdiction: str | None, limit: int) -> None:
    """The latest broadcasts."""

    async def work(session: AsyncSession) -> list[tuple[Any, Progress]]:
        rows = await list_broadcasts(session, jurisdiction, limit)
        return [(row, await progress(session, row.id)) for row in rows]

    for row, p in _run(work):
        c = p.counts
        click.echo(
            f"{row.id:>6}  {row.jurisdiction:<12} {row.send_at:%Y-%m-%d %H:%M}Z "
            f"{row.channel:<9} {row.status:<9} 已发 {c['sent']}/{p.total} "
            f"失败 {c['failed']} 跳过 {c['skipped']}  {row.audience_text}"
        )


@broadcast.command("status")
@click.argument("broadcast_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="print the counts as one JSON object")
@click.option("--watch/--no-watch", default=None, help="live progress bar (default: on a terminal)")
def status(broadcast_id: int, as_json: bool, watch: bool | None) -> None:
    """Progress of one broadcast: pending / sending / sent / failed / skipped."""
    p = _run(lambda s: progress(s, broadcast_id))
    if as_json:
        click.echo(json.dumps(p.counts))
        return
    if watch is None:
        watch = sys.stdout.isatty()
    if watch and not p.done:
        p = asyncio.run(_watch(broadcast_id))
    _print(p)


def _print(p: Progress) -> None:
    c = p.counts
    state = "已取消" if p.status == "cancelled" else ("已完成" if p.done else "发送中")
    click.echo(f"群发 {p.id}（{p.jurisdiction}，{p.channel}）：{state}；{p.audience}")
    click.echo(
        f"共 {p.total}：已发送 {c['sent']}，待发送 {c['pending']}，发送中 {c['sending']}，"
        f"失败 {c['failed']}，跳过 {c['skipped']}"
    )
    for reason, n in p.errors:
        click.echo(f"  失败原因：{reason} × {n}")


async def _watch(broadcast_id: int) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    async with _session() as session:
        p = await progress(session, broadcast_id)
        with Bar(
            TextColumn("群发 {task.fields[id]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("失败 {task.fields[failed]} 跳过 {task.fields[skipped]}"),
            TimeElapsedColumn(),
        ) as bar:
            task = bar.add_task("", total=p.total, id=p.id, failed=0, skipped=0)
            while True:
                c = p.counts
                bar.update(
                    task,
                    completed=c["sent"] + c["failed"] + c["skipped"],
                    failed=c["failed"],
                    skipped=c["skipped"],
                )
                if p.done:
                    return p
                await asyncio.sleep(0.5)
                session.expire_all()
                p = await progress(session, broadcast_id)


@broadcast.command("cancel")
@click.argument("broadcast_id", type=int)
@click.option("--actor", default="cli", show_default=True)
def cancel_command(broadcast_id: int, actor: str) -> None:
    """Stop a broadcast: what is not sent yet is skipped."""
    n = _run(lambda s: cancel(s, broadcast_id, actor))
    click.echo(f"群发 {broadcast_id} 已取消；{n} 条未发送的消息不再发送")


@broadcast.command("retry-failed")
@click.argument("broadcast_id", type=int)
@click.option("--actor", default="cli", show_default=True)
def retry_failed_command(broadcast_id: int, actor: str) -> None:
    """Queue the failed deliveries of a broadcast again."""
    n = _run(lambda s: retry_failed(s, broadcast_id, actor, SystemClock().now()))
    click.echo(f"群发 {broadcast_id}：{n} 条失败的消息已重新排队")
