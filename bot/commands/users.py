"""`donorbot user create`: an office console account."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.console.security import ROLES, ConsoleError, hash_password
from bot.errors import DonorbotError
from bot.settings import Settings, load_settings
from models.audit import audit
from models.console import ConsoleUser


def register(main: click.Group) -> None:
    main.add_command(user)


@click.group()
def user() -> None:
    """Office console accounts."""


@user.command("create")
@click.option("--jurisdiction", "-j", default=None, help="required for an office user")
@click.option("--role", type=click.Choice(ROLES), default="office", show_default=True)
@click.option("--username", required=True)
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="read the password from this file (first line) instead of prompting",
)
@click.option("--actor", default="cli", show_default=True, help="who creates it (audit log)")
def create(
    jurisdiction: str | None, role: str, username: str, password_file: Path | None, actor: str
) -> None:
    """Create a console account (the password is prompted for, never echoed)."""
    settings = load_settings()
    if role == "office":
        if not jurisdiction:
            raise DonorbotError("献血办账号必须用 --jurisdiction 指定辖区")
        settings.jurisdiction(jurisdiction)  # a clear error for an unknown one
    elif jurisdiction:
        raise DonorbotError("管理员可查看所有辖区，不要指定 --jurisdiction")
    username = username.strip()
    if not username or len(username) > 64 or not username.isprintable():
        raise DonorbotError("用户名不能为空，且不超过 64 个字符")
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
    else:
        password = click.prompt("密码", hide_input=True, confirmation_prompt="再输入一次")
    try:
        hashed = hash_password(password)
    except ConsoleError as exc:
        raise DonorbotError(str(exc)) from None
    asyncio.run(_store(settings, username, hashed, role, jurisdiction, actor))
    where = f"辖区 {jurisdiction}" if jurisdiction else "所有辖区"
    click.echo(
        f"已创建控制台账号 {username}（{'管理员' if role == 'admin' else '献血办'}，{where}）"
    )


async def _store(
    settings: Settings, username: str, hashed: str, role: str, jurisdiction: str | None, actor: str
) -> None:
    from models.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as s:
            if await s.scalar(select(ConsoleUser.id).where(ConsoleUser.username == username)):
                raise DonorbotError(f"用户名 {username} 已存在")
            s.add(
                ConsoleUser(
                    username=username, password_hash=hashed, role=role, jurisdiction=jurisdiction
                )
            )
            audit(s, actor, "console.user_create", jurisdiction, username=username, role=role)
            try:
                await s.commit()
            except IntegrityError:
                raise DonorbotError(f"用户名 {username} 已存在") from None
    finally:
        await engine.dispose()
