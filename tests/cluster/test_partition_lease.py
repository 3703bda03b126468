"""Issue 13 §7 d: a network partition of one nats-server (its own network namespace and a
veth pair, cut with ``ip link set … down``) with the active instance of an engine
attached to it. The instance fences itself, a standby on the majority side takes over,
and the event stream's epochs show at most one active instance at any moment: the
intervals in which each epoch wrote events never overlap. Healed, the old instance
finds its lease taken and leaves (exit 75), never writing as active again."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime

import pytest

from contracts import subjects
from contracts.events import envelope_decoder
from tests.cluster.conftest import EngineProcess, child_env, connect_to, eventually, read_stream
from tests.cluster.netns import IsolatedHost, PartitionableCluster, netns_unavailable

REASON = netns_unavailable()
pytestmark = [
    pytest.mark.skipif(REASON is not None, reason=f"no network namespaces: {REASON}"),
    pytest.mark.timeout(300),
]
TTL = "3"


def epoch_intervals(events: list) -> dict[int, tuple[datetime, datetime, set[str]]]:
    """For each lease epoch of the engine: when it first and last wrote, and who."""
    spans: dict[int, tuple[datetime, datetime, set[str]]] = {}
    for event in events:
        if not event.epoch:
            continue
        first, last, who = spans.get(event.epoch, (event.time, event.time, set()))
        spans[event.epoch] = (min(first, event.time), max(last, event.time), who | {event.instance})
    return spans


async def test_a_partitioned_active_instance_is_replaced_and_never_overlaps(tmp_path):
    with IsolatedHost.create() as host, PartitionableCluster(tmp_path / "cluster", host).start() as cluster:
        nc = await connect_to([node.url for node in cluster.outside])
        data = tmp_path / "data"
        common = {"AOC_LEASE_TTL": TTL}
        inside = EngineProcess(
            "deploy",
            child_env(cluster.inside.url, data, AOC_INSTANCE_ID="deploy-1", **common),
            tmp_path / "deploy-1.log",
            command_prefix=host.exec_prefix,
        )
        outside = EngineProcess(
            "deploy",
            child_env(cluster.outside[0].url, data, AOC_INSTANCE_ID="deploy-2", **common),
            tmp_path / "deploy-2.log",
        )
        try:
            inside.start()

            async def active_is(instance: str) -> bool:
                reply = await nc.request("aoc.ctl.deploy.status", b"", timeout=1)
                return f'"instance":"{instance}"'.encode() in reply.data and b'"role":"active"' in reply.data

            await eventually(lambda: active_is("deploy-1"), 90, "deploy-1 to be active")
            outside.start()
            await asyncio.sleep(2)  # the standby is up and polling the lease

            host.cut()  # deploy-1 and its server are cut off from the majority
            await eventually(lambda: active_is("deploy-2"), 60, "deploy-2 to take over")

            # Request/reply is at most once: until the servers notice the dead route (~6-8 s
            # with the launcher's ping settings) a request may be routed to the cut-off
            # instance's interest and lost. So the operator retries, with one command id:
            # the stop is applied once however many tries reach it.
            async def stopped() -> bool:
                body = b'{"reason":"partition drill","command_id":"partition-drill-1"}'
                reply = await nc.request("aoc.ctl.deploy.stop", body, timeout=5)
                return b'"ok":true' in reply.data

            await eventually(stopped, 90, "the stop to be answered")

            host.heal()
            # the old active instance sees the lease taken and leaves (exit 75, not a crash)
            await eventually(lambda: _exited(inside), 60, "deploy-1 to leave")
            assert inside.process.returncode == 75, inside.log()[-3000:]

            js = nc.jetstream()
            events: list = []

            async def both_epochs_stored() -> bool:
                stored = await read_stream(js, subjects.evt("deploy", ">"))
                events[:] = [envelope_decoder.decode(msg.data) for _, msg in stored]
                return len(epoch_intervals(events)) >= 2

            await eventually(both_epochs_stored, 30, "the events of both epochs")
            spans = epoch_intervals(events)
            ordered = sorted(spans.items())
            for (epoch, (_, last, who)), (later, (first, _, other)) in itertools.pairwise(ordered):
                assert len(who) == 1 and len(other) == 1, (epoch, who, later, other)
                assert last <= first, (
                    f"epoch {epoch} ({who}) wrote at {last}, after epoch {later} began at {first}"
                )
            took = [e for e in events if e.type == "instance_took_over"]
            assert took and took[-1].payload().instance == "deploy-2"
            assert took[-1].payload().previous_instance == "deploy-1"
        finally:
            host.heal()
            for engine in (inside, outside):
                engine.kill()
            await nc.close()


async def _exited(engine: EngineProcess) -> bool:
    return engine.process is not None and engine.process.poll() is not None
