"""`donorbot invite`: a one-time code for a unit's liaison or for office staff."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from zoneinfo import ZoneInfo

import click

from bot.binding import NewInvite, create_invite, parse_ttl
from bot.clock import SystemClock
from bot.errors import DonorbotError
from bot.settings import Settings, load_settings
from models.db import create_engine, session_factory
from models.units import Resolution, resolve_unit


@click.command()
@click.option("--jurisdiction", "-j", required=True)
@click.option("--unit", "-u", default=None, help="the unit (required for a liaison)")
@click.option("--role", type=click.Choice(["liaison", "office"]), default="liaison")
@click.option("--ttl", default="7d", show_default=True, help="how long the code stays valid")
@click.option("--actor", default="cli", show_default=True, help="who issues it (audit log)")
def invite(jurisdiction: str, unit: str | None, role: str, ttl: str, actor: str) -> None:
    """Print a new invite code once; the liaison sends 「绑定 <code>」 to the account."""
    settings = load_settings()
    tz = ZoneInfo(settings.jurisdiction(jurisdiction).timezone)
    if role == "liaison" and not unit:
        raise DonorbotError("联络员邀请码必须用 --unit 指定单位")
    new = asyncio.run(_create(settings, jurisdiction, unit, role, parse_ttl(ttl), actor))
    who = f"「{new.unit.name}」联络员" if new.unit else "献血办工作人员"
    click.echo(f"{who}邀请码（只显示这一次）：{new.code}")
    expires = new.expires_at.astimezone(tz)
    click.echo(f"有效期至 {expires:%Y-%m-%d %H:%M}；请向公众号发送「绑定 {new.code}」")


async def _create(
    settings: Settings,
    jurisdiction: str,
    unit_name: str | None,
    role: str,
    ttl: timedelta,
    actor: str,
) -> NewInvite:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            ref = None
            if unit_name:
                found = await resolve_unit(session, jurisdiction, unit_name)
                if found.unit is None:
                    raise DonorbotError(describe_unresolved(found))
                ref = found.unit
            new = await create_invite(
                session,
                settings,
                jurisdiction=jurisdiction,
                role=role,
                unit=ref,
                ttl=ttl,
                actor=actor,
                now=SystemClock().now(),
            )
            await session.commit()
            return new
    finally:
        await engine.dispose()


def describe_unresolved(found: Resolution) -> str:
    """「吉首大学」可能指多个单位… / 找不到…您是不是要找…"""
    if found.choices:
        names = "、".join(c.name for c in found.choices)
        return f"「{found.query}」可能指多个单位：{names}；请写全称"
    hint = "、".join(s.unit.name for s in found.suggestions)
    return f"找不到单位「{found.query}」" + (f"；您是不是要找：{hint}" if hint else "")


def register(main: click.Group) -> None:
    main.add_command(invite)
