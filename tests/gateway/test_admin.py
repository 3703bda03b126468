"""The nine /api/v1/admin endpoints (plus start, start-all, stream) over real HTTP,
against real engines on a real nats-server."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from contracts.systems import SYSTEMS
from services.runtime.testing import running_engines, settled
from tests.conftest import ADMIN_ACTOR, api_client, models_loaded, serve_gateway

API = "/api/v1/admin"
SPEC_FIELDS = {"name", "label", "running", "schedule", "last_run", "error_count", "success_rate"}


async def wait_state(http: httpx.AsyncClient, system: str, state: str, timeout: float = 5.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        board = (await http.get(f"{API}/dashboard")).json()
        if board["systems"][system]["state"] == state:
            return board
        assert asyncio.get_running_loop().time() < deadline, board["systems"][system]
        await asyncio.sleep(0.05)


async def test_dashboard_has_the_spec_shape_for_all_seven(engines, http):
    board = await wait_state(http, "frontend-factory", "running")
    assert set(board) >= {"timestamp", "emergency_mode", "systems"}
    assert board["emergency_mode"] is False
    assert list(board["systems"]) == list(SYSTEMS)
    for slug, system in board["systems"].items():
        assert set(system) >= SPEC_FIELDS | {"state", "last_heartbeat"} | set(SYSTEMS[slug].extras)
        assert system["name"] == slug and system["label"] == SYSTEMS[slug].label
        assert system["running"] is True and system["state"] == "running"
        assert system["success_rate"] == 100.0


async def test_emergency_stop_shows_at_once_then_start_clears_emergency(engines, http):
    stop = await http.post(f"{API}/emergency-stop/soc-cycle", json={"reason": "drill"})
    assert stop.status_code == 200
    assert stop.json()["state"] == "stopped" and stop.json()["changed"] is True
    board = (await http.get(f"{API}/dashboard")).json()  # read-your-writes, no waiting
    assert board["systems"]["soc-cycle"]["state"] == "stopped"
    assert board["systems"]["soc-cycle"]["running"] is False
    assert board["emergency_mode"] is True

    again = await http.post(f"{API}/emergency-stop/soc-cycle")
    assert again.status_code == 200 and again.json()["changed"] is False

    start = await http.post(f"{API}/start/soc-cycle")
    assert start.status_code == 200 and start.json()["state"] == "running"
    board = (await http.get(f"{API}/dashboard")).json()
    assert board["emergency_mode"] is False


async def test_kill_switch_and_restart_all_return_per_system_maps(engines, http):
    killed = (await http.post(f"{API}/emergency-stop-all", json={"reason": "incident 7"})).json()
    assert set(killed["results"]) == set(SYSTEMS)
    assert killed["ok"] is True and killed["succeeded"] == 7 and killed["failed"] == 0
    assert {r["state"] for r in killed["results"].values()} == {"stopped"}
    board = (await http.get(f"{API}/dashboard")).json()
    assert board["emergency_mode"] is True
    assert not any(s["running"] for s in board["systems"].values())

    restarted = (await http.post(f"{API}/restart-all")).json()
    assert set(restarted["results"]) == set(SYSTEMS) and restarted["succeeded"] == 7
    board = (await http.get(f"{API}/dashboard")).json()
    assert board["emergency_mode"] is False
    assert all(s["state"] == "running" for s in board["systems"].values())

    one = await http.post(f"{API}/restart/deploy")
    assert one.status_code == 200 and one.json()["state"] == "running" and one.json()["changed"] is True


async def test_trigger_returns_the_engine_result_and_409_when_stopped(engines, http):
    from tests.test_runtime_control import quick_trigger

    quick_trigger(engines["integrity-scan"], pages=2)
    triggered = await http.post(f"{API}/trigger/integrity-scan")
    assert triggered.status_code == 200
    assert triggered.json()["ok"] is True and triggered.json()["run_id"]
    assert triggered.json()["result"] == {"ok": True, "result": "success", "pages": 2}
    await http.post(f"{API}/emergency-stop/integrity-scan")
    refused = await http.post(f"{API}/trigger/integrity-scan")
    assert refused.status_code == 409 and "start it before triggering" in refused.json()["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "trigger/nope"),
        ("post", "emergency-stop/nope"),
        ("post", "restart/nope"),
        ("post", "start/nope"),
        ("get", "system/nope/detail"),
    ],
)
async def test_unknown_system_is_a_clear_404(engines, http, method, path):
    response = await getattr(http, method)(f"{API}/{path}")
    assert response.status_code == 404
    assert "unknown system 'nope'" in response.json()["detail"]


async def test_unknown_system_attempts_are_audited(engines, http):
    await http.post(f"{API}/emergency-stop/ghost")
    log = (await http.get(f"{API}/activity-log", params={"actor": ADMIN_ACTOR})).json()["events"]
    assert log and log[0]["result"] == "rejected" and "ghost" in log[0]["detail"]


async def test_engine_that_does_not_answer_is_a_504_naming_it(settings, nats_server, api_headers):

    quick = settings.model_copy(update={"control_timeout": 0.3})
    async with serve_gateway(quick) as url, api_client(url, api_headers) as http:
        response = await http.post(f"{API}/emergency-stop/deploy")  # no deploy engine is running
        assert response.status_code == 504
        assert "'deploy' did not answer within 0.3 s" in response.json()["detail"]
        bulk = (await http.post(f"{API}/emergency-stop-all")).json()
        assert bulk["failed"] == 7 and bulk["results"]["soc-cycle"]["error"] == "timeout"


async def test_system_detail_has_deep_fields_and_state(engines, http):
    detail = (await http.get(f"{API}/system/soc-cycle/detail")).json()
    assert detail["name"] == "soc-cycle" and detail["state"] == "running"
    assert {"loops", "process", "alerts_processed", "error_count", "success_rate"} <= set(detail)
    assert [loop["name"] for loop in detail["loops"]] == ["triage", "escalation", "soar", "hunting"]


async def test_activity_log_limits_cursor_filters_and_csv(engines, http):
    for verb in ("emergency-stop", "start", "restart"):
        await http.post(f"{API}/{verb}/deploy")
    await settled(engines)  # the restarted deploy's first cycles are in before the walk
    assert (await http.get(f"{API}/activity-log", params={"limit": 0})).status_code == 422
    assert (await http.get(f"{API}/activity-log", params={"limit": 1001})).status_code == 422

    first = (await http.get(f"{API}/activity-log")).json()
    assert 0 < first["count"] <= 100
    seqs = [event["seq"] for event in first["events"]]
    assert seqs == sorted(seqs, reverse=True)
    assert set(first["events"][0]) >= {"timestamp", "system", "action", "detail", "result", "actor", "seq"}

    # walk the whole log two rows at a time: every row exactly once, newest first
    walked, before = [], None
    while True:
        params = {"limit": 2} | ({"before": before} if before else {})
        page = (await http.get(f"{API}/activity-log", params=params)).json()
        walked += [event["seq"] for event in page["events"]]
        before = page["next_before"]
        if before is None:
            break
    # engines keep publishing during the walk, so compare against the log as it stood
    # when the walk began: everything up to and including its first row
    params = {"limit": 1000, "before": walked[0] + 1}
    everything = (await http.get(f"{API}/activity-log", params=params)).json()
    assert walked == [event["seq"] for event in everything["events"]]
    assert len(walked) == len(set(walked))

    params = {"actor": ADMIN_ACTOR, "system": "deploy"}
    mine = (await http.get(f"{API}/activity-log", params=params)).json()["events"]
    assert mine and all(e["actor"] == ADMIN_ACTOR and e["system"] == "deploy" for e in mine)
    accepted = (await http.get(f"{API}/activity-log", params={"result": "accepted"})).json()["events"]
    assert accepted and all(e["result"] == "accepted" for e in accepted)

    csv_text = (await http.get(f"{API}/activity-log", params={"format": "csv", "actor": ADMIN_ACTOR})).text
    header, *rows = csv_text.strip().splitlines()
    assert header.startswith("seq,timestamp,system,action,result,actor")
    assert len(rows) == len(
        (await http.get(f"{API}/activity-log", params={"actor": ADMIN_ACTOR})).json()["events"]
    )


async def test_metrics_per_service_and_totals(engines, http):
    await wait_state(http, "deploy", "running")
    metrics = (await http.get(f"{API}/metrics")).json()
    assert set(metrics) >= {
        "timestamp",
        "uptime_seconds",
        "memory_mb",
        "memory_percent",
        "cpu_percent",
        "threads",
        "active_ws_connections",
        "jetstream",
        "autonomous_systems_total",
        "autonomous_systems_running",
        "services",
    }
    assert metrics["autonomous_systems_total"] == 7 and metrics["autonomous_systems_running"] == 7
    assert set(metrics["services"]) == {"gateway", *SYSTEMS}
    assert metrics["jetstream"]["stream"] == "AOC_EVENTS" and metrics["jetstream"]["last_seq"] > 0
    assert metrics["services"]["soc-cycle"]["memory_mb"] > 0


async def test_health_reports_nats_stream_and_projection_lag(engines, http):
    assert (await http.get("/health")).json() == {"status": "up"}  # public: nothing more
    health = (await http.get("/health/details")).json()
    assert health["status"] == "ok" and health["nats"]["connected"] is True
    assert health["projection"]["applied_seq"] <= health["stream"]["last_seq"]
    assert health["projection"]["lag"] == health["stream"]["last_seq"] - health["projection"]["applied_seq"]


async def test_sse_pushes_a_change_made_on_raw_nats(engines, live_gateway, nc, api_headers):
    async with (
        api_client(live_gateway, api_headers) as client,
        client.stream("GET", f"{API}/stream") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()

        async def next_dashboard() -> dict:
            async for line in lines:
                if line.startswith("data:"):
                    return json.loads(line[5:])
            raise AssertionError("stream ended")

        first = await next_dashboard()
        assert first["systems"]["deploy"]["state"] == "running"
        await nc.request("aoc.ctl.deploy.stop", b"", timeout=2)

        async def until_stopped() -> dict:
            while True:
                board = await next_dashboard()
                if board["systems"]["deploy"]["state"] == "stopped":
                    return board

        board = await asyncio.wait_for(until_stopped(), 5)
        assert board["emergency_mode"] is True


async def test_restarted_gateway_rebuilds_views_equal_to_the_live_ones(settings, nc, api_headers):

    def comparable(board: dict) -> dict:
        board = {**board, "systems": {k: dict(v) for k, v in board["systems"].items()}}
        for key in ("timestamp", "view"):
            board.pop(key)
        for system in board["systems"].values():
            system.pop("heartbeat_age_seconds")
        return board

    # the heartbeats are frozen below; the views must not call them late (1 s in tests)
    frozen = settings.model_copy(update={"heartbeat_timeout": 60.0})
    async with (
        serve_gateway(frozen) as url,
        api_client(url, api_headers) as live,
        running_engines(settings) as hosts,
    ):
        await live.post(f"{API}/emergency-stop/deploy", json={"reason": "r1"})
        await live.post(f"{API}/trigger/soc-cycle")
        await live.post(f"{API}/restart/ml-retrain")
        await nc.request("aoc.ctl.heal-check.stop", b'{"actor":"erin"}', timeout=2)
        await nc.request("aoc.ctl.heal-check.bogus", b"", timeout=2)
        await settled(hosts, lambda: models_loaded(hosts))  # the restarted ml-retrain's model is in
        # freeze the heartbeats so both gateways see the same last one
        for host in hosts.values():
            await host.stop_heartbeats()
        await asyncio.sleep(0.3)
        async with serve_gateway(frozen) as url2, api_client(url2, api_headers) as rebuilt:
            # a loop cycle may still publish while we read: take the snapshot again until
            # the live log did not move across the reads of both gateways
            for _ in range(10):
                live_board = (await live.get(f"{API}/dashboard")).json()
                live_log = (await live.get(f"{API}/activity-log", params={"limit": 1000})).json()
                await asyncio.sleep(0.2)  # the rebuilt gateway follows as the live one does
                rebuilt_board = (await rebuilt.get(f"{API}/dashboard")).json()
                rebuilt_log = (await rebuilt.get(f"{API}/activity-log", params={"limit": 1000})).json()
                again = (await live.get(f"{API}/activity-log", params={"limit": 1})).json()
                if again["last_seq"] == live_log["last_seq"] == rebuilt_log["last_seq"]:
                    break
    assert live_board["systems"]["deploy"]["state"] == "stopped"
    assert comparable(rebuilt_board) == comparable(live_board)
    assert rebuilt_log["events"] == live_log["events"]
    assert rebuilt_log["last_seq"] == live_log["last_seq"] > 10


async def test_views_follow_again_after_the_nats_server_restarts(engines, http, nats_server, nc):
    await wait_state(http, "deploy", "running")
    nats_server.stop()
    nats_server.start()  # same port, same store
    # engines and gateway reconnect by themselves; the gateway must follow the streams again
    for _ in range(150):  # the test's own connection reconnects too
        try:
            await nc.request("aoc.ctl.deploy.stop", b"", timeout=1)
            break
        except Exception:
            await asyncio.sleep(0.1)
    await wait_state(http, "deploy", "stopped", timeout=10)
    board = await wait_state(http, "soc-cycle", "running", timeout=10)
    assert board["systems"]["soc-cycle"]["heartbeat_age_seconds"] < 1.0
