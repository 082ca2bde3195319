"""Every console page, one module per area, each with `register(app)`."""

from __future__ import annotations

from aiohttp import web

from bot.console import (
    page_audit,
    page_auth,
    page_broadcasts,
    page_dashboard,
    page_imports,
    page_liaisons,
    page_templates,
)

AREAS = (
    page_auth,
    page_audit,
    page_dashboard,
    page_broadcasts,
    page_templates,
    page_imports,
    page_liaisons,
)


def register(app: web.Application) -> None:
    for area in AREAS:
        area.register(app)
