"""Fixtures of the factory line: the three engines and the gateway on a real nats-server,
with their schedules pushed out of the way so each test drives the work itself."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.factory.catalog import TEMPLATES
from contracts.settings import Settings
from services.runtime.host import EngineHost
from services.runtime.testing import running_engines
from tests.conftest import api_client, serve_gateway

FACTORY_ENV = (
    "AOC_FRONTEND_ROOT",
    "AOC_RELEASES_DIR",
    "AOC_DEPLOY_COMMAND",
    "AOC_DEPLOY_TIMEOUT",
    "AOC_RELEASES_KEEP",
    "AOC_DEPLOY_BUILD",
    "AOC_FRONTEND_NODE_MODULES",
)
LINE = ["frontend-factory", "deploy", "integrity-scan"]
API = "/api/v1/factory"


@pytest.fixture(autouse=True)
def _no_factory_env(monkeypatch):
    """The factory line reads its own variables; a developer's shell must not leak in."""
    for name in FACTORY_ENV:
        monkeypatch.delenv(name, raising=False)
    # the built-in next build is tested where it is the point (test_next_build.py); the
    # line's other tests release trees without building them
    monkeypatch.setenv("AOC_DEPLOY_BUILD", "never")


def example(template: str = "data_table", **changes: Any) -> dict[str, Any]:
    """A template's example submission (a deep copy), with top-level changes."""
    body = copy.deepcopy(TEMPLATES[template].example_config)
    body.update(changes)
    return body


@pytest.fixture
def line_settings(settings: Settings) -> Settings:
    # schedules far away: the tests trigger cycles; nothing runs behind their back
    schedules = {"frontend-factory.queue": 3600, "integrity-scan.scan": 3600, "deploy.watch": 3600}
    return settings.model_copy(update={"schedules": schedules})


@dataclass
class Line:
    settings: Settings
    hosts: dict[str, EngineHost]
    http: httpx.AsyncClient

    @property
    def frontend(self) -> Path:
        return self.hosts["frontend-factory"].engine.tree.root  # type: ignore[attr-defined]

    @property
    def releases(self) -> Path:
        return self.hosts["deploy"].engine.store.root  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def factory_line(settings: Settings, headers: dict[str, str], slugs: list[str] | None = None):
    # the gateway first: the integrity scan asks it for its routes as soon as it runs
    async with (
        serve_gateway(settings) as url,
        api_client(url, headers) as http,
        running_engines(settings, slugs or LINE) as hosts,
    ):
        yield Line(settings, hosts, http)


@pytest.fixture
async def line(line_settings: Settings, api_headers: dict[str, str]):
    async with factory_line(line_settings, api_headers, ["frontend-factory", "deploy"]) as running:
        yield running


async def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an (async or plain) check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout:g} s (last: {result!r})")
        await asyncio.sleep(interval)
