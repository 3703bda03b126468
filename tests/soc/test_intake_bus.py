"""Alerts in the products' formats end to end, against a real nats-server: over NATS
(``aoc.in.soc.alerts[.<format>]``, the FastStream subscribers of soc-cycle) and over HTTP
(``POST /api/v1/soc/alerts?format=``), through triage to decisions; mixed batches; the
audit of what was refused; the intake answering while the SOC is stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from contracts import soc
from contracts.commands import reply_decoder
from contracts.settings import Settings
from services.runtime.testing import running_engines
from tests.soc.conftest import decided, payload, wait_until

SAMPLES = Path(__file__).parent / "samples"
intake_reply = msgspec.json.Decoder(soc.IntakeReply)


def read(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


async def ask(nc, subject: str, body: bytes) -> soc.IntakeReply:
    return intake_reply.decode((await nc.request(subject, body, timeout=5)).data)


@pytest.fixture
async def soc_and_gateway(http, soc_settings: Settings):
    async with running_engines(soc_settings, ["ml-retrain", "soc-cycle"]) as hosts:
        await wait_until(lambda: hosts["soc-cycle"].engine.bundle is not None, timeout=30)
        yield hosts


FORMAT_SAMPLES = [
    ("suricata-eve", "suricata-eve/beats-eve-alerts.ndjson", 3),
    ("wazuh", "wazuh/integratord-sshd-5712.json", 1),
    ("ecs", "ecs/kibana-8.1.0-threat-match-alert.json", 1),
    ("ocsf", "ocsf/guardduty-detection-finding.json", 1),
]


async def test_every_format_over_nats_is_triaged(soc_stack, nc, tap):
    ids: set[str] = set()
    for fmt, name, count in FORMAT_SAMPLES:
        reply = await ask(nc, f"{soc.ALERT_INTAKE}.{fmt}", read(name))
        assert reply.ok and reply.accepted == count and reply.format == fmt and not reply.rejected, reply
        ids |= set(reply.ids)
    # the format of a body sent to the plain subject is detected
    detected = await ask(nc, soc.ALERT_INTAKE, read("wazuh/docs-mitre-sshd-100003.json"))
    assert detected.ok and detected.format == "wazuh"
    ids |= set(detected.ids)
    found = await wait_until(lambda: (d := decided(tap)) and set(d) >= ids and d)
    assert all(len(found[alert_id]) == 1 for alert_id in ids)
    sources = {found[alert_id][0].alert.source for alert_id in ids}
    assert sources == {"suricata", "wazuh", "elastic-security", "guardduty"}
    # the same lines again: the same alert ids, the same queue message id: the stream keeps
    # the first copy only, and nothing is decided twice
    js = nc.jetstream()
    before = (await js.stream_info(soc.ALERTS_STREAM)).state.last_seq
    again = await ask(nc, f"{soc.ALERT_INTAKE}.suricata-eve", read("suricata-eve/beats-eve-alerts.ndjson"))
    assert again.ok and set(again.ids) <= ids
    assert (await js.stream_info(soc.ALERTS_STREAM)).state.last_seq == before
    await asyncio.sleep(0.3)
    assert all(len(decisions) == 1 for decisions in decided(tap).values())


async def test_a_mixed_batch_over_nats_is_partly_accepted_and_audited(soc_stack, nc, tap):
    body = b"\n".join(
        line
        for name in (
            "suricata-eve/oisf-doc-alert-http.json",
            "suricata-eve/oisf-doc-fileinfo.json",
            "ocsf/inspector-vulnerability-finding.json",
            "ocsf/okta-detection-finding.json",
        )
        for line in [msgspec.json.encode(msgspec.json.decode(read(name)))]  # one record per NDJSON line
    )
    reply = await ask(nc, soc.ALERT_INTAKE, body)
    assert reply.ok and reply.accepted == 2 and reply.format == "mixed"
    assert [(r.index, r.error) for r in reply.rejected] == [(1, "not_an_alert"), (2, "not_an_alert")]
    event = await tap.wait_for(lambda e: e.type == soc.AlertRejected.TYPE)
    audit = payload(event, soc.AlertRejected)
    assert audit.subject == soc.ALERT_INTAKE and audit.rejected_count == 2 and audit.accepted == 2
    assert [r.field for r in audit.records] == ["event_type", "class_uid"] and event.actor == "nats:anonymous"
    await wait_until(lambda: set(decided(tap)) >= set(reply.ids))


async def test_the_intake_answers_while_the_soc_is_stopped(soc_stack, nc, tap):
    stopped = reply_decoder.decode((await nc.request("aoc.ctl.soc-cycle.stop", b"", timeout=5)).data)
    assert stopped.ok
    reply = await ask(nc, f"{soc.ALERT_INTAKE}.ocsf", read("ocsf/prowler-detection-finding.json"))
    assert reply.ok and reply.accepted == 1
    await asyncio.sleep(0.5)  # triage would have decided it by now, were it running
    assert reply.ids[0] not in decided(tap)
    info = await nc.jetstream().stream_info(soc.ALERTS_STREAM)
    assert info.state.messages == 1  # waiting in the queue
    assert reply_decoder.decode((await nc.request("aoc.ctl.soc-cycle.start", b"", timeout=5)).data).ok
    await wait_until(lambda: reply.ids[0] in decided(tap))


async def test_formats_over_http(soc_and_gateway, http, nc, tap):
    response = await http.post(
        "/api/v1/soc/alerts", params={"format": "wazuh"}, content=read("wazuh/integratord-sshd-5712.json")
    )
    assert response.status_code == 202, response.text
    assert response.json()["format"] == "wazuh" and response.json()["ids"] == ["1652272159.1549653"]
    # NDJSON, detected
    ndjson = await http.post("/api/v1/soc/alerts", content=read("suricata-eve/beats-eve-alerts.ndjson"))
    assert ndjson.status_code == 202 and ndjson.json()["accepted"] == 3
    # mixed: 202 with the refused records listed, and an audit event from the gateway
    mixed = (
        b"["
        + read("ecs/kibana-8.0.0-search-hit.json")
        + b","
        + read("suricata-eve/oisf-doc-fileinfo.json")
        + b"]"
    )
    response = await http.post("/api/v1/soc/alerts", content=mixed)
    body = response.json()
    assert response.status_code == 202 and body["accepted"] == 1
    assert body["rejected"] == [
        {
            "index": 1,
            "error": "not_an_alert",
            "message": "event_type 'fileinfo' is not an alert",
            "field": "event_type",
        }
    ]
    event = await tap.wait_for(lambda e: e.type == soc.AlertRejected.TYPE and e.system == "gateway")
    assert event.actor == "admin" and payload(event, soc.AlertRejected).subject == "POST /api/v1/soc/alerts"
    # nothing good: 422 in FastAPI's shape, one entry per record
    nothing = await http.post("/api/v1/soc/alerts", content=read("ocsf/inspector-vulnerability-finding.json"))
    assert nothing.status_code == 422
    assert nothing.json()["detail"][0]["loc"] == ["body", 0, "class_uid"]
    # a format that is not one
    unknown = await http.post("/api/v1/soc/alerts", params={"format": "splunk"}, content=b"{}")
    assert unknown.status_code == 422
    ids = {"1652272159.1549653", *ndjson.json()["ids"], *body["ids"]}
    await wait_until(lambda: set(decided(tap)) >= ids)
