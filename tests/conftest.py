"""Fixtures: a real nats-server per test (own port, own temporary store), settings
pointing at it, and in-process engines.

Credentials live here and nowhere else: every gateway a test starts accepts
ADMIN_TOKEN (identity ``admin``), and every HTTP client built with ``api_client`` /
``api_headers`` sends it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import httpx
import pytest
import structlog

from contracts.settings import Settings
from contracts.streams import ensure_all
from services.launcher.natsserver import NatsServer
from services.runtime.testing import EventTap, connect_plain, running_engines, settled

# In-process engines log like the real ones, but to stderr: stdout is what the CLI tests read.
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

ADMIN_TOKEN = "aoc_test-suite-admin-token-not-a-secret-0000000000"
ADMIN_ACTOR = "admin"  # the actor the gateway records for ADMIN_TOKEN

# Fast liveness so tests see heartbeats and timeouts within a second.
FAST = {
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 1.0,
    "stop_grace": 0.2,
    "reply_budget": 0.5,
    "control_timeout": 2.0,
    "publish_deadline": 5.0,
}


# The ML engine trains real models at start; small ones (well under a second) keep the
# suite quick wherever an ML engine runs. tests/soc checks what the models learn.
SMALL_MODELS = {
    "AOC_ML_BOOTSTRAP_SAMPLES": "600",
    "AOC_ML_HOLDOUT_SAMPLES": "400",
    "AOC_ML_CLASSIFIER_TREES": "25",
    "AOC_ML_CLASSIFIER_DEPTH": "10",
    "AOC_ML_ANOMALY_TREES": "25",
    "AOC_ML_SCORER_TREES": "30",
    "AOC_ML_FETCH_WAIT": "0.1",
}


@pytest.fixture(scope="session", autouse=True)
def _test_environment():
    """Any Settings() a test builds (and so any gateway) knows the admin token; the aoc
    CLI run in-process sends it; ML engines train small models."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AOC_ADMIN_TOKEN", ADMIN_TOKEN)
        env.setenv("AOC_TOKEN", ADMIN_TOKEN)
        for name, value in SMALL_MODELS.items():
            env.setenv(name, value)
        yield


@pytest.fixture
def nats_server(tmp_path: Path):
    # sync_interval=always like the embedded default: tests exercise what ships
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def settings(nats_server: NatsServer, tmp_path: Path) -> Settings:
    return Settings(nats_url=nats_server.url, data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, **FAST)


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
        AOC_ADMIN_TOKEN=ADMIN_TOKEN,  # a gateway child accepts it
        AOC_TOKEN=ADMIN_TOKEN,  # an aoc CLI child sends it
        # one instance of each engine with a stable id, as `aoc up` runs them: a restarted
        # process takes over its predecessor's lease at once
        AOC_INSTANCE_ID="test-1",
        **SMALL_MODELS,
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
    """All seven engines in-process, past their start-up work (first cycles, the first
    triage model trained and loaded), so a test sees only the events it caused."""
    async with running_engines(settings) as hosts:
        await settled(hosts, lambda: models_loaded(hosts))
        yield hosts


def models_loaded(hosts) -> bool:
    """ml-retrain has an active triage model and soc-cycle scores with it."""
    active = hosts["ml-retrain"].engine.status_extras()["active_version"]
    return active is not None and hosts["soc-cycle"].engine.status_extras()["model_version"] == active


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
    """Headers every test HTTP call sends: the admin's bearer token."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def api_client(base_url: str, headers: dict[str, str], **kwargs) -> httpx.AsyncClient:
    """The one way tests build an HTTP client for the gateway."""
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10, **kwargs)


@pytest.fixture
async def http(live_gateway: str, api_headers: dict[str, str]):
    async with api_client(live_gateway, api_headers) as client:
        yield client
