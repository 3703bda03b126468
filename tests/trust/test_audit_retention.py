"""Issue 11 §2: audit records cannot be evicted by load before their retention, and
`aoc audit replay` tells "aged out by retention age" from "evicted by size before
retention" (exit 4). Real nats-server, engines, the gateway under uvicorn, and the real
`aoc audit replay` process."""

from __future__ import annotations

import asyncio
import json
import sys

import msgspec

from contracts import subjects
from contracts.events import ActivityRecorded, Summary, command_of, new_event
from contracts.streams import ensure_all
from services.launcher.audit import EXIT_EVICTED, EXIT_OK
from services.runtime.testing import running_engines
from tests.conftest import ADMIN_TOKEN, api_client, serve_gateway
from tests.trust.conftest import until

API = "/api/v1/admin"


async def run_replay(env: dict[str, str]) -> tuple[int, list[dict], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.launcher",
        "audit",
        "replay",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, [json.loads(line) for line in out.splitlines()], err.decode()


async def audit_copies(js) -> int:
    info = await js.stream_info(subjects.AUDIT_STREAM)
    return info.state.messages


async def admin_stop_and_start(settings, api_headers) -> None:
    async with serve_gateway(settings) as url, api_client(url, api_headers) as http:
        stop = await http.post(f"{API}/emergency-stop/deploy", json={"reason": "incident 42"})
        start = await http.post(f"{API}/start/deploy", json={"reason": "incident 42 over"})
        assert stop.status_code == 200 and start.status_code == 200


async def test_load_evicts_events_but_not_the_audit_records(settings, settings_env, nc, api_headers):
    small = settings.model_copy(update={"stream_max_bytes": 512 * 1024})
    env = {**settings_env, "AOC_STREAM_MAX_BYTES": str(512 * 1024)}
    js = nc.jetstream()
    async with running_engines(small, ["deploy"]):
        await admin_stop_and_start(small, api_headers)
        stored: dict[str, int] = {}

        async def count_copies() -> None:
            stored["copies"] = await audit_copies(js)

        # "process started", then the stop and the start: each one lifecycle event carrying
        # its command's audit (one write per command)
        await until(lambda: stored.get("copies", 0) >= 3, step=count_copies, what="the audit copies")

        # load: bulky events (a chatty engine, say) until AOC_EVENTS is well past full
        filler = b"y" * 60_000
        for n in range(30):
            event = new_event(
                system="filler",
                payload=ActivityRecorded(details={"blob": filler.decode(), "n": n}),
                summary=Summary(action="filler", detail=f"filler {n}"),
            )
            await js.publish(subjects.evt("filler", ActivityRecorded.TYPE), msgspec.json.encode(event))
        info = await js.stream_info(subjects.EVENTS_STREAM)
        assert info.state.first_seq > 1, "the load evicted the head of AOC_EVENTS"
        kept = await js.stream_info(subjects.AUDIT_STREAM)
        assert kept.state.first_seq == 1 and kept.state.messages >= 3  # nothing of the audit lost

    code, events, err = await run_replay(env)
    assert code == EXIT_EVICTED, err
    assert "evicted by size before their retention age" in err
    commands = [
        e
        for e in events
        if e["summary"]["action"].startswith("command_") and e["system"] == "deploy" and e["actor"] == "admin"
    ]
    assert [json_verb(e) for e in commands] == ["stop", "start"]
    assert all(e["seq"] < info.state.first_seq for e in commands)  # replayed from AOC_AUDIT
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)


def json_verb(event: dict) -> str:
    data = event["data"]  # a command_handled, or the lifecycle event a command's change wrote
    return data["command"]["verb"] if "command" in data else data["verb"]


async def test_ageing_out_by_retention_is_not_eviction(settings, settings_env, nc, api_headers):
    seconds = 3.0
    short = settings.model_copy(update={"retention_days": seconds / 86_400, "duplicate_window_s": 1.0})
    env = {**settings_env, "AOC_RETENTION_DAYS": repr(seconds / 86_400), "AOC_DUPLICATE_WINDOW_S": "1"}
    js = nc.jetstream()
    async with running_engines(short, ["deploy"]) as hosts:
        await admin_stop_and_start(short, api_headers)
        await hosts["deploy"].stop_heartbeats()
        state: dict[str, int] = {}

        async def look() -> None:
            state["first"] = (await js.stream_info(subjects.EVENTS_STREAM)).state.first_seq

        await until(lambda: state.get("first", 1) > 3, step=look, timeout=30, what="events ageing out")
        code, _, err = await run_replay(env)
    assert code == EXIT_OK, err
    assert "aged out by retention age" in err and "EVICTED" not in err


async def test_a_nearly_full_audit_stream_alerts_and_a_full_one_does_not_stop_commands(settings, nc, tap):
    """AOC_AUDIT refuses new copies when full (discard: new): the gateway alerts from 80%
    (log line, /health/details, Prometheus), and commands keep working — AOC_EVENTS still
    takes their events."""
    from structlog.testing import capture_logs

    small = settings.model_copy(update={"audit_max_bytes": 64 * 1024})
    js = nc.jetstream()
    await ensure_all(js, small, converge=True)  # what the gateway does with a changed config
    async with running_engines(small, ["deploy"]):
        filler = msgspec.json.encode({"pad": "z" * 900})
        for _ in range(90):  # ~90 KB of audit-subject events: past the 64 KiB cap
            await js.publish(subjects.evt("filler", "command_handled"), filler)
        state: dict[str, float] = {}

        async def look() -> None:
            info = await js.stream_info(subjects.AUDIT_STREAM)
            state["ratio"] = info.state.bytes / info.config.max_bytes

        await until(lambda: state.get("ratio", 0) >= 0.8, step=look, what="AOC_AUDIT nearly full")
        with capture_logs() as logs:
            async with (
                serve_gateway(small) as url,
                api_client(url, {"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http,
            ):
                details = (await http.get("/health/details")).json()
                assert details["audit"]["near_full"] and details["audit"]["fill_ratio"] >= 0.8
                assert any(alert.startswith("AOC_AUDIT is") for alert in details["alerts"])
                metrics = (await http.get("/metrics")).text
                ratio = next(
                    float(line.split(" ")[1])
                    for line in metrics.splitlines()
                    if line.startswith("aoc_audit_fill_ratio ")
                )
                assert ratio >= 0.8
                # the kill switch still works and its events are stored in AOC_EVENTS
                stop = await http.post(f"{API}/emergency-stop/deploy", json={"reason": "audit full"})
                assert stop.status_code == 200 and stop.json()["state"] == "stopped"
        assert any(line["event"] == "audit.near_full" for line in logs)
        await tap.wait_for(lambda e: command_of(e) is not None and command_of(e).reason == "audit full")
