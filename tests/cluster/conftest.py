"""A 3-node JetStream cluster on loopback for fault tests, and what they need around it.

``nats_cluster`` is three real nats-servers (``aoc-n1..3``): own ports, own stores, routes
to each other with a route password, one cluster name, JetStream's meta leader elected
before the test starts. ``cluster_settings`` points services at all three with 3
replicas. ``EngineProcess`` runs a real engine process attached to one node (its
NATS_URL names only that node; it learns the others from the server and fails over to
them). Helpers read back a whole stream and find a stream's leader, so tests can kill it.

The lease tests (issue 13 b, d) reuse all of this; ``tests/cluster/netns.py`` puts one
member in its own network namespace for a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import ServiceUnavailableError

from contracts.settings import Settings
from contracts.systems import SYSTEMS
from services.launcher.natsserver import NatsCluster
from services.runtime.stream import StoredMessage, replay
from tests.conftest import ADMIN_TOKEN, FAST, SMALL_MODELS

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three plain (no users) nats-servers forming one JetStream cluster, fsync always."""
    cluster = NatsCluster(tmp_path / "cluster", size=3, log_dir=tmp_path / "logs").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def secure_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """The same with the users and subject permissions of `aoc up`."""
    cluster = NatsCluster(tmp_path / "secure-cluster", size=3, secure=True, log_dir=tmp_path / "logs").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_settings(nats_cluster: NatsCluster, tmp_path: Path) -> Settings:
    return Settings(
        nats_url=nats_cluster.url,
        stream_replicas=3,
        data_dir=tmp_path / "data",
        admin_token=ADMIN_TOKEN,
        **FAST,
    )


def child_env(nats_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of an engine or gateway process on the cluster (fast heartbeats)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOC_") and k != "NATS_URL"}
    env.update(
        NATS_URL=nats_url,
        AOC_DATA_DIR=str(data_dir),
        AOC_STREAM_REPLICAS="3",
        AOC_HEARTBEAT_INTERVAL=str(FAST["heartbeat_interval"]),
        AOC_HEARTBEAT_TIMEOUT=str(FAST["heartbeat_timeout"]),
        AOC_STOP_GRACE=str(FAST["stop_grace"]),
        AOC_REPLY_BUDGET=str(FAST["reply_budget"]),
        AOC_ADMIN_TOKEN=ADMIN_TOKEN,
        PYTHONUNBUFFERED="1",
        **SMALL_MODELS,
    )
    env.update(extra)
    return env


async def eventually(
    probe: Callable[[], Awaitable[T]], timeout: float, what: str, interval: float = 0.05
) -> T:
    """The first truthy result of ``probe`` (exceptions count as not yet), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = await probe()
        except Exception as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


async def connect_to(servers: list[str] | str, **options: Any) -> Client:
    """A test client; reconnects forever (a node may be down)."""
    servers = servers.split(",") if isinstance(servers, str) else servers

    async def quiet(_exc: Exception) -> None:
        return None

    return await nats.connect(
        servers=servers, max_reconnect_attempts=-1, reconnect_time_wait=0.1, error_cb=quiet, **options
    )


async def stream_leader(js: JetStreamContext, stream: str) -> str | None:
    info = await js.stream_info(stream)
    return info.cluster.leader if info.cluster else None


async def read_stream(js: JetStreamContext, subject: str, timeout: float = 60.0) -> list[tuple[int, Any]]:
    """Every message of the stream holding ``subject``, as (stream sequence, message with
    ``data``), in order: read with the runtime's own ``replay``, which ends at the stream
    leader's newest sequence (a consumer placed on a replica still catching up after a
    heal or a restart would otherwise end early). A JetStream API call that times out
    while the cluster elects a leader is tried again from the start, within ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got: list[tuple[int, Any]] = []

        def keep(seq: int, data: bytes, at: Any, got: list[tuple[int, Any]] = got) -> None:
            got.append((seq, StoredMessage(seq, data, at, None)))

        try:
            await replay(
                js,
                subject,
                keep,
                timeout=max(deadline - asyncio.get_running_loop().time(), 1.0),
            )
            return got
        except (NatsTimeoutError, ServiceUnavailableError):
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(0.5)


@dataclass
class EngineProcess:
    """A real engine process (``python -m services.<module>``) with its own log file."""

    slug: str
    env: dict[str, str]
    log_file: Path
    command_prefix: tuple[str, ...] = ()  # e.g. IsolatedHost.exec_prefix: run it in a namespace
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> EngineProcess:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [*self.command_prefix, sys.executable, "-m", f"services.{SYSTEMS[self.slug].module}"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


async def answers(nc: Client, slug: str, timeout: float = 1.0) -> bool:
    """True when an instance of ``slug`` answers a status command."""
    reply = await nc.request(f"aoc.ctl.{slug}.status", b"", timeout=timeout)
    return b'"ok":true' in reply.data


@contextlib.asynccontextmanager
async def engine_processes(
    nc: Client, engines: list[EngineProcess], timeout: float = 90.0
) -> AsyncIterator[list[EngineProcess]]:
    """Start the engine processes, wait until each answers commands, stop them all after."""
    try:
        for engine in engines:
            engine.start()
        for engine in engines:
            await eventually(lambda e=engine: answers(nc, e.slug), timeout, f"{engine.slug} to answer")
        yield engines
    finally:
        for engine in engines:
            engine.stop()


@dataclass
class GatewayProcess:
    """A real gateway process (``python -m gateway``) on a free port."""

    env: dict[str, str]
    log_file: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayProcess:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "AOC_HTTP_PORT": str(self.port)}
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def gateway_caught_up(http: Any, last_seq: int) -> dict[str, Any] | None:
    """/health/details once the gateway has replayed up to ``last_seq`` with no lag."""
    details = (await http.get("/health/details", headers=auth())).json()
    projection = details.get("projection", {})
    caught_up = projection.get("applied_seq", 0) >= last_seq and not projection.get("lag")
    if projection.get("replayed") and caught_up:
        return details
    return None


async def activity_log(http: Any) -> list[dict[str, Any]]:
    """Every row of the gateway's activity log, newest first, paged by its cursor."""
    rows: list[dict[str, Any]] = []
    before = None
    while True:
        params = {"limit": 1000, **({"before": before} if before else {})}
        page = (await http.get("/api/v1/admin/activity-log", params=params, headers=auth())).json()
        rows += page["events"]
        before = page["next_before"]
        if before is None:
            return rows
