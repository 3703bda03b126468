"""The process entry point every engine shares: ``python -m services.<engine>``."""

from __future__ import annotations

import asyncio
import signal

import structlog

from contracts.settings import get_settings
from services.runtime.engine import Engine
from services.runtime.host import EngineHost
from services.runtime.logs import configure_logging


async def serve(engine_cls: type[Engine]) -> None:
    settings = get_settings()
    host = EngineHost(engine_cls(settings), settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await host.open()
    await stop.wait()
    structlog.get_logger().info("engine.exiting", system=engine_cls.slug)
    await host.close()


def run(engine_cls: type[Engine]) -> None:
    configure_logging(engine_cls.slug)
    asyncio.run(serve(engine_cls))
