"""Faults of issue 13 §7 that need no engine lease, with real processes on a real 3-node
cluster: (a) kill -9 the AOC_EVENTS stream leader during 1,000 acked writes; (c) lose a
whole node — its nats-server and the engine attached to it — while the others carry on.
Each is bounded by a deadline on every wait (and pytest's timeout)."""

from __future__ import annotations

import asyncio
import collections
import json
import random

import httpx
import pytest

from contracts import subjects
from contracts.events import CycleCompleted, Summary, envelope_decoder, new_event
from contracts.streams import ensure_all
from contracts.systems import SYSTEMS
from services.launcher.natsserver import NatsCluster, free_port
from services.runtime.bus import EventPublisher
from tests.cluster.conftest import (
    EngineProcess,
    GatewayProcess,
    activity_log,
    answers,
    auth,
    child_env,
    connect_to,
    engine_processes,
    eventually,
    gateway_caught_up,
    read_stream,
    stream_leader,
)

WRITES = 1000
IN_FLIGHT = 16  # concurrent acked publishes, like a busy engine's batch
KILL_AFTER = 300  # acked writes before the leader dies


def cycle_event(number: int):
    system = random.Random(number).choice(list(SYSTEMS))
    detail = f"write {number}"
    payload = CycleCompleted(
        loop="main", run_id=f"run-{number}", ok=True, result="success", detail=detail, duration_ms=1.0
    )
    return new_event(system=system, payload=payload, summary=Summary(action="main_cycle", detail=detail))


@pytest.mark.timeout(300)
async def test_killing_the_events_leader_mid_run_stores_every_acked_write_once(
    nats_cluster: NatsCluster, cluster_settings, tmp_path
):
    nc = await connect_to(nats_cluster.servers)
    js = nc.jetstream()
    await ensure_all(js, cluster_settings)
    leader = await stream_leader(js, subjects.EVENTS_STREAM)
    assert leader in {node.server_name for node in nats_cluster.nodes}
    survivor = next(node for node in nats_cluster.nodes if node.server_name != leader)
    # a gateway following the stream live, through the kill (attached to a node that stays)
    live = gateway_on(survivor.url, tmp_path, "gw-live")
    live.start()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            await eventually(lambda: gateway_caught_up(http, 0), 60, "the live gateway to replay")

            publisher = EventPublisher(js, deadline=90.0)
            events = [cycle_event(number) for number in range(WRITES)]
            acked: dict[str, int] = {}
            enough = asyncio.Event()
            slots = asyncio.Semaphore(IN_FLIGHT)

            async def write(event) -> None:
                async with slots:
                    ack = await publisher.publish(event)  # Nats-Msg-Id = event id; retried until acked
                acked[event.id] = ack.seq
                if len(acked) >= KILL_AFTER:
                    enough.set()

            writers = [asyncio.create_task(write(event)) for event in events]
            await asyncio.wait_for(enough.wait(), 120)
            nats_cluster.node(leader).kill()  # kill -9 the leader mid-run
            in_flight_at_kill = WRITES - len(acked)
            assert in_flight_at_kill > 0, "the kill came after the run"
            await asyncio.wait_for(asyncio.gather(*writers), 180)

            assert len(acked) == WRITES, "every write was acked"
            new_leader = await eventually(
                lambda: stream_leader(js, subjects.EVENTS_STREAM), 30, "a new AOC_EVENTS leader"
            )
            assert new_leader != leader

            stored = await read_stream(js, subjects.EVENTS_SUBJECTS)
            sequences = [seq for seq, _ in stored]
            ids = [envelope_decoder.decode(msg.data).id for _, msg in stored]
            doubled = [event_id for event_id, n in collections.Counter(ids).items() if n > 1]
            assert not doubled, f"stored twice: {doubled[:5]}"
            assert set(ids) == set(acked), "every acked write is stored, and nothing else"
            first = sequences[0]
            assert sequences == list(range(first, first + len(sequences))), "a gap in the stream"
            by_id = dict(zip(ids, sequences, strict=True))
            assert all(by_id[event_id] == seq for event_id, seq in acked.items()), "an ack named another seq"
            info = await js.stream_info(subjects.EVENTS_STREAM)
            assert (info.state.messages, info.state.first_seq, info.state.last_seq) == (
                WRITES,
                sequences[0],
                sequences[-1],
            )

            # the live gateway's view (followed through the kill) equals a fresh replay
            last = sequences[-1]
            await eventually(lambda: gateway_caught_up(http, last), 60, "the live gateway to catch up")
            live_rows = await activity_log(http)
        fresh = gateway_on(nats_cluster.url, tmp_path, "gw-fresh")
        fresh.start()
        try:
            async with httpx.AsyncClient(base_url=fresh.url, timeout=10) as http:
                await eventually(lambda: gateway_caught_up(http, last), 60, "a fresh gateway to replay")
                fresh_rows = await activity_log(http)
        finally:
            fresh.stop()
        assert [row["id"] for row in live_rows] == list(reversed(ids))  # newest first, stream order
        assert live_rows == fresh_rows

        # the old leader comes back (only now: its return moves the cluster's leaders again,
        # and the checks above want a settled cluster) and is a current replica again
        nats_cluster.start_node(leader)

        async def caught_up() -> bool:
            info = await js.stream_info(subjects.EVENTS_STREAM)
            peers = {peer.name: peer for peer in info.cluster.replicas or []}
            return leader in peers and bool(peers[leader].current) and not peers[leader].lag

        await eventually(caught_up, 60, f"{leader} to catch up as a replica")
    finally:
        live.stop()
        await nc.close()


@pytest.mark.timeout(300)
async def test_losing_a_whole_node_leaves_the_other_two_serving(
    nats_cluster: NatsCluster, cluster_settings, tmp_path
):
    n1, n2, n3 = nats_cluster.nodes
    nc = await connect_to([n2.url, n3.url])  # the operator's client, on the nodes that stay
    js = nc.jetstream()
    await ensure_all(js, cluster_settings)
    data = tmp_path / "data"
    engines = [  # each engine attached to one node: its NATS_URL names only that one
        EngineProcess("deploy", child_env(n1.url, data), tmp_path / "deploy.log"),
        EngineProcess("integrity-scan", child_env(n2.url, data), tmp_path / "integrity-scan.log"),
        EngineProcess("advisory-refresh", child_env(n3.url, data), tmp_path / "advisory-refresh.log"),
    ]
    gateway = GatewayProcess(child_env(n2.url, data), tmp_path / "gateway.log", free_port())
    gateway.start()
    try:
        async with engine_processes(nc, engines), httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            await eventually(lambda: gateway_caught_up(http, 0), 60, "the gateway to replay")
            assert {server["name"] for server in await servers(http)} == {"aoc-n1", "aoc-n2", "aoc-n3"}
            # n1 leads AOC_EVENTS, so losing it costs the stream a leader election too
            await eventually(lambda: lead_on(nc, subjects.EVENTS_STREAM, "aoc-n1"), 30, "n1 to lead events")
            before = (await js.stream_info(subjects.EVENTS_STREAM)).state.last_seq

            # the node dies: its nats-server and the engine process attached to it
            n1.kill()
            engines[0].kill()

            # commands to the engines on the other nodes are still answered, and acted on. A
            # stop sent at once waits for its writes while the streams n1 led elect new
            # leaders (bench/failover.py measures how long); it is answered, not lost
            for slug in ("integrity-scan", "advisory-refresh"):
                reply = await nc.request(f"aoc.ctl.{slug}.stop", b'{"reason": "node drill"}', timeout=30)
                assert b'"ok":true' in reply.data, reply.data
            await eventually(lambda: every_stream_led(js, without="aoc-n1"), 30, "new leaders on n2/n3")
            for slug in ("integrity-scan", "advisory-refresh"):  # and then within a normal budget
                reply = await nc.request(f"aoc.ctl.{slug}.status", b"", timeout=5)
                assert b'"state":"stopped"' in reply.data, reply.data

            # their events are still stored (R3 streams keep a majority on n2 + n3)
            async def stopped_events() -> list[str]:
                stored = await read_stream(js, subjects.EVENTS_SUBJECTS)
                return [
                    event.system
                    for seq, msg in stored
                    if seq > before
                    and (event := envelope_decoder.decode(msg.data)).type == "lifecycle_changed"
                    and b'"state":"stopped"' in bytes(event.data)
                ]

            await eventually(
                lambda: _has_all(stopped_events, {"integrity-scan", "advisory-refresh"}), 30, "stop events"
            )

            # the gateway still serves: the stops, the dead engine, the dead server
            async def dashboard_shows_it() -> bool:
                board = (await http.get("/api/v1/admin/dashboard", headers=auth())).json()
                states = {slug: system["state"] for slug, system in board["systems"].items()}
                return (
                    states.get("integrity-scan") == "stopped"
                    and states.get("advisory-refresh") == "stopped"
                    and states.get("deploy") == "unreachable"
                )

            await eventually(dashboard_shows_it, 30, "the dashboard to show the stops and the dead engine")

            async def n1_unreachable() -> bool:
                listed = {server["name"]: server for server in await servers(http)}
                return "aoc-n1" in listed and not listed["aoc-n1"]["reachable"]

            await eventually(n1_unreachable, 30, "health details to list aoc-n1 as unreachable")
            for stream in (await http.get("/api/v1/admin/metrics", headers=auth())).json()["nats"]["streams"]:
                assert stream["leader"] in {"aoc-n2", "aoc-n3"}, stream

            # the node comes back: its server rejoins and catches up, its engine answers again
            nats_cluster.start_node("aoc-n1")
            engines[0].start()
            await eventually(lambda: answers(nc, "deploy"), 90, "deploy to answer after the node returns")

            async def all_current() -> bool:
                listed = {server["name"]: server for server in await servers(http, fresh=True)}
                return all(
                    listed[name]["reachable"] and not listed[name]["replica_lagging"] for name in listed
                ) and bool(listed["aoc-n1"]["replica_current"] or listed["aoc-n1"]["leads"])

            await eventually(all_current, 60, "aoc-n1 to be a current replica again")
    finally:
        gateway.stop()
        await nc.close()


async def every_stream_led(js, *, without: str) -> bool:
    """Every AOC stream and bucket has a leader, and it is not ``without``."""
    infos = await js.streams_info()
    return bool(infos) and all(info.cluster and info.cluster.leader not in (None, without) for info in infos)


def gateway_on(nats_url: str, tmp_path, name: str) -> GatewayProcess:
    return GatewayProcess(child_env(nats_url, tmp_path / name), tmp_path / f"{name}.log", free_port())


async def lead_on(nc, stream: str, server: str) -> bool:
    """Ask the stream's leader to step down in favour of ``server``; True once it leads."""
    js = nc.jetstream()
    if await stream_leader(js, stream) == server:
        return True
    request = json.dumps({"placement": {"preferred": server}}).encode()
    await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", request, timeout=5)
    return False


async def _has_all(probe, wanted: set[str]) -> bool:
    return wanted <= set(await probe())


async def servers(http: httpx.AsyncClient, *, fresh: bool = False) -> list[dict]:
    """The nats-servers listed by /health/details (cached up to 2 s by the gateway)."""
    if fresh:
        await asyncio.sleep(2.1)
    return (await http.get("/health/details", headers=auth())).json()["nats"]["servers"]
