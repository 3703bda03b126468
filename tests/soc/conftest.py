"""Fixtures for the SOC and ML engines: small models (trained in well under a second),
fast loops, and helpers that read decisions out of the event stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from contracts import soc
from contracts.events import Envelope
from contracts.settings import Settings
from services.runtime.testing import EventTap, running_engines
from tests.conftest import SMALL_MODELS
from tests.security.conftest import secure_nats, secure_settings  # noqa: F401  (fixtures for SOC tests)

FAST_SOC = {"AOC_SOC_FETCH_WAIT": "0.1", "AOC_SOC_ACK_WAIT": "2"}
FAST_LOOPS = {
    "soc-cycle.triage": 0.02,
    "soc-cycle.escalation": 0.2,
    "soc-cycle.soar": 0.2,
    "soc-cycle.hunting": 3600.0,  # tests trigger hunts themselves
    "ml-retrain.retrain": 0.1,
    "ml-retrain.feedback": 0.05,
}


@pytest.fixture(autouse=True)
def soc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**SMALL_MODELS, **FAST_SOC}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def soc_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"schedules": {**FAST_LOOPS}})


async def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def decisions_of(event: Envelope) -> list[soc.Decision]:
    return msgspec.json.decode(event.data, type=soc.AlertsTriaged).decisions


def decided(tap: EventTap) -> dict[str, list[soc.Decision]]:
    """alert id -> every decision the stream holds for it."""
    found: dict[str, list[soc.Decision]] = {}
    for event in tap.matching(lambda e: e.type == soc.AlertsTriaged.TYPE):
        for decision in decisions_of(event):
            found.setdefault(decision.alert.id, []).append(decision)
    return found


def payload(event: Envelope, kind: type[msgspec.Struct]) -> Any:
    return msgspec.json.decode(event.data, type=kind)


@pytest.fixture
async def soc_stack(soc_settings: Settings):
    """ml-retrain and soc-cycle in-process; yields once the SOC scores with model v1."""
    async with running_engines(soc_settings, ["ml-retrain", "soc-cycle"]) as hosts:
        await wait_until(lambda: hosts["soc-cycle"].engine.bundle is not None, timeout=30)
        yield hosts
