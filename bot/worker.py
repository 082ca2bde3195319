"""`donorbot worker`: the outbox worker as its own process (scale-out mode)."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from bot.app import OUTBOX, create_app, redispatcher, sender
from bot.outbox import run_worker
from bot.settings import Settings


async def run_standalone_worker(settings: Settings) -> None:
    """Builds the same app (without serving HTTP) and runs its outbox worker until SIGTERM."""
    app = create_app(settings, embedded_worker=False)
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts: database, storage, API clients
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        from bot.app import CHANNELS

        await run_worker(app[OUTBOX], app[CHANNELS], sender(app), redispatcher(app), stop)
    finally:
        await runner.cleanup()
