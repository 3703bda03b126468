"""Sinks against real receivers: rsyslog (RFC 5424 over TCP with octet counting, TLS,
UDP), a Splunk-HEC-compatible endpoint that checks the token, a webhook endpoint that
checks the HMAC. Events go into AOC_EVENTS on a real nats-server; the SIEM service runs
in-process and delivers them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime

import pytest

from contracts.events import ActivityRecorded, Envelope, Summary, new_event
from contracts.settings import Settings
from contracts.streams import ensure_all
from services.runtime.bus import EventPublisher
from services.siem.service import SiemService
from tests.siem.conftest import Hec, WebhookEndpoint, siem_settings, until

HEC_TOKEN = "9f4a2c1e-hec-token-for-tests"
WEBHOOK_SECRET = b"webhook-secret-for-tests-0123456789"


def webhook_sink(url: str, batch: int = 10, **extra) -> dict:
    """The webhook sink the tests deliver through, signed with WEBHOOK_SECRET."""
    return {
        "name": "hook",
        "kind": "webhook",
        "url": url,
        "allow_http": True,
        "secret": WEBHOOK_SECRET.decode(),
        "batch": batch,
        **extra,
    }


def sample(i: int, **summary) -> Envelope:
    return new_event(
        system="soc-cycle",
        payload=ActivityRecorded(details={"n": i, "note": 'quote " bracket ] backslash \\ é'}),
        summary=Summary(action="test_event", detail=f"event {i}", **summary),
        actor=f"tester-{i % 3}",
    )


async def publish(nc, count: int, start: int = 0) -> list[Envelope]:
    js = nc.jetstream()
    publisher = EventPublisher(js)
    events = [sample(start + i) for i in range(count)]
    batch = publisher.batch()
    for event in events:
        await batch.publish(event)
    await batch.confirmed()
    return events


@contextlib.asynccontextmanager
async def running_siem(settings: Settings, **kwargs):
    service = SiemService(settings, **kwargs)
    await service.open()
    try:
        yield service
    finally:
        await service.close()


def sink_status(service: SiemService, name: str):
    return next(runner.status for runner in service.runners if runner.config.name == name)


# --- syslog over rsyslog ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "tls", "udp"])
async def test_syslog_reaches_rsyslog_parsed_as_rfc5424(
    transport, rsyslog_factory, certificate, settings, nc
):
    receiver = await rsyslog_factory(transport, certificate if transport == "tls" else None)
    sink = {"name": "rsyslog", "kind": "syslog", "url": receiver.url, "hostname": "aoc-test", "batch": 7}
    if transport == "tls":
        sink["ca_file"] = str(certificate.cert)
    await ensure_all(nc.jetstream(), settings)
    async with running_siem(siem_settings(settings, [sink])) as service:
        await until(lambda: service.runners[0].status.state != "starting", what="the sink bound")
        events = await publish(nc, 20)
        await until(lambda: len(receiver.messages()) >= 20, what="20 messages in rsyslog")
        await until(lambda: sink_status(service, "rsyslog").delivered == 20, what="all 20 acknowledged")
    messages = receiver.messages()
    assert [json.loads(m["msg"].removeprefix("\ufeff"))["id"] for m in messages] == [e.id for e in events]
    for message, event in zip(messages, events, strict=True):
        # every header field is what we sent: rsyslog parsed it as RFC 5424 (a field it
        # could not parse would carry the reception time, 'localhost' or '-')
        assert message["protocol_version"] == "1"
        assert message["pri"] == str(13 * 8 + 6)  # log audit, informational
        assert datetime.fromisoformat(message["timestamp"]) == event.time
        assert message["hostname"] == "aoc-test"
        assert message["app_name"] == "aoc"
        assert message["msgid"] == "activity_recorded"
        assert message["msg"].startswith("\ufeff")  # MSG is UTF-8, announced by the BOM
        params = message["sd"]["aoc@32473"]  # mmpstrucdata parsed the SD element
        assert params["id"] == event.id and params["system"] == "soc-cycle"
        assert params["actor"] == event.actor and params["type"] == "activity_recorded"
        envelope = json.loads(message["msg"].removeprefix("\ufeff"))
        assert envelope["data"]["details"]["note"] == 'quote " bracket ] backslash \\ é'


async def test_rsyslog_discards_what_is_not_rfc5424(rsyslog_factory):
    """The receiver tells RFC 5424 from anything else: a BSD-syslog (RFC 3164) line in an
    octet-counted frame does not come out as a version-1 message with our fields, a
    well-formed one next to it does (so the field-by-field check above means something)."""
    import asyncio

    receiver = await rsyslog_factory("tcp")
    good = b'<110>1 2026-12-02T03:00:00.000001Z h aoc - t [aoc@32473 id="x"] \xef\xbb\xbf{"ok": 1}'
    legacy = b"<34>Oct 11 22:14:15 mymachine su: a BSD syslog line"
    _, writer = await asyncio.open_connection("127.0.0.1", receiver.port)
    for frame in (legacy, good):
        writer.write(b"%d " % len(frame) + frame)
    await writer.drain()
    writer.close()
    await until(lambda: len(receiver.messages()) >= 2, what="both frames handled")
    parsed = [m for m in receiver.messages() if m["protocol_version"] == "1"]
    assert [(m["hostname"], m["app_name"], m["msg"]) for m in parsed] == [("h", "aoc", '\ufeff{"ok": 1}')]
    assert parsed[0]["sd"] == {"aoc@32473": {"id": "x"}}


# --- Splunk HEC ---------------------------------------------------------------------------


async def test_hec_batches_with_the_token_over_tls(http_receivers, certificate, settings, nc):
    hec = Hec(HEC_TOKEN)
    receiver = await http_receivers(hec, certificate)
    sink = {
        "name": "splunk",
        "kind": "hec",
        "url": receiver.url,
        "token": HEC_TOKEN,
        "ca_file": str(certificate.cert),
        "index": "aoc",
        "batch": 25,
    }
    await ensure_all(nc.jetstream(), settings)
    async with running_siem(siem_settings(settings, [sink])) as service:
        await until(lambda: service.runners[0].status.state != "starting", what="the sink bound")
        events = await publish(nc, 60)
        await until(lambda: len(hec.events) >= 60, what="60 events at the HEC")
        await until(lambda: sink_status(service, "splunk").delivered == 60, what="all 60 acknowledged")
        await service.runners[0].refresh_lag()
        assert sink_status(service, "splunk").lag == 0
    assert [item["event"]["id"] for item in hec.events] == [e.id for e in events]
    first = hec.events[0]
    assert first["index"] == "aoc" and first["sourcetype"] == "aoc:event" and first["source"] == "aoc"
    assert first["fields"]["aoc_system"] == "soc-cycle" and first["fields"]["aoc_seq"] >= 1
    assert abs(first["time"] - events[0].time.timestamp()) < 1e-5
    assert hec.refused == 0


async def test_hec_with_a_wrong_token_keeps_every_event_in_the_stream(http_receivers, settings, nc):
    hec = Hec(HEC_TOKEN)
    receiver = await http_receivers(hec)
    sink = {
        "name": "splunk",
        "kind": "hec",
        "url": receiver.url,
        "allow_http": True,
        "token": "wrong-token",
        "retry_initial_s": 0.05,
        "retry_max_s": 0.2,
    }
    await ensure_all(nc.jetstream(), settings)
    async with running_siem(siem_settings(settings, [sink])) as service:
        await until(lambda: service.runners[0].status.state != "starting", what="the sink bound")
        await publish(nc, 5)
        status = sink_status(service, "splunk")
        await until(lambda: status.consecutive_failures >= 3, what="three refused attempts")
        await service.runners[0].refresh_lag()
        assert (
            status.state == "retrying"
            and "HTTP 403" in status.last_error
            and "Invalid token" in status.last_error
        )
        assert status.lag == 5 and status.delivered == 0  # nothing acknowledged, nothing lost
        assert hec.events == [] and hec.refused >= 3
        assert "wrong-token" not in status.last_error


async def test_a_holder_whose_lease_went_stale_sends_nothing_until_it_renews(http_receivers, settings, nc):
    # a holder frozen past its lease window wakes with its sinks running: not one request
    # until the keeper has renewed (or fenced), or it would interleave with the next holder
    endpoint = WebhookEndpoint(WEBHOOK_SECRET)
    receiver = await http_receivers(endpoint, path="/hooks/aoc")
    await ensure_all(nc.jetstream(), settings)
    async with running_siem(siem_settings(settings, [webhook_sink(receiver.url)])) as service:
        await until(lambda: service.runners[0].status.state != "starting", what="the sink bound")
        renewed = False
        service.keeper.fresh = lambda: renewed  # type: ignore[method-assign]
        events = await publish(nc, 5)
        await asyncio.sleep(1.5)  # the batch is fetched and held
        assert endpoint.events == [] and sink_status(service, "hook").delivered == 0
        renewed = True
        await until(lambda: len(endpoint.events) >= 5, what="the 5 events once renewed")
    assert [event["id"] for event in endpoint.events] == [e.id for e in events]


# --- webhook ------------------------------------------------------------------------------


async def test_webhook_is_signed_and_each_batch_has_a_delivery_id(http_receivers, settings, nc):
    endpoint = WebhookEndpoint(WEBHOOK_SECRET)
    receiver = await http_receivers(endpoint, path="/hooks/aoc")
    sink = webhook_sink(receiver.url)
    await ensure_all(nc.jetstream(), settings)
    async with running_siem(siem_settings(settings, [sink])) as service:
        await until(lambda: service.runners[0].status.state != "starting", what="the sink bound")
        events = await publish(nc, 30)
        await until(lambda: len(endpoint.events) >= 30, what="30 events at the webhook")
    assert [event["id"] for event in endpoint.events] == [e.id for e in events]
    assert endpoint.refused == 0
    for batch, delivery in zip(endpoint.batches, endpoint.deliveries, strict=True):
        assert len(batch["events"]) <= 10
        assert delivery == batch["delivery"] == f"hook-{batch['first_seq']}-{batch['last_seq']}"
        assert [item["seq"] for item in batch["events"]][-1] == batch["last_seq"]


async def test_a_tampered_webhook_is_refused_by_the_receiver(http_receivers):
    import httpx

    endpoint = WebhookEndpoint(WEBHOOK_SECRET)
    receiver = await http_receivers(endpoint, path="/hooks/aoc")
    async with httpx.AsyncClient() as client:
        response = await client.post(
            receiver.url,
            content=b'{"events": []}',
            headers={"X-AOC-Timestamp": "1", "X-AOC-Signature": "sha256=00", "X-AOC-Delivery": "x"},
        )
    assert response.status_code == 401 and endpoint.batches == []
