"""kill -9 of an engine process, with the launcher's real supervisor keeping heal-check and
the engine running as processes: the dashboard shows the engine unreachable, heal-check's
healing log records it (and sends no command to a dead process), and the supervisor
brings the engine back."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

from contracts.commands import reply_decoder
from contracts.events import command_of
from contracts.systems import SYSTEMS
from services.launcher.supervisor import Backoff, ChildSpec, Supervisor
from tests.healing.conftest import until

API = "/api/v1/admin"


async def heal_check_log(nc) -> list[dict]:
    try:
        msg = await nc.request("aoc.ctl.heal-check.status", b"", timeout=1)
    except Exception:  # not up yet
        return []
    return reply_decoder.decode(msg.data).result["extras"]["healing_log"]


async def test_kill_9_is_detected_logged_and_the_engine_runs_again(settings_env, tmp_path, http, nc, tap):
    schedules = {
        "heal-check.heartbeat_watch": 0.2,
        "heal-check.subsystem_checks": 3600,
        "heal-check.remediation": 0.3,
        "heal-check.report": 3600,
    }
    env = {
        **settings_env,
        "AOC_SCHEDULES": json.dumps(schedules),
        "AOC_HEALING_WATCHED": '["deploy"]',
        "AOC_HEALING_STARTUP_GRACE": "10",  # both start together: deploy is not news before that
        "AOC_HEALING_SUPERVISOR_GRACE": "60",
    }
    specs = [
        ChildSpec(
            slug, [sys.executable, "-m", f"services.{SYSTEMS[slug].module}"], env, tmp_path / f"{slug}.log"
        )
        for slug in ("heal-check", "deploy")
    ]
    said: list[str] = []
    supervisor = Supervisor(specs, log=said.append)
    deploy = next(child for child in supervisor.children if child.spec.name == "deploy")
    # The first restart waits 0.5 s; with a quick process start the engine could be back
    # inside the 1 s heartbeat timeout and never look unreachable. A 2 s pause makes the
    # window certain. (Child has no public knob for it yet: see the report.)
    deploy._backoff = Backoff(initial=2.0)
    supervisor.start()

    async def dashboard() -> dict:
        return (await http.get(f"{API}/dashboard")).json()["systems"]

    async def states() -> tuple[str, str]:
        board = await dashboard()
        return board["deploy"]["state"], board["heal-check"]["state"]

    try:
        seen: dict[str, object] = {}

        async def poll_states() -> None:
            seen["states"] = await states()

        await until(
            lambda: seen.get("states") == ("running", "running"), step=poll_states, timeout=45, what="both up"
        )
        heal_check_view: dict[str, str | None] = {}

        async def poll_heal_check() -> None:
            with contextlib.suppress(Exception):  # not answering yet
                msg = await nc.request("aoc.ctl.heal-check.status", b"", timeout=1)
                engines = reply_decoder.decode(msg.data).result["extras"]["engines"]
                heal_check_view["deploy"] = engines.get("deploy")

        # heal-check has seen this process healthy: what comes next is a change to it
        await until(
            lambda: heal_check_view.get("deploy") == "healthy", step=poll_heal_check, what="heal-check"
        )
        first_pid = deploy.pid
        os.kill(first_pid, signal.SIGKILL)

        await until(
            lambda: seen["states"][0] == "unreachable", step=poll_states, timeout=15, what="unreachable"
        )
        log: dict[str, list[dict]] = {"entries": []}

        async def poll_log() -> None:
            log["entries"] = await heal_check_log(nc)

        def entry(event: str) -> dict | None:
            """The newest entry of that kind about deploy (the log is newest first)."""
            return next((e for e in log["entries"] if e["target"] == "deploy" and e["event"] == event), None)

        detected = await until(lambda: entry("detected"), step=poll_log, timeout=15, what="a detection")
        assert detected["problem"] == "unreachable" and "supervisor restarts processes" in detected["detail"]

        await until(lambda: seen["states"][0] == "running", step=poll_states, timeout=45, what="deploy back")
        assert deploy.pid != first_pid and deploy.restarts == 1
        recovered = await until(lambda: entry("recovered"), step=poll_log, timeout=15, what="a recovery")
        assert recovered["time"] > detected["time"] and recovered["problem"] == "unreachable"
        assert "a new process" in recovered["detail"]
        assert any(f"deploy (pid {first_pid}) exited with signal SIGKILL" in line for line in said)
        # heal-check left the process to the supervisor: no command of its own
        assert not tap.matching(lambda e: command_of(e) is not None and e.actor == "heal-check")
    finally:
        await supervisor.stop(grace=5)
