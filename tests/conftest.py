"""Fixtures: a real nats-server per test (own port, own temporary store), settings
pointing at it, and in-process engines."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import httpx
import pytest

from contracts.settings import Settings
from contracts.streams import ensure_all
from services.launcher.natsserver import NatsServer
from services.runtime.testing import EventTap, connect_plain, running_engines

# Fast liveness so tests see heartbeats and timeouts within a second.
FAST = {
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 1.0,
    "stop_grace": 0.2,
    "reply_budget": 0.5,
    "control_timeout": 2.0,
    "publish_deadline": 5.0,
}


@pytest.fixture
def nats_server(tmp_path: Path):
    # sync_interval=always like the embedded default: tests exercise what ships
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def settings(nats_server: NatsServer, tmp_path: Path) -> Settings:
    return Settings(nats_url=nats_server.url, data_dir=tmp_path / "data", **FAST)


@pytest.fixture
def settings_env(settings: Settings, nats_server: NatsServer, tmp_path: Path) -> dict[str, str]:
    """Environment for a child process (engine, gateway, CLI) using the same server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOC_") and k != "NATS_URL"}
    env.update(
        NATS_URL=nats_server.url,
        AOC_DATA_DIR=str(tmp_path / "data"),
        AOC_HEARTBEAT_INTERVAL=str(FAST["heartbeat_interval"]),
        AOC_HEARTBEAT_TIMEOUT=str(FAST["heartbeat_timeout"]),
        AOC_STOP_GRACE=str(FAST["stop_grace"]),
        AOC_REPLY_BUDGET=str(FAST["reply_budget"]),
    )
    return env


@pytest.fixture
async def nc(nats_server: NatsServer):
    conn = await connect_plain(nats_server.url)
    yield conn
    await conn.close()


@pytest.fixture
async def tap(nc, settings):
    await ensure_all(nc.jetstream(), settings)  # the tap may start before any service
    tap = await EventTap(nc).start()
    yield tap
    await tap.stop()


@pytest.fixture
async def engines(settings: Settings):
    async with running_engines(settings) as hosts:
        yield hosts


@pytest.fixture
async def live_gateway(settings: Settings):
    """The real gateway app served by uvicorn on a free port; yields its base URL."""
    async with serve_gateway(settings) as url:
        yield url


@contextlib.asynccontextmanager
async def serve_gateway(settings: Settings):
    import uvicorn

    from gateway.app import create_app
    from services.launcher.natsserver import free_port

    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def api_headers() -> dict[str, str]:
    """Headers every test HTTP call sends (credentials once auth is on)."""
    return {}


def api_client(base_url: str, headers: dict[str, str], **kwargs) -> httpx.AsyncClient:
    """The one way tests build an HTTP client for the gateway."""
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10, **kwargs)


@pytest.fixture
async def http(live_gateway: str, api_headers: dict[str, str]):
    async with api_client(live_gateway, api_headers) as client:
        yield client
