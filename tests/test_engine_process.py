"""Engines as real processes (`python -m services.<engine>`): desired state survives
kill -9, and a dead engine shows as unreachable."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import httpx

from contracts.commands import reply_decoder
from tests.conftest import api_client

API = "/api/v1/admin"


def spawn(module: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{module}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def status(nc, slug: str, timeout: float = 15.0):
    """The engine's status once it answers (a fresh process needs a moment)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return reply_decoder.decode((await nc.request(f"aoc.ctl.{slug}.status", b"", timeout=1)).data)
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def running(nc, slug: str, timeout: float = 15.0):
    """The status once the engine is active and running (it answers 'activating' while it
    rebuilds after taking its lease)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        reply = await status(nc, slug, timeout)
        if reply.state == "running" or asyncio.get_running_loop().time() > deadline:
            return reply
        await asyncio.sleep(0.1)


def kill9(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(5)


async def test_operator_stop_survives_kill_9_until_someone_starts_it(settings_env, nc):
    engine = spawn("deploy", settings_env)
    try:
        assert (await running(nc, "deploy")).state == "running"
        await nc.request("aoc.ctl.deploy.stop", b'{"actor":"alice","reason":"maintenance"}', timeout=2)
        kill9(engine)

        engine = spawn("deploy", settings_env)
        revived = await status(nc, "deploy")
        assert (revived.state, revived.desired) == ("stopped", "stopped")

        started = reply_decoder.decode((await nc.request("aoc.ctl.deploy.start", b"", timeout=2)).data)
        assert started.state == "running", started
        kill9(engine)

        engine = spawn("deploy", settings_env)
        assert (await running(nc, "deploy")).state == "running"  # and a running one comes back running
    finally:
        engine.kill()
        engine.wait(5)


async def test_killed_engine_turns_unreachable_on_the_dashboard(settings_env, http, nc):
    engine = spawn("soc", settings_env)
    try:
        await status(nc, "soc-cycle")

        async def state() -> str:
            return (await http.get(f"{API}/dashboard")).json()["systems"]["soc-cycle"]["state"]

        async def until(expected: str) -> None:
            while await state() != expected:
                await asyncio.sleep(0.1)

        await asyncio.wait_for(until("running"), 10)
        kill9(engine)
        await asyncio.wait_for(until("unreachable"), 10)  # heartbeat_timeout is 1 s in tests
        board = (await http.get(f"{API}/dashboard")).json()
        assert board["emergency_mode"] is True
        assert board["systems"]["soc-cycle"]["running"] is False
        assert board["systems"]["soc-cycle"]["heartbeat_age_seconds"] >= 1.0
    finally:
        engine.kill()
        engine.wait(5)


async def test_sigterm_is_a_clean_exit_that_keeps_desired_state(settings_env, nc):
    engine = spawn("advisory", settings_env)
    await status(nc, "advisory-refresh")
    engine.send_signal(signal.SIGTERM)
    assert engine.wait(10) == 0, engine.stderr.read().decode()[-2000:]
    engine = spawn("advisory", settings_env)
    try:
        assert (await running(nc, "advisory-refresh")).state == "running"
    finally:
        engine.kill()
        engine.wait(5)


async def test_gateway_process_serves_the_dashboard(settings_env, api_headers):
    from services.launcher.natsserver import free_port

    port = free_port()
    env = {**settings_env, "AOC_HTTP_PORT": str(port)}
    gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stderr=subprocess.PIPE)
    try:
        async with api_client(f"http://127.0.0.1:{port}", api_headers) as client:
            for _ in range(200):
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            board = (await client.get(f"{API}/dashboard")).json()
            assert len(board["systems"]) == 7 and board["emergency_mode"] is True  # no engines yet
    finally:
        gateway.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert gateway.wait(10) in (0, -signal.SIGTERM)
        assert b"Traceback" not in gateway.stderr.read()
