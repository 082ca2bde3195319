"""Operations: graceful shutdown, JSON logs with a request id and without personal data."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from bot.app import CHANNELS, create_app
from bot.dispatcher import Router, build_dispatcher
from bot.filters import Text
from bot.logs import setup_logging
from bot.simulator import Simulator, text_xml
from models.migrate import upgrade
from tests.conftest import account_settings


async def test_shutdown_finishes_the_message_in_flight(sqlite_url: str, clock: Any) -> None:
    await asyncio.to_thread(upgrade, sqlite_url)
    router = Router(name="slow")

    @router.message(Text("慢"))
    async def slow() -> str:
        await asyncio.sleep(0.5)
        return "处理完了"

    dispatcher = build_dispatcher()
    dispatcher.include(router, first=True)
    app = create_app(
        account_settings(sqlite_url, "http://127.0.0.1:9"), clock=clock, dispatcher=dispatcher
    )
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sim = Simulator(app[CHANNELS][("mp", "zhangjiajie")], now=clock.timestamp)
    query, body = sim.request(text_xml("o1", "慢"))
    async with aiohttp.ClientSession() as http:
        pending = asyncio.ensure_future(
            http.post(f"http://127.0.0.1:{port}{sim.path}", params=query, data=body)
        )
        await asyncio.sleep(0.15)  # the handler is running now
        await runner.cleanup()  # SIGTERM does this
        resp = await pending
        reply = sim.open_reply(await resp.read())
    assert resp.status == 200 and reply is not None and reply["Content"] == "处理完了"


async def test_log_lines_are_json_with_a_request_id_and_no_openid(make_bot: Any) -> None:
    stream = io.StringIO()
    setup_logging("INFO", json_lines=True)
    root = logging.getLogger()
    handler = root.handlers[0]
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        bot = await make_bot()
        query, body = bot.sim("rugao").request(b"<xml>broken")
        resp = await bot.client.post(
            "/wechat/rugao", params=query, data=body, headers={"X-Request-Id": "req-abc"}
        )
        assert resp.status == 400
        await bot.say("rugao", "你好", openid="o_secret_openid")
    finally:
        root.handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    refused = [rec for rec in lines if rec["message"] == "bad message refused"]
    assert refused and refused[0]["request_id"] == "req-abc" and refused[0]["level"] == "INFO"
    assert "o_secret_openid" not in stream.getvalue()
