"""Fixtures for heal-check: the engine in-process with short thresholds, engines that
stall on purpose, and a stand-in for ml-retrain's model probe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from contracts.ml import PROBE_SUBJECT, ProbeReply
from contracts.settings import Settings
from services.healing.config import HealingSettings
from services.healing.engine import HealingEngine
from services.runtime import CycleOutcome, Engine, Loop
from services.runtime.bus import barrier
from services.runtime.host import EngineHost

HOUR = 3600


def healing_config(**overrides: Any) -> HealingSettings:
    values: dict[str, Any] = {
        "watched": ["deploy"],
        "check_timeout": 0.5,
        "startup_grace": 0.0,
        "stall_factor": 1.0,
        "stall_floor": 0.3,
        "divergence_grace": 0.3,
        "verify_after": 0.3,
        "supervisor_grace": 0.5,
        "breaker_threshold": 2,
        "breaker_cooldown": 1.0,
        **overrides,
    }
    return HealingSettings(**values)


@contextlib.asynccontextmanager
async def healer(settings: Settings, config: HealingSettings):
    """heal-check whose loops run once at start and then wait an hour: the test drives
    its cycles (watch_engines, remediate, ...) itself, so nothing depends on timing."""
    schedules = {
        f"heal-check.{loop}": HOUR
        for loop in ("heartbeat_watch", "subsystem_checks", "remediation", "report")
    }
    settings = settings.model_copy(update={"schedules": schedules})
    host = EngineHost(HealingEngine(settings, config), settings)
    await host.open()
    try:
        await until(lambda: len(host.loops.last_run) == 4, what="heal-check's first cycles")
        yield host
    finally:
        await host.close()


async def until(condition: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition", step=None):
    """Poll ``condition`` (optionally running ``step`` between polls) until it holds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                value = condition()
                if value:
                    return value
                if step is not None:
                    await step()
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}") from None


class StallingDeploy(Engine):
    """A deploy engine whose watch loop hangs on its first ``hang_times`` cycles — what a
    stuck subprocess or a lost lock looks like from outside: heartbeats keep coming, no
    cycle completes."""

    slug = "deploy"

    def __init__(self, settings: Settings, hang_times: int = 10**9) -> None:
        super().__init__(settings)
        self.hang_times = hang_times
        self.cycles_started = 0

    def loops(self) -> list[Loop]:
        return [Loop("watch", 0.05, self.watch, primary=True)]

    async def watch(self) -> CycleOutcome:
        self.cycles_started += 1
        if self.cycles_started <= self.hang_times:
            await asyncio.Event().wait()  # never set
        return CycleOutcome(detail="watched", quiet=True)


@contextlib.asynccontextmanager
async def stalling_deploy(settings: Settings, hang_times: int = 10**9):
    host = EngineHost(StallingDeploy(settings, hang_times), settings)
    await host.open()
    try:
        yield host
    finally:
        await host.close()


@contextlib.asynccontextmanager
async def model_probe(nc, answer: Callable[[], Awaitable[ProbeReply]] | ProbeReply):
    """A stand-in for ml-retrain answering ``aoc.ml.probe``."""

    async def respond(msg) -> None:
        reply = answer if isinstance(answer, ProbeReply) else await answer()
        await msg.respond(msgspec.json.encode(reply))

    sub = await nc.subscribe(PROBE_SUBJECT, cb=respond)
    await barrier(nc)  # answering before heal-check asks on its own connection
    try:
        yield
    finally:
        await sub.unsubscribe()


@pytest.fixture
def good_model() -> ProbeReply:
    return ProbeReply(
        ok=True, version="2024.11.20-1", scores={"alert_classifier": 0.91, "threat_scorer": 0.77}
    )
