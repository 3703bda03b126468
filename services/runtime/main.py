"""The process entry point every engine shares: ``python -m services.<engine>``."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import structlog
import uvloop

from contracts.settings import get_settings
from services.runtime.engine import Engine
from services.runtime.host import EngineHost
from services.runtime.logs import configure_logging
from services.runtime.loops import first_of

# exit status of an instance that lost its lease (EX_TEMPFAIL): the supervisor (or the
# container runtime) starts it again, as a fresh standby
DEPOSED_EXIT = 75


async def serve(engine_cls: type[Engine]) -> int:
    settings = get_settings()
    host = EngineHost(engine_cls(settings), settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await host.open()
    await first_of(stop.wait(), host.deposed.wait())
    reason = "deposed" if host.deposed.is_set() else "signal"
    structlog.get_logger().info("engine.exiting", system=engine_cls.slug, reason=reason)
    await host.close()
    return DEPOSED_EXIT if host.deposed.is_set() else 0


def run_service(main: Coroutine[Any, Any, Any]) -> Any:
    """Run a long-lived service's main coroutine on uvloop, as uvicorn runs the gateway:
    nats-py's reads and writes are most of an engine's own work between decisions, and
    uvloop's transports do them in C (docs/performance.md, "Issue 17, third pass")."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def run(engine_cls: type[Engine]) -> None:
    configure_logging(engine_cls.slug)
    sys.exit(run_service(serve(engine_cls)))
