"""Snapshots of the read models, against a real nats-server and real gateways.

A gateway started from a snapshot replays only the tail of the stream, and then answers
exactly what a gateway that replayed everything answers: byte for byte for the activity
log and the SOC alert list (every page), and the dashboard less its clock fields. A
missing, corrupt or old snapshot falls back to a full replay and says so in
/health/details."""

from __future__ import annotations

import asyncio
import json
import time

import msgspec
import pytest

from contracts import soc
from contracts.events import encode
from contracts.snapshots import GATEWAY_SNAPSHOT, ensure_snapshots_store
from contracts.streams import ensure_all
from gateway.readmodels import snapshot
from tests.conftest import api_client, serve_gateway
from tests.gateway.events import (
    annotation,
    factory_events,
    heartbeat,
    heartbeat_subject,
    mixed_events,
)

API = "/api/v1/admin"
ACTIVITY_QUERIES = [
    {"limit": 1000},
    {"limit": 100, "system": "deploy"},
    {"limit": 100, "system": "deploy", "q": "xylophone"},
    {"limit": 100, "q": "redeploy"},
    {"limit": 100, "q": "été"},
    {"limit": 100, "actor": "alice@soc"},
    {"limit": 100, "result": "failed"},
    {"limit": 100, "tag": "incident"},
    {"limit": 100, "since": "2026-11-01T00:20:00Z", "until": "2026-11-01T00:30:00Z"},
]
ALERT_QUERIES = [
    {"limit": 1000},
    {"limit": 50, "status": "reviewed"},
    {"limit": 50, "severity": "high", "q": "brute"},
    {"limit": 50, "technique": "T1110"},
    {"limit": 50, "min_threat": 60},
]


async def publish(js, pairs) -> list[int]:
    acks = await asyncio.gather(
        *[js.publish(subject, encode(env), headers={"Nats-Msg-Id": env.id}) for subject, env in pairs]
    )
    return [ack.seq for ack in acks]


async def history(js, count: int, seed: int, *, tagged: int = 0) -> None:
    """Publish ``count`` mixed events, tag some of them, and give analysts' verdicts."""
    pairs = mixed_events(count, seed=seed)
    seqs = await publish(js, pairs)
    notes = [annotation(pairs[i][1], seqs[i], ["incident"], "looked at it") for i in range(0, tagged * 7, 7)]
    await publish(js, notes)
    decided = [
        d
        for _, env in pairs
        if env.type == "alerts_triaged"
        for d in msgspec.json.decode(env.data)["decisions"]
    ]
    verdicts = []
    for item in decided[:: max(len(decided) // 20, 1)]:
        alert = msgspec.convert(item["alert"], soc.AlertSummary)
        verdicts.append(soc.new_feedback(alert, "true_positive", "ann", decision=item["decision"]))
    for verdict in verdicts:
        await js.publish(
            soc.FEEDBACK_QUEUE, msgspec.json.encode(verdict), headers={"Nats-Msg-Id": verdict.id}
        )


async def beats(js) -> None:
    for system in ("deploy", "soc-cycle", "heal-check"):
        beat = heartbeat(system, instance=f"{system}-1", epoch=0)
        await js.publish(heartbeat_subject(beat), encode(beat))
    standby = heartbeat("deploy", instance="deploy-2", role="standby", state="stopped")
    await js.publish(heartbeat_subject(standby), encode(standby))


async def answers(client) -> dict[str, bytes]:
    """Every answer that must not depend on how the gateway was rebuilt."""
    found: dict[str, bytes] = {}
    board = (await client.get(f"{API}/dashboard")).json()
    board.pop("timestamp")
    for system in board["systems"].values():
        system.pop("heartbeat_age_seconds")
    found["dashboard"] = json.dumps(board, sort_keys=True).encode()
    for params in ACTIVITY_QUERIES:
        found[f"activity {params}"] = (await client.get(f"{API}/activity-log", params=params)).content
    before, pages = None, []
    while True:  # every page of a walk, with its cursors
        params = {"limit": 37, "system": "soc-cycle"} | ({"before": before} if before else {})
        page = await client.get(f"{API}/activity-log", params=params)
        pages.append(page.content)
        before = page.json()["next_before"]
        if before is None:
            break
    found["activity walk"] = b"\n".join(pages)
    for params in ALERT_QUERIES:
        found[f"alerts {params}"] = (await client.get("/api/v1/soc/alerts", params=params)).content
    for path in ("/api/v1/soc/stats", "/api/v1/soc/decisions", "/api/v1/ml/models", "/api/v1/jobs"):
        found[path] = (await client.get(path)).content
    for path in ("/api/v1/factory/requirements", "/api/v1/factory/stats"):
        found[path] = (await client.get(path)).content
    return found


async def details(client) -> dict:
    return (await client.get("/health/details")).json()


@pytest.fixture
def frozen(settings):
    """The test's heartbeats stay fresh for the whole test."""
    return settings.model_copy(update={"heartbeat_timeout": 600.0})


async def test_snapshot_plus_tail_answers_exactly_as_a_full_replay(frozen, nc, api_headers):
    js = nc.jetstream()
    await ensure_all(js, frozen)
    await soc.ensure_soc_streams(js, frozen)
    await history(js, 1500, seed=1, tagged=10)
    await publish(js, factory_events(12))
    await beats(js)
    async with serve_gateway(frozen) as url, api_client(url, api_headers) as first:
        health = await details(first)
        assert health["snapshot"]["full_replay"] is True and health["snapshot"]["reason"] == "no snapshot yet"
    # the clean stop left a snapshot behind; then the stream goes on
    written_at = (await js.stream_info("AOC_EVENTS")).state.last_seq
    await history(js, 400, seed=2, tagged=4)
    await publish(js, factory_events(3)[::-1])
    tail = (await js.stream_info("AOC_EVENTS")).state.last_seq - written_at
    full = frozen.model_copy(update={"snapshots": False})
    async with (
        serve_gateway(frozen) as url,
        api_client(url, api_headers) as rebuilt,
        serve_gateway(full) as full_url,
        api_client(full_url, api_headers) as replayed,
    ):
        health = await details(rebuilt)
        assert health["snapshot"]["loaded"] is True and health["snapshot"]["events_seq"] == written_at
        assert health["projection"]["from_snapshot"] is True
        assert health["projection"]["replayed_events"] == tail  # only the tail was read
        assert health["readmodels"]["activity"]["ready"] and health["readmodels"]["activity"]["lag"] == 0
        other = await details(replayed)
        assert (
            other["snapshot"]["full_replay"] is True and "AOC_SNAPSHOTS=false" in other["snapshot"]["reason"]
        )
        assert other["projection"]["replayed_events"] == written_at + tail
        mine, theirs = await answers(rebuilt), await answers(replayed)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert mine[key] == theirs[key], key
    # and the answers are not empty: the comparison means something
    assert json.loads(mine["activity {'limit': 100, 'tag': 'incident'}"])["count"] > 0
    assert json.loads(mine["alerts {'limit': 50, 'status': 'reviewed'}"])["count"] > 0
    assert json.loads(mine["/api/v1/factory/stats"])["total_requirements"] == 12
    board = json.loads(mine["dashboard"])
    assert (
        board["systems"]["deploy"]["instances"] == 2 and board["systems"]["deploy"]["instances_active"] == 1
    )


async def rewrite(js, settings, change) -> None:
    store = await ensure_snapshots_store(js, settings)
    blob = (await store.get(GATEWAY_SNAPSHOT)).data
    await store.put(GATEWAY_SNAPSHOT, change(blob))


def flip_a_body_byte(blob: bytes) -> bytes:
    at = len(blob) - 100
    return blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1 :]


def older_schema(blob: bytes) -> bytes:
    header, body = snapshot.unpack(blob)
    return snapshot.pack(msgspec.structs.replace(header, schema_version=0), body)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (flip_a_body_byte, "digest mismatch: the snapshot is corrupt"),
        (older_schema, f"schema version 0; this gateway reads {snapshot.SCHEMA_VERSION}"),
        (lambda blob: b"garbage" + blob, "not a gateway snapshot"),
    ],
)
async def test_a_corrupt_or_old_snapshot_means_a_full_replay_said_aloud(
    frozen, nc, api_headers, change, reason
):
    js = nc.jetstream()
    await ensure_all(js, frozen)
    await soc.ensure_soc_streams(js, frozen)
    await history(js, 600, seed=3, tagged=3)
    await beats(js)
    async with serve_gateway(frozen):
        pass  # writes a snapshot as it stops
    await rewrite(js, frozen, change)
    total = (await js.stream_info("AOC_EVENTS")).state.last_seq
    full = frozen.model_copy(update={"snapshots": False})
    async with (
        serve_gateway(frozen) as url,
        api_client(url, api_headers) as fallen_back,
        serve_gateway(full) as full_url,
        api_client(full_url, api_headers) as replayed,
    ):
        health = await details(fallen_back)
        assert health["snapshot"]["full_replay"] is True and health["snapshot"]["loaded"] is False
        assert health["snapshot"]["reason"].startswith(reason)
        assert health["projection"]["replayed_events"] == total
        mine, theirs = await answers(fallen_back), await answers(replayed)
    assert mine == theirs


async def test_snapshots_are_written_as_events_arrive_and_only_the_tail_is_read(frozen, nc, api_headers):
    every = frozen.model_copy(update={"snapshot_every_events": 200, "snapshot_interval_s": 3600})
    js = nc.jetstream()
    await ensure_all(js, every)
    await soc.ensure_soc_streams(js, every)
    async with serve_gateway(every) as url, api_client(url, api_headers) as client:
        await history(js, 500, seed=4)
        deadline = time.monotonic() + 30
        while True:  # written while running, not at the stop (a kill -9 would skip that)
            written = (await details(client))["snapshot"].get("last_written") or {}
            if written.get("events_seq", 0) >= 500:
                break
            assert time.monotonic() < deadline, written
            await asyncio.sleep(0.2)
        assert written["bytes"] > 0 and written["cut_ms"] >= 0 and written["encode_ms"] >= 0
        metrics = (await client.get("/metrics")).text
        assert (
            "aoc_snapshots_written_total" in metrics
            and 'aoc_readmodel_ready{kind="view",model="activity"}' in metrics
        )
    at_write = written["events_seq"]
    last = (await js.stream_info("AOC_EVENTS")).state.last_seq
    async with (
        serve_gateway(every.model_copy(update={"snapshots": True})) as url,
        api_client(url, api_headers) as c2,
    ):
        health = await details(c2)
    assert health["snapshot"]["loaded"] and health["snapshot"]["events_seq"] >= at_write
    assert health["projection"]["replayed_events"] == last - health["snapshot"]["events_seq"]


async def test_chunks_of_a_write_killed_midway_are_swept(settings, nc):
    """A gateway killed during a put leaves chunks no object points to; the next write
    removes them once they are old enough not to be another gateway's write in progress."""
    from gateway.readmodels.registry import ReadModels
    from gateway.readmodels.snapshot import OBJ_CHUNKS_PRE_TEMPLATE, OBJ_STREAM_TEMPLATE, SNAPSHOTS_BUCKET

    js = nc.jetstream()
    await ensure_all(js, settings)
    await soc.ensure_soc_streams(js, settings)
    await history(js, 50, seed=5)
    models = ReadModels(nc, settings)
    await models.start()
    try:
        orphan = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=SNAPSHOTS_BUCKET, obj="killed-midway")
        await js.publish(orphan, b"half a snapshot")
        stream = OBJ_STREAM_TEMPLATE.format(bucket=SNAPSHOTS_BUCKET)

        async def chunk_subjects() -> set[str]:
            info = await js.stream_info(stream, subjects_filter=f"$O.{SNAPSHOTS_BUCKET}.C.>")
            return set(info.state.subjects or {})

        assert await models.snapshots.write(models.snapshotted())  # too young: kept
        assert orphan in await chunk_subjects()
        models.snapshots.orphan_age_s = 0.0
        assert await models.snapshots.write(models.snapshotted())
        left = await chunk_subjects()
        assert orphan not in left and len(left) == 1  # the current snapshot's chunks only
    finally:
        await models.stop(snapshot=False)
