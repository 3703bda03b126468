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
from contracts.events import ActivityRecorded, Summary, new_event
from services.launcher.audit import EXIT_EVICTED, EXIT_OK
from services.runtime.testing import running_engines
from tests.conftest import api_client, serve_gateway
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

        await until(lambda: stored.get("copies", 0) >= 4, step=count_copies, what="the audit copies")

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
        assert kept.state.first_seq == 1 and kept.state.messages >= 4  # nothing of the audit lost

    code, events, err = await run_replay(env)
    assert code == EXIT_EVICTED, err
    assert "evicted by size before their retention age" in err
    commands = [
        e
        for e in events
        if e["type"] == "command_handled" and e["system"] == "deploy" and e["actor"] == "admin"
    ]
    assert [json_verb(e) for e in commands] == ["stop", "start"]
    assert all(e["seq"] < info.state.first_seq for e in commands)  # replayed from AOC_AUDIT
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)


def json_verb(event: dict) -> str:
    return event["data"]["verb"]


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

        await until(lambda: state.get("first", 1) > 4, step=look, timeout=30, what="events ageing out")
        code, _, err = await run_replay(env)
    assert code == EXIT_OK, err
    assert "aged out by retention age" in err and "EVICTED" not in err
