"""Issue 11 §5 under the real launcher: `aoc up` (its own nats-server with users, seven
engine processes, the gateway), `kill -9` of soc-cycle. The launcher records the crash
as the NATS user `launcher` the moment it sees the exit, the restarted engine records its
recovery, its counters did not go backwards, and the dashboard card — in Chromium —
says "restarted N s ago after a crash"."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
from playwright.async_api import expect

from services.launcher.natsserver import free_port
from services.runtime.testing import EventTap
from tests.browser.conftest import TOKEN_KEY
from tests.test_launcher import (
    START_TIMEOUT_S,
    all_running,
    children_running,
    dashboard,
    generated_admin,
    launched,
    launcher_env,
    stop_and_expect_clean_exit,
    wait_until,
)


async def poll(condition, timeout: float, what: str):
    return await asyncio.to_thread(wait_until, condition, timeout, what)


async def test_kill_9_under_the_launcher_is_recorded_recovered_and_shown(tmp_path: Path, browser):
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    data = tmp_path / "aoc"
    with launched(launcher_env(tmp_path, http_port), tmp_path) as launcher:
        await poll(lambda: (data / "secrets" / "admin.token").exists(), 15, "the admin token")
        auth = generated_admin(data)
        await poll(lambda: all_running(base, auth), START_TIMEOUT_S, "all seven engines running")
        creds = json.loads((data / "nats" / "credentials" / "admin.json").read_text())
        nc = await nats.connect(
            creds["url"], user="admin", password=creds["password"], inbox_prefix=creds["inbox_prefix"]
        )
        tap = await EventTap(nc).start()
        try:
            # soc-cycle's triage loop runs quiet cycles (empty queue) many times a second
            await poll(lambda: dashboard(base, auth)["soc-cycle"]["total_runs"] >= 50, 30, "soc-cycle runs")
            async with httpx.AsyncClient(base_url=base, headers=auth, timeout=5) as http:
                detail = (await http.get("/api/v1/admin/system/soc-cycle/detail")).json()
            (victim,) = children_running(launcher, "services.soc")
            runs_seen = dashboard(base, auth)["soc-cycle"]["total_runs"]
            killed_at = datetime.now(UTC)
            victim.kill()

            crash = await tap.wait_for(lambda e: e.type == "process_crashed" and e.system == "soc-cycle", 20)
            record = crash.payload()
            assert (crash.source, crash.actor) == ("launcher", "launcher")
            assert record.pid == victim.pid and record.signal == "SIGKILL" and record.exit_code is None
            assert record.uptime_s > 0 and record.restarts == 1
            delay = (crash.time - killed_at).total_seconds()
            print(f"process_crashed stored {delay * 1000:.0f} ms after the kill")

            recovered = await tap.wait_for(
                lambda e: e.type == "engine_recovered" and e.system == "soc-cycle", 60
            )
            assert recovered.payload().previous_boot_id == detail["boot_id"]
            assert recovered.payload().total_runs >= runs_seen
            seqs = {e.id: s for s, e in tap.events}
            assert seqs[crash.id] < seqs[recovered.id]

            def back_and_counting() -> bool:
                systems = dashboard(base, auth)
                soc = systems["soc-cycle"]
                return soc["state"] == "running" and soc["total_runs"] >= runs_seen and soc["last_crash"]

            await poll(back_and_counting, 30, "soc-cycle back, its counters not behind")
            assert dashboard(base, auth)["soc-cycle"]["total_runs"] >= runs_seen  # never backwards

            async with httpx.AsyncClient(base_url=base, headers=auth, timeout=5) as http:
                log = (await http.get("/api/v1/admin/activity-log", params={"system": "soc-cycle"})).json()[
                    "events"
                ]
            actions = {row["action"]: row for row in log}
            assert actions["process_crashed"]["actor"] == "launcher"
            assert "killed by SIGKILL" in actions["process_crashed"]["detail"]
            assert "engine_recovered" in actions

            context = await browser.new_context()
            token = auth["Authorization"].split(" ", 1)[1]
            await context.add_init_script(
                f"sessionStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(token)})"
            )
            page = await context.new_page()
            await page.goto(f"{base}/admin-ops")
            note = page.locator('.card[data-system="soc-cycle"] .crash-note')
            await expect(note).to_be_visible()
            await expect(note).to_contain_text("after a crash")
            await expect(note).to_contain_text("restarted")
            # the other cards say nothing of the kind
            await expect(page.locator('.card[data-system="deploy"] .crash-note')).to_be_hidden()
            await context.close()
        finally:
            await tap.stop()
            with contextlib.suppress(Exception):
                await nc.close()
        stop_and_expect_clean_exit(launcher)
