"""`donorbot chat`: a REPL that talks to the webhook exactly as WeChat does.

Without `--url` it starts the app and a fake WeChat API in this process, so a reply
that arrives late through the customer-service API is shown too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import click
from aiohttp import web

from bot.channels import build_channels
from bot.settings import Settings
from bot.simulator import Simulator, text_xml

LATE_WAIT = 8.0


@contextlib.asynccontextmanager
async def _in_process(settings: Settings) -> AsyncIterator[tuple[str, object]]:
    from bot.app import create_app
    from bot.cli import _fake_accounts
    from bot.fake_wechat import FakeWeChat, create_fake_app

    accounts, _, wecom = _fake_accounts(settings)
    fake = FakeWeChat(accounts, None, wecom, enforce_window=False)
    fake_runner = web.AppRunner(create_fake_app(fake))
    await fake_runner.setup()
    fake_site = web.TCPSite(fake_runner, "127.0.0.1", 0)
    await fake_site.start()
    fake_port = fake_runner.addresses[0][1]
    base = f"http://127.0.0.1:{fake_port}"
    local = settings.model_copy(update={"wechat_api_base": base, "wecom_api_base": base})
    runner = web.AppRunner(create_app(local))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", fake
    finally:
        await runner.cleanup()
        await fake_runner.cleanup()


async def _exchange(
    http: aiohttp.ClientSession,
    url: str,
    sim: Simulator,
    openid: str,
    text: str,
    fake: object | None,
) -> str:
    seen = len(getattr(fake, "messages", []))
    query, body = sim.request(text_xml(openid, text, to=sim.channel.app_id))
    async with http.post(url + sim.path, params=query, data=body) as resp:
        raw = await resp.read()
        if resp.status != 200:
            return f"[HTTP {resp.status}] {raw.decode(errors='replace')}"
    reply = sim.open_reply(raw)
    if reply is not None:
        return str(reply.get("Content", ""))
    if fake is None:
        return "[success: 回复将通过客服消息稍后送达]"
    deadline = time.monotonic() + LATE_WAIT
    while time.monotonic() < deadline:
        late = [m for m in fake.messages[seen:] if m["touser"] == openid]  # type: ignore[attr-defined]
        if late:
            return "\n".join(str(m["content"]) for m in late) + "\n[通过客服消息送达]"
        await asyncio.sleep(0.1)
    return "[无回复]"


async def run_chat(
    settings: Settings,
    jurisdiction: str,
    openid: str,
    url: str | None,
    say: str | None,
    wecom: bool,
) -> int:
    channel = build_channels(settings).get(("wecom" if wecom else "mp", jurisdiction))
    if channel is None:
        click.secho(
            f"辖区 {jurisdiction} 没有配置{'企业微信应用' if wecom else '公众号'}", fg="red"
        )
        return 2
    sim = Simulator(channel)
    async with contextlib.AsyncExitStack() as stack:
        fake = None
        if url is None:
            target, fake = await stack.enter_async_context(_in_process(settings))
        else:
            target = url
        http = await stack.enter_async_context(aiohttp.ClientSession())
        if say is not None:
            click.echo(await _exchange(http, target, sim, openid, say, fake))
            return 0
        click.echo(f"与 {channel.name} 对话（{channel.kind}，{channel.mode} 模式）。Ctrl-D 退出。")
        while True:
            try:
                line = await asyncio.to_thread(input, "你> ")
            except (EOFError, KeyboardInterrupt):
                click.echo()
                return 0
            if line.strip():
                click.echo("助手> " + (await _exchange(http, target, sim, openid, line, fake)))
