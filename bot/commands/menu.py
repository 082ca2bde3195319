"""`donorbot menu push`: create the account's custom menu through the WeChat API."""

from __future__ import annotations

import asyncio

import aiohttp
import click

from bot.errors import DonorbotError
from bot.menu import menu_definition
from bot.settings import Settings, load_settings
from bot.storage import make_storage
from bot.wechat_api import WeChatAPI


@click.group()
def menu() -> None:
    """The account's custom menu."""


@menu.command("push")
@click.option("--jurisdiction", "-j", required=True)
def push(jurisdiction: str) -> None:
    """Create (replace) the custom menu of the jurisdiction's Official Account."""
    settings = load_settings()
    account = settings.jurisdiction(jurisdiction).wechat
    if account is None:
        raise DonorbotError(f"辖区 {jurisdiction} 没有配置公众号")
    asyncio.run(_push(settings, account.appid, account.secret.get_secret_value()))
    click.echo(f"已更新 {jurisdiction} 公众号菜单（约5分钟内对用户生效）")


async def _push(settings: Settings, appid: str, secret: str) -> None:
    storage = make_storage(settings.redis_url, settings.redis_prefix)
    async with aiohttp.ClientSession() as http:
        api = WeChatAPI(
            http, storage, base_url=settings.wechat_api_base, appid=appid, secret=secret
        )
        await api.call("POST", "/cgi-bin/menu/create", json=menu_definition())
    await storage.close()


def register(main: click.Group) -> None:
    main.add_command(menu)
