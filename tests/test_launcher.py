"""`aoc up` as an operator runs it: a real launcher process with its own nats-server,
seven engine processes and the gateway; crash one engine, watch it come back, stop
everything with SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from contracts.settings import Settings
from contracts.systems import SYSTEMS
from services.launcher.natsserver import NatsServer, free_port
from services.launcher.supervisor import Backoff, ChildSpec, Supervisor, child_specs, lock_data_dir

START_TIMEOUT_S = 60.0


def launcher_env(tmp_path: Path, http_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOC_") and k != "NATS_URL"}
    env.update(
        AOC_DATA_DIR=str(tmp_path / "aoc"),
        AOC_NATS_PORT=str(free_port()),
        AOC_HTTP_PORT=str(http_port),
        AOC_HEARTBEAT_INTERVAL="0.5",
    )
    return {**env, **extra}


@contextlib.contextmanager
def launched(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`aoc up` in the background; whatever the test does, nothing outlives it."""
    with open(tmp_path / "up.out", "wb") as out, open(tmp_path / "up.err", "wb") as err:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "services.launcher", "up"], env=env, stdout=out, stderr=err
        )
    try:
        yield launcher
    finally:
        if launcher.poll() is None:
            for child in psutil.Process(launcher.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
            launcher.kill()
            launcher.wait()


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            value = condition()
            if value:
                return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def children_running(launcher: subprocess.Popen[bytes], module: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(launcher.pid).children():
        with contextlib.suppress(psutil.Error):
            if module in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
    return found


def generated_admin(data_dir: Path) -> dict[str, str]:
    """The admin token `aoc up` made on its first run (the tests give it none)."""
    return {"Authorization": f"Bearer {(data_dir / 'secrets' / 'admin.token').read_text().strip()}"}


def dashboard(base: str, auth: dict[str, str]) -> dict[str, Any]:
    return httpx.get(f"{base}/api/v1/admin/dashboard", headers=auth, timeout=2).json()["systems"]


def reported_pid(base: str, auth: dict[str, str], slug: str) -> int | None:
    """The pid in the engine's latest heartbeat, as the gateway shows it."""
    service = httpx.get(f"{base}/api/v1/admin/metrics", headers=auth, timeout=2).json()["services"][slug]
    return service and service["pid"]


def all_running(base: str, auth: dict[str, str]) -> bool:
    systems = dashboard(base, auth)
    return set(systems) == set(SYSTEMS) and all(s["state"] == "running" for s in systems.values())


def stop_and_expect_clean_exit(launcher: subprocess.Popen[bytes]) -> None:
    family = psutil.Process(launcher.pid).children(recursive=True)
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=20) == 0
    _, alive = psutil.wait_procs(family, timeout=2)
    assert alive == [], f"left behind: {[p.pid for p in alive]}"


def test_up_supervises_and_stops_cleanly(tmp_path: Path):
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    with launched(launcher_env(tmp_path, http_port), tmp_path) as launcher:
        wait_until(lambda: (tmp_path / "aoc" / "secrets" / "admin.token").exists(), 10, "the admin token")
        auth = generated_admin(tmp_path / "aoc")
        wait_until(lambda: all_running(base, auth), START_TIMEOUT_S, "all seven engines running")
        assert "generated a new admin token" in (tmp_path / "up.err").read_text()
        announced = (
            f"AOC is up: dashboard {base}/admin-ops  (API {base}/api/v1/admin/dashboard, MCP {base}/mcp)"
        )
        wait_until(lambda: announced in (tmp_path / "up.out").read_text(), 5, "the dashboard URL")
        assert [p.name() for p in psutil.Process(launcher.pid).children() if "nats-server" in p.name()]

        (crashed,) = children_running(launcher, "services.soc")
        crashed.kill()
        crashed.wait(5)

        (restarted,) = wait_until(
            lambda: children_running(launcher, "services.soc"), 15, "a new soc-cycle process"
        )
        assert restarted.pid != crashed.pid
        wait_until(
            lambda: (
                reported_pid(base, auth, "soc-cycle") == restarted.pid
                and dashboard(base, auth)["soc-cycle"]["state"] == "running"
            ),
            15,
            "the restarted soc-cycle reporting running",
        )
        assert "soc-cycle" in (err := (tmp_path / "up.err").read_text()) and "restart #1" in err
        assert (tmp_path / "aoc" / "logs" / "soc-cycle.log").exists()

        stop_and_expect_clean_exit(launcher)


def test_up_with_nats_url_starts_no_server(tmp_path: Path, nats_server: NatsServer):
    http_port = free_port()
    env = launcher_env(tmp_path, http_port, NATS_URL=nats_server.url)
    with launched(env, tmp_path) as launcher:
        wait_until(
            lambda: "AOC is up" in (tmp_path / "up.out").read_text(), START_TIMEOUT_S, "the dashboard URL"
        )
        names = [p.name() for p in psutil.Process(launcher.pid).children()]
        assert len(names) == len(SYSTEMS) + 2  # engines, the gateway and the SIEM service
        assert not any("nats-server" in name for name in names)
        assert f"using NATS at {nats_server.url}" in (tmp_path / "up.err").read_text()

        stop_and_expect_clean_exit(launcher)


def run_up(env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "services.launcher", "up"], env=env, capture_output=True, timeout=30
    )


def test_up_refuses_a_taken_nats_port(tmp_path: Path, nats_server: NatsServer):
    done = run_up(launcher_env(tmp_path, free_port(), AOC_NATS_PORT=str(nats_server.port)))
    assert done.returncode == 1
    assert f"port {nats_server.port} is already in use" in done.stderr.decode()


def test_up_refuses_a_data_dir_in_use(tmp_path: Path):
    env = launcher_env(tmp_path, free_port())
    with lock_data_dir(Path(env["AOC_DATA_DIR"])):
        done = run_up(env)
    assert done.returncode == 1
    assert f"another `aoc up` (pid {os.getpid()}) is using" in done.stderr.decode()


# --- the supervisor on its own ------------------------------------------------------------


def test_backoff_doubles_caps_and_resets_after_a_good_run():
    backoff = Backoff()
    assert [backoff.delay_after(1.0) for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay_after(61.0) == 0.5
    assert backoff.delay_after(1.0) == 1


def python_child(name: str, code: str, tmp_path: Path) -> ChildSpec:
    return ChildSpec(name, [sys.executable, "-c", code], dict(os.environ), tmp_path / f"{name}.log")


async def test_supervisor_restarts_crashes_and_kills_stragglers(tmp_path: Path):
    lines: list[str] = []
    restarted_twice = asyncio.Event()

    def log(line: str) -> None:
        lines.append(line)
        if "restart #2" in line:
            restarted_twice.set()

    ignore_sigterm = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    supervisor = Supervisor(
        [
            python_child("crasher", "print('working'); raise SystemExit(3)", tmp_path),
            python_child("stubborn", ignore_sigterm, tmp_path),
        ],
        log=log,
    )
    supervisor.start()
    await asyncio.wait_for(restarted_twice.wait(), 10)

    await supervisor.stop(grace=0.5)

    first, second = lines[:2]
    assert first.startswith("crasher (pid") and "exited with exit code 3" in first
    assert "restart #1 in 0.5s" in first and "restart #2 in 1s" in second
    assert any(line.startswith("stubborn") and "killing it" in line for line in lines)
    assert supervisor.children[1].process.returncode == -signal.SIGKILL
    log_text = (tmp_path / "crasher.log").read_text()
    assert log_text.count("--- aoc: starting crasher") >= 2 and "working" in log_text


def test_the_siem_service_runs_as_many_instances_as_an_engine(tmp_path: Path) -> None:
    # single-active by its lease, like the engines: ids and logs per instance
    for instances, names in ((1, ["siem"]), (2, ["siem-1", "siem-2"])):
        settings = Settings(data_dir=tmp_path, instances=instances)
        siem = [spec for spec in child_specs(settings) if spec.system == "siem"]
        assert [spec.name for spec in siem] == names
        expected = [f"siem-{n}" for n in range(1, instances + 1)]
        assert [spec.env["AOC_INSTANCE_ID"] for spec in siem] == expected
        assert [spec.log_file.name for spec in siem] == [f"{name}.log" for name in names]
        assert all(spec.argv[-2:] == ["-m", "services.siem"] for spec in siem)
