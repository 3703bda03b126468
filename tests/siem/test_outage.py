"""A receiver that goes away loses nothing: the stream is the buffer, the batch is
retried with backoff, and once the receiver is back every event arrives, in order. The
only duplicates allowed are one batch delivered again (at-least-once: accepted by the
receiver, but the acknowledgement did not reach the stream)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contracts.streams import ensure_all
from tests.siem.conftest import Hec, WebhookEndpoint, siem_settings, until, until_status
from tests.siem.test_sinks import HEC_TOKEN, WEBHOOK_SECRET, publish, running_siem, sink_status, webhook_sink

ROOT = Path(__file__).resolve().parents[2]


def assert_in_order_with_at_most_one_batch_again(
    received: list[str], published: list[str], batch: int
) -> None:
    """``received`` is ``published`` in order, except that one run of at most ``batch``
    events may appear a second time right after itself."""
    first_seen: dict[str, int] = {}
    for index, event_id in enumerate(received):
        first_seen.setdefault(event_id, index)
    unique = sorted(first_seen, key=first_seen.__getitem__)
    assert unique == published, "an event is missing or out of order"
    duplicates = len(received) - len(unique)
    assert duplicates <= batch, f"{duplicates} duplicates: more than one batch was delivered twice"
    if duplicates:
        # the repeated run is a contiguous block of the published order
        repeated = [event_id for index, event_id in enumerate(received) if first_seen[event_id] != index]
        start = published.index(repeated[0])
        assert repeated == published[start : start + len(repeated)]


def assert_only_the_hung_batch_came_twice(
    endpoint: WebhookEndpoint, received: list[str], published: list[str], second: list
) -> None:
    """Exactly one batch, the one left unacknowledged, came twice, under the same delivery
    id (receivers dedup on it). It holds the events published while the receiver hung, or
    the first of them when the runner fetched before all had arrived."""
    deliveries = endpoint.deliveries
    repeated = {delivery for delivery in deliveries if deliveries.count(delivery) > 1}
    assert len(repeated) == 1 and len(deliveries) - len(set(deliveries)) == 1, deliveries
    hung = endpoint.batches[deliveries.index(repeated.pop())]
    assert hung["events"][0]["event"]["id"] == second[0].id and hung["count"] <= len(second), deliveries
    assert len(received) - len(published) == hung["count"], deliveries


@pytest.mark.parametrize("kind", ["syslog-tcp", "hec", "webhook"])
async def test_receiver_down_then_up_loses_nothing(kind, rsyslog_factory, http_receivers, settings, nc):
    batch = 20
    retry = {"retry_initial_s": 0.05, "retry_max_s": 0.5, "batch": batch, "timeout_s": 2}
    if kind == "syslog-tcp":
        receiver = await rsyslog_factory("tcp")
        sink = {"name": "out", "kind": "syslog", "url": receiver.url, **retry}

        def received() -> list[str]:
            return [event["id"] for event in receiver.events()]
    elif kind == "hec":
        hec = Hec(HEC_TOKEN)
        receiver = await http_receivers(hec)
        sink = {
            "name": "out",
            "kind": "hec",
            "url": receiver.url,
            "allow_http": True,
            "token": HEC_TOKEN,
            **retry,
        }

        def received() -> list[str]:
            return [item["event"]["id"] for item in hec.events]
    else:
        endpoint = WebhookEndpoint(WEBHOOK_SECRET)
        receiver = await http_receivers(endpoint, path="/hook")
        secret = WEBHOOK_SECRET.decode()
        sink = {
            "name": "out",
            "kind": "webhook",
            "url": receiver.url,
            "allow_http": True,
            "secret": secret,
            **retry,
        }

        def received() -> list[str]:
            return [event["id"] for event in endpoint.events]

    await ensure_all(nc.jetstream(), settings)
    async with running_siem(siem_settings(settings, [sink])) as service:
        await until(lambda: service.runners[0].status.state != "starting", what="the sink bound")
        before = await publish(nc, 50)
        await until(lambda: len(received()) >= 50, what="the first 50 events")

        await receiver.stop()
        during = await publish(nc, 300, start=50)
        status = sink_status(service, "out")
        await until(lambda: status.consecutive_failures >= 3, what="the sink noticing the outage")
        assert status.state == "retrying" and status.last_error
        await service.runners[0].refresh_lag()
        assert status.lag >= 300 - batch  # waiting in the stream, not in memory

        await receiver.start()
        published = [event.id for event in before + during]
        await until(lambda: set(received()) >= set(published), timeout=30, what="catch-up")
        await until(lambda: status.state in ("delivering", "idle"), what="the sink healthy again")
    assert_in_order_with_at_most_one_batch_again(received(), published, batch)
    assert status.consecutive_failures == 0 and status.last_error  # the last error stays on record


# --- the service killed with a batch in flight ---------------------------------------------


def siem_process_env(settings_env: dict[str, str], settings, sink: dict, **extra: str) -> dict[str, str]:
    """The environment of a SIEM service process delivering to ``sink`` on loopback."""
    return {
        **settings_env,
        "AOC_SIEM_SINKS": siem_settings(settings, [sink]).siem_sinks or "",
        "AOC_SIEM_ALLOWED_HOSTS": "127.0.0.1",
        "AOC_SIEM_ALLOWED_NETWORKS": "127.0.0.0/8",
        **extra,
    }


class AcceptThenHang:
    """A webhook receiver that records batches, but, while ``hang`` is set, never answers
    (the batch is accepted at the receiver, the acknowledgement never reaches AOC)."""

    def __init__(self, endpoint: WebhookEndpoint) -> None:
        self.endpoint = endpoint
        self.hang = asyncio.Event()
        self.hung = asyncio.Event()

    async def __call__(self, request: Request) -> Response:
        response = await self.endpoint(request)
        if self.hang.is_set():
            self.hung.set()
            await asyncio.Event().wait()  # until the server goes away
        return response if response.status_code != 200 else JSONResponse({"ok": True})


async def test_kill_9_of_the_service_mid_batch_loses_nothing_and_keeps_order(
    http_receivers, settings, settings_env, nc
):
    endpoint = WebhookEndpoint(WEBHOOK_SECRET)
    hanging = AcceptThenHang(endpoint)
    receiver = await http_receivers(hanging, path="/hook")
    batch = 10
    sink = webhook_sink(receiver.url, batch, timeout_s=60)  # a hung batch must not time out
    env = siem_process_env(settings_env, settings, sink)
    await ensure_all(nc.jetstream(), settings)
    log = open(Path(settings.data_dir).parent / "siem.log", "ab")  # noqa: SIM115 - closed below
    spawn = [sys.executable, "-m", "services.siem"]
    try:
        child = await asyncio.create_subprocess_exec(*spawn, env=env, cwd=ROOT, stdout=log, stderr=log)
        await until_status(nc, lambda s: s.sinks and s.sinks[0].state == "idle", what="the sink bound")
        first = await publish(nc, 30)
        await until(lambda: len(endpoint.events) >= 30, timeout=30, what="the first 30 events")

        hanging.hang.set()
        second = await publish(nc, 5, start=30)
        await asyncio.wait_for(hanging.hung.wait(), 30)  # the batch is at the receiver, unacknowledged
        os.kill(child.pid, signal.SIGKILL)
        await child.wait()
        hanging.hang.clear()
        third = await publish(nc, 40, start=35)  # while the service is dead

        child = await asyncio.create_subprocess_exec(*spawn, env=env, cwd=ROOT, stdout=log, stderr=log)
        published = [event.id for event in first + second + third]
        # the batch the dead run held goes out again first, read from the stream
        await until(lambda: set(endpoint.events_ids()) >= set(published), timeout=60, what="everything")
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            await asyncio.wait_for(child.wait(), 15)
        log.close()
    received = endpoint.events_ids()
    assert_in_order_with_at_most_one_batch_again(received, published, batch)
    # exactly the hung batch came twice, with the same delivery id (receivers dedup on it)
    assert_only_the_hung_batch_came_twice(endpoint, received, published, second)
