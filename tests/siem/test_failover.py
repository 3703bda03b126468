"""Two real SIEM processes (``python -m services.siem``, own AOC_INSTANCE_ID), one webhook
receiver: one process is active (the lease ``siem`` in aoc_leases), the other a standby
that delivers nothing. kill -9 of the active one with a batch at the receiver but not
acknowledged: the standby takes over when the lease expires, sends that batch again first
(the documented at-least-once re-send) and then everything published before and after the
kill, in stream order, none missing. Only one process delivers at a time: each batch
names the process that sent it, and the senders never alternate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psutil
import pytest
from starlette.requests import Request
from starlette.responses import Response

from contracts.siem import SIEM_STATUS_BUCKET, instance_decoder, presence_key
from contracts.streams import ensure_all, leases_bucket
from services.runtime.bus import EventPublisher
from services.runtime.lease import Holder
from services.siem.service import SiemService
from tests.siem.conftest import WebhookEndpoint, read_status, siem_settings, until, until_status
from tests.siem.test_alerts import alert_events, command, event
from tests.siem.test_outage import (
    AcceptThenHang,
    assert_in_order_with_at_most_one_batch_again,
    assert_only_the_hung_batch_came_twice,
    siem_process_env,
)
from tests.siem.test_sinks import WEBHOOK_SECRET, publish, webhook_sink

ROOT = Path(__file__).resolve().parents[2]
LEASE_TTL = "2"
pytestmark = pytest.mark.timeout(180)


class Senders:
    """Which process sent each batch: the webhook's client port belongs to one process
    (the receiver asks the kernel who owns the peer's socket)."""

    def __init__(self, inner: AcceptThenHang, pids: dict[int, str]) -> None:
        self.inner = inner
        self.pids = pids
        self.batches: list[str] = []

    async def __call__(self, request: Request) -> Response:
        port = request.client.port if request.client else 0
        owner = "?"
        for pid, instance in self.pids.items():
            with contextlib.suppress(psutil.Error):
                if any(conn.laddr.port == port for conn in psutil.Process(pid).net_connections(kind="tcp")):
                    owner = instance
        self.batches.append(owner)
        return await self.inner(request)


async def lease_holder(nc, settings) -> Holder | None:
    kv = await nc.jetstream().key_value(leases_bucket(settings).bucket)
    try:
        entry = await kv.get("siem")
    except Exception:
        return None
    return msgspec.json.decode(entry.value, type=Holder) if entry.value else None


async def test_kill_9_of_the_active_siem_instance_the_standby_delivers_the_rest_in_order(
    http_receivers, settings, settings_env, nc
):
    endpoint = WebhookEndpoint(WEBHOOK_SECRET)
    hanging = AcceptThenHang(endpoint)
    pids: dict[int, str] = {}
    senders = Senders(hanging, pids)
    receiver = await http_receivers(senders, path="/hook")
    batch = 10
    sink = webhook_sink(receiver.url, batch, timeout_s=60)  # a hung batch must not time out
    env = siem_process_env(settings_env, settings, sink, AOC_LEASE_TTL=LEASE_TTL)
    await ensure_all(nc.jetstream(), settings)
    logs = Path(settings.data_dir).parent
    children: dict[str, asyncio.subprocess.Process] = {}

    async def spawn(instance: str) -> None:
        with open(logs / f"{instance}.log", "ab") as log:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.siem",
                env={**env, "AOC_INSTANCE_ID": instance},
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        children[instance] = child
        pids[child.pid] = instance

    try:
        await spawn("siem-1")
        status = await until_status(
            nc, lambda s: s.sinks and s.sinks[0].state == "idle", what="siem-1 active, its sink bound"
        )
        assert status.instance == "siem-1"
        await spawn("siem-2")
        # the standby is there (its presence key) and says it is a standby
        kv = await nc.jetstream().key_value(SIEM_STATUS_BUCKET)

        async def standby_seen() -> bool:
            try:
                entry = await kv.get(presence_key("siem-2"))
            except Exception:
                return False
            return instance_decoder.decode(entry.value).role == "standby"

        deadline = asyncio.get_running_loop().time() + 30
        while not await standby_seen():
            assert asyncio.get_running_loop().time() < deadline, "siem-2 never said it is a standby"
            await asyncio.sleep(0.1)
        status = await until_status(nc, lambda s: s.standbys == ["siem-2"], what="the standby listed")
        assert status.instance == "siem-1" and status.epoch > 0

        first = await publish(nc, 30)
        await until(lambda: len(endpoint.events) >= 30, timeout=30, what="the first 30 events")
        assert set(senders.batches) == {"siem-1"}  # the standby delivered nothing

        hanging.hang.set()
        second = await publish(nc, 5, start=30)
        await asyncio.wait_for(hanging.hung.wait(), 30)  # at the receiver, unacknowledged
        os.kill(children["siem-1"].pid, signal.SIGKILL)
        await children["siem-1"].wait()
        hanging.hang.clear()
        third = await publish(nc, 40, start=35)  # while nobody is active

        published = [event.id for event in first + second + third]
        await until(lambda: set(endpoint.events_ids()) >= set(published), timeout=60, what="everything")
        status = await until_status(nc, lambda s: s.instance == "siem-2", what="siem-2 writes the status")
        assert status.epoch > 0
        holder = await lease_holder(nc, settings)
        assert holder is not None and holder.instance == "siem-2"
        fourth = await publish(nc, 12, start=75)
        published += [event.id for event in fourth]
        await until(lambda: set(endpoint.events_ids()) >= set(published), timeout=30, what="after takeover")
    finally:
        for child in children.values():
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
                await asyncio.wait_for(child.wait(), 15)

    received = endpoint.events_ids()
    assert_in_order_with_at_most_one_batch_again(received, published, batch)
    # exactly the hung batch came twice, with the same delivery id (receivers dedup on it)
    assert_only_the_hung_batch_came_twice(endpoint, received, published, second)
    # one deliverer at a time: siem-1's batches, then siem-2's, never interleaved
    assert "?" not in senders.batches, senders.batches
    switch = senders.batches.index("siem-2")
    assert set(senders.batches[:switch]) == {"siem-1"} and set(senders.batches[switch:]) == {"siem-2"}
    # a clean shutdown removed the standby's presence; the lease was handed back
    assert await lease_holder(nc, settings) is None


# --- in one process: the alert rules across a takeover, and fencing -----------------------


async def test_a_takeover_fires_no_alert_twice_and_a_holder_that_cannot_renew_runs_nothing(settings, nc, tap):
    base = siem_settings(settings, [], lease_ttl=1.5)
    first = SiemService(base.model_copy(update={"instance_id": "siem-a"}))
    second = SiemService(base.model_copy(update={"instance_id": "siem-b"}))
    publisher = EventPublisher(nc.jetstream())
    await first.open()
    await second.open()
    try:
        assert first.active and not second.active
        assert second.follower is None and second.runners == []  # the standby runs nothing
        await until(lambda: first.follower.ready.is_set(), what="rules ready")
        await until(lambda: "siem-b" in first.peers, what="the standby's presence")
        await first.write_status()
        status = await read_status(nc)
        assert (status.instance, status.standbys) == ("siem-a", ["siem-b"])
        await publisher.publish(
            event("kill_switch_engaged", "gateway", {"succeeded": 7, "failed": 0}, at=datetime.now(UTC))
        )
        fired = await tap.wait_for(lambda e: e.type == "alert_fired", timeout=10)

        # the holder loses the bus: it stops its rules before the lease can expire
        renew = first.lease.renew

        async def no_server() -> None:
            raise ConnectionError("no server")

        first.lease.renew = no_server  # type: ignore[method-assign]
        await until(lambda: first.role == "suspended", timeout=10, what="the holder fenced")
        assert all(task.done() for task in first.follower._tasks)
        # the lease runs out; the standby takes it and replays: the alert is known, open
        await until(lambda: second.active, timeout=15, what="the standby took over")
        await until(lambda: second.follower.ready.is_set(), what="rules replayed")
        await until(lambda: second.follower.applied_seq >= tap.events[-1][0], what="caught up")
        assert [alert.id for alert in second.engine.open_alerts()] == [fired.id]
        # back on the bus, the old holder finds the lease taken and stays a standby
        first.lease.renew = renew  # type: ignore[method-assign]
        await until(lambda: first.role == "standby", timeout=10, what="the old holder deposed")
        # the same engagement again: deduplicated by rule and target
        await publisher.publish(
            event("command_handled", "deploy", command("stop", "deploy", origin="all"), at=datetime.now(UTC))
        )
        await until(lambda: second.follower.applied_seq >= tap.events[-1][0], what="caught up again")
        await second.write_status()
        status = await read_status(nc)
        assert status.instance == "siem-b" and status.epoch == second.lease.epoch
    finally:
        await first.close()
        await second.close()
    fired_events = [
        e for e in alert_events(tap, "alert_fired") if msgspec.json.decode(e.data)["target"] == "all"
    ]
    assert [e.id for e in fired_events] == [fired.id]
