"""`donorbot worker`: the outbox and broadcast workers as their own process (scale-out)."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from bot.app import create_app, run_workers
from bot.settings import Settings


async def run_standalone_worker(settings: Settings) -> None:
    """Builds the same app (without serving HTTP) and runs its workers until SIGTERM."""
    app = create_app(settings, embedded_worker=False)
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts: database, storage, API clients
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_workers(app, stop)
    finally:
        await runner.cleanup()
