"""Smoke test of tests/cluster/netns.py, the partition helper for issue 13 §7 d: a cluster
member in its own network namespace forms the cluster, is really cut off when its link
goes down (its side cannot write; the majority can), and catches up when it heals."""

from __future__ import annotations

import sys

import pytest
from nats.js.api import StreamConfig

from tests.cluster.conftest import connect_to, eventually, read_stream, stream_leader
from tests.cluster.netns import IsolatedHost, PartitionableCluster, netns_unavailable

REASON = netns_unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no network namespaces: {REASON}")

STREAM, SUBJECT = "NETNS_SMOKE", "netns.smoke"

# run inside the namespace: one acked publish to the inside member, whatever it answers
INSIDE_PUBLISH = """
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1], connect_timeout=2, allow_reconnect=False)
    try:
        await nc.jetstream().publish("netns.smoke", b"from inside", timeout=3)
        print("stored")
    except Exception as exc:
        print(type(exc).__name__)
    await nc.close()
asyncio.run(main())
"""


@pytest.mark.timeout(240)
async def test_a_member_in_its_own_namespace_is_partitioned_and_heals(tmp_path):
    with IsolatedHost.create() as host, PartitionableCluster(tmp_path / "cluster", host).start() as cluster:
        nc = await connect_to([node.url for node in cluster.outside])
        js = nc.jetstream()
        try:
            await js.add_stream(StreamConfig(name=STREAM, subjects=[f"{SUBJECT}.>", SUBJECT], num_replicas=3))
            info = await js.stream_info(STREAM)
            peers = {info.cluster.leader, *(peer.name for peer in info.cluster.replicas or [])}
            assert peers == {"aoc-n1", "aoc-n2", "aoc-n3"}, "the inside member holds a replica"
            for n in range(10):
                await js.publish(SUBJECT, f"before {n}".encode(), timeout=5)

            host.cut()
            # the majority outside keeps (or elects) a leader and takes writes
            await eventually(
                lambda: _outside_leads(js), 60, "a leader outside the cut-off namespace", interval=0.2
            )
            for n in range(10):  # retried until acked; the id keeps a retry from storing it twice
                await eventually(lambda n=n: during(js, n), 30, "a write during the partition")
            # the cut-off member cannot store anything: no quorum on its side
            inside = host.inside(sys.executable, "-c", INSIDE_PUBLISH, cluster.inside.url).stdout.strip()
            assert inside != "stored", inside

            host.heal()

            async def inside_caught_up() -> bool:
                info = await js.stream_info(STREAM)
                replicas = {peer.name: peer for peer in info.cluster.replicas or []}
                n3 = replicas.get("aoc-n3")
                return info.cluster.leader == "aoc-n3" or bool(n3 and n3.current and not n3.lag)

            await eventually(inside_caught_up, 90, "aoc-n3 to catch up after the heal", interval=0.2)
            stored = [bytes(m.data).decode() for _, m in await read_stream(js, SUBJECT)]
            acked = [f"before {n}" for n in range(10)] + [f"during {n}" for n in range(10)]
            assert [m for m in stored if m != "from inside"] == acked  # every acked write, once, in order
            # The cut-off side's publish was never acked, yet it may be stored after the heal:
            # a link that goes down keeps its TCP connections, and what the inside member had
            # sent into its route is delivered when the link comes back. Unacked means unknown.
            assert stored.count("from inside") <= 1
        finally:
            await nc.close()


async def during(js, n: int):
    headers = {"Nats-Msg-Id": f"during-{n}"}
    return await js.publish(SUBJECT, f"during {n}".encode(), timeout=2, headers=headers)


async def _outside_leads(js) -> bool:
    return await stream_leader(js, STREAM) in {"aoc-n1", "aoc-n2"}
