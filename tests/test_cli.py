"""The control CLI (`aoc status|trigger|stop|start|restart`) against a live gateway.

The engines run in-process, the gateway is the real `python -m gateway` process, and
the CLI runs in a worker thread (its HTTP calls block, while the engines need this
event loop to answer the gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from contracts.events import command_of
from contracts.systems import SYSTEMS
from services.launcher import cli
from services.launcher.natsserver import free_port
from tests.conftest import ADMIN_ACTOR, ADMIN_TOKEN


def start_gateway(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        argv = [sys.executable, "-m", "gateway"]
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_gateway(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
async def gateway(engines, settings_env, tmp_path, monkeypatch):
    """A gateway process on a free port; the CLI is pointed at it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_gateway({**settings_env, "AOC_HTTP_PORT": str(port)}, tmp_path / "gateway.log")
    try:
        await wait_for_gateway(base, process)
        monkeypatch.setenv("AOC_GATEWAY_URL", base)
        yield base
    finally:
        await asyncio.to_thread(stop_gateway, process)


async def wait_for_gateway(base: str, process: subprocess.Popen[bytes]) -> None:
    """Healthy, and every engine's heartbeat seen, so the dashboard is complete."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=2, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the gateway exited; see gateway.log"
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base}/health")).status_code == 200:
                    systems = (await client.get(f"{base}/api/v1/admin/dashboard")).json()["systems"]
                    if all(system["state"] == "running" for system in systems.values()):
                        return
            await asyncio.sleep(0.2)
    raise AssertionError("gateway not ready within 30 s")


async def aoc(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_status_table_and_json(gateway, capsys):
    code, out, _ = await aoc(capsys, "status")
    assert code == 0
    header, *rows = out.strip().splitlines()
    assert header.split() == ["SYSTEM", "STATE", "LAST", "RUN", "ERRORS", "SUCCESS", "%", "HEARTBEAT"]
    assert {row.split()[0]: row.split()[1] for row in rows} == dict.fromkeys(SYSTEMS, "running")

    code, out, _ = await aoc(capsys, "status", "--json")
    assert code == 0 and set(json.loads(out)["systems"]) == set(SYSTEMS)


async def test_single_system_commands(gateway, capsys, tap):
    code, out, _ = await aoc(capsys, "stop", "soc-cycle", "--reason", "maintenance window")
    assert code == 0 and out.startswith("ok") and "soc-cycle" in out and "stopped" in out
    # the actor is whose token the CLI sent, not a name it claims
    audited = await tap.wait_for(lambda e: command_of(e) is not None and e.actor == ADMIN_ACTOR)
    assert command_of(audited).reason == "maintenance window" and audited.system == "soc-cycle"

    # a stopped engine refuses a trigger: one FAILED line, exit 1
    code, out, _ = await aoc(capsys, "trigger", "soc-cycle")
    assert code == 1 and out.startswith("FAILED") and "soc-cycle" in out

    code, out, _ = await aoc(capsys, "start", "soc-cycle")
    assert code == 0 and "running" in out
    code, out, _ = await aoc(capsys, "restart", "soc-cycle")
    assert code == 0 and "restarted" in out
    code, out, _ = await aoc(capsys, "trigger", "soc-cycle")
    assert code == 0 and out.startswith("ok      soc-cycle:")


async def test_all_commands_print_one_line_per_system(gateway, capsys):
    for verb in ("stop", "start", "restart", "trigger"):
        code, out, err = await aoc(capsys, verb, "all", "--reason", "drill")
        lines = out.strip().splitlines()
        assert code == 0, (verb, out, err)
        assert sorted(line.split()[1].rstrip(":") for line in lines) == sorted(SYSTEMS), (verb, out)
        assert all(line.startswith("ok") for line in lines), (verb, out)

    await aoc(capsys, "stop", "deploy")
    code, out, _ = await aoc(capsys, "trigger", "all")
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert code == 1 and len(failed) == 1 and "deploy" in failed[0]


async def test_unreachable_gateway_and_unknown_system(capsys, monkeypatch):
    monkeypatch.setenv("AOC_GATEWAY_URL", f"http://127.0.0.1:{free_port()}")
    code, _, err = await aoc(capsys, "status")
    assert code == 1 and "cannot reach the gateway" in err
    code, _, err = await aoc(capsys, "stop", "soc-cycle")
    assert code == 1 and "cannot reach the gateway" in err

    with pytest.raises(SystemExit) as usage:
        cli.main(["stop", "no-such-system"])
    assert usage.value.code == 2 and "unknown system 'no-such-system'" in capsys.readouterr().err


def test_status_table_formatting():
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    dashboard = {
        "emergency_mode": True,
        "systems": {
            "soc-cycle": {
                "state": "stopped",
                "last_run": (now - timedelta(minutes=5)).isoformat(),
                "error_count": 2,
                "success_rate": 97.5,
                "last_heartbeat": (now - timedelta(seconds=1.5)).isoformat(),
            },
            "deploy": {"state": "unreachable", "last_run": None, "error_count": 0, "success_rate": 100.0},
        },
    }
    lines = cli.status_table(dashboard, now).splitlines()
    assert lines[0].startswith("EMERGENCY MODE")
    assert lines[2].split() == ["soc-cycle", "stopped", "5m", "ago", "2", "97.5", "1.5s"]
    assert lines[3].split() == ["deploy", "unreachable", "-", "0", "100.0", "-"]


def test_describe_reply():
    assert cli.describe_reply("deploy", {"ok": True, "message": "Deploy started", "state": "running"}) == (
        True,
        "ok      deploy: Deploy started [state: running]",
    )
    ok, line = cli.describe_reply("deploy", {"detail": "engine did not answer within 2s"}, 504)
    assert not ok and line == "FAILED  deploy: engine did not answer within 2s"
    ok, line = cli.describe_reply("x", {"ok": True, "status": "started", "run_id": "r1", "message": "m"})
    assert ok and line.endswith("m (run r1)")
