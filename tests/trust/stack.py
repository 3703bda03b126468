"""The whole stack as real processes for the trust tests: a nats-server, the seven
engines and the gateway (uvicorn), each its own process — what `aoc up` runs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from contracts.identity import Role
from contracts.settings import Settings
from contracts.systems import SYSTEMS
from services.launcher.natsserver import NatsServer, free_port
from services.shared.tokens import TokenStore
from tests.conftest import ADMIN_TOKEN, FAST, SMALL_MODELS


@dataclass
class Stack:
    url: str
    nats_url: str
    env: dict[str, str]
    roles: dict[str, dict[str, str]]  # role -> headers
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)


def stack_env(nats_url: str, data_dir: Path, http_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOC_") and k != "NATS_URL"}
    env.update(
        NATS_URL=nats_url,
        AOC_DATA_DIR=str(data_dir),
        AOC_HTTP_PORT=str(http_port),
        AOC_HEARTBEAT_INTERVAL=str(FAST["heartbeat_interval"]),
        AOC_HEARTBEAT_TIMEOUT=str(FAST["heartbeat_timeout"]),
        AOC_STOP_GRACE=str(FAST["stop_grace"]),
        AOC_REPLY_BUDGET=str(FAST["reply_budget"]),
        AOC_ADMIN_TOKEN=ADMIN_TOKEN,
        AOC_TOKEN=ADMIN_TOKEN,
        **SMALL_MODELS,
        **extra,
    )
    return env


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(url: str, headers: dict[str, str], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            board = httpx.get(f"{url}/api/v1/admin/dashboard", headers=headers, timeout=2).json()
            if all(s["state"] == "running" for s in board["systems"].values()):
                return
        time.sleep(0.3)
    raise AssertionError(f"the stack at {url} did not come up within {timeout:g}s")


@contextlib.contextmanager
def running_stack(root: Path, **extra_env: str) -> Iterator[Stack]:
    server = NatsServer(root / "nats").start()
    data_dir = root / "data"
    port = free_port()
    env = stack_env(server.url, data_dir, port, **extra_env)
    store = TokenStore(Settings(data_dir=data_dir).effective_api_tokens_file)
    roles = {
        "admin": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
        "operator": {"Authorization": f"Bearer {store.create('oscar', Role.OPERATOR, created_by='test')}"},
        "viewer": {"Authorization": f"Bearer {store.create('vera', Role.VIEWER, created_by='test')}"},
    }
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(f"http://127.0.0.1:{port}", server.url, env, roles, logs)
    try:
        for slug, info in SYSTEMS.items():
            stack.processes[slug] = start(
                [sys.executable, "-m", f"services.{info.module}"], env, logs / f"{slug}.log"
            )
        stack.processes["gateway"] = start([sys.executable, "-m", "gateway"], env, logs / "gateway.log")
        wait_healthy(stack.url, roles["admin"])
        yield stack
    finally:
        for process in stack.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in stack.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        server.stop()
