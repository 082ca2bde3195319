"""CLI commands beyond the service itself, one module per area, each with `register(main)`."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    from bot.commands import broadcast, data, invite, menu, progress, users

    for module in (data, progress, invite, menu, broadcast, users):
        module.register(main)
