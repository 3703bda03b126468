"""The intake's FastStream handlers, in memory (TestNatsBroker): what they store, what
they audit and what they answer, for every kind of body. The same subscribers against a
real nats-server, with the engine around them, are in test_intake_bus.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from faststream.nats import NatsBroker, TestNatsBroker

from contracts import soc
from contracts.events import Summary
from services.soc.intake import IntakeHandlers, register

SAMPLES = Path(__file__).parent / "samples"


class Recorder:
    """Stands in for JetStream and the event publisher: keeps what the handlers hand over."""

    def __init__(self, *, fail_store: bool = False) -> None:
        self.stored: list[tuple[str, bytes, str]] = []
        self.audits: list[tuple[msgspec.Struct, Summary]] = []
        self.fail_store = fail_store

    async def store(self, subject: str, body: bytes, msg_id: str) -> None:
        if self.fail_store:
            raise TimeoutError("no stream")
        self.stored.append((subject, body, msg_id))

    async def audit(self, payload: msgspec.Struct, summary: Summary) -> None:
        self.audits.append((payload, summary))

    def queued_alerts(self) -> list[soc.Alert]:
        return [
            a
            for subject, body, _ in self.stored
            if subject == soc.ALERT_QUEUE
            for a in soc.decode_alerts(body)
        ]


KNOWN = soc.AlertSummary(
    id="known-1",
    time=soc.Alert(source="s", title="t", severity="low").time,
    source="s",
    title="t",
    severity="low",
)


def make(recorder: Recorder) -> tuple[NatsBroker, IntakeHandlers]:
    handlers = IntakeHandlers(
        recorder.store,
        recorder.audit,
        lambda alert_id: (KNOWN, "escalate") if alert_id == "known-1" else None,
    )
    return register(NatsBroker(), handlers), handlers


async def ask(broker: NatsBroker, subject: str, body: bytes) -> soc.IntakeReply:
    async with TestNatsBroker(broker) as test_broker:
        response = await test_broker.request(body, subject)
        return msgspec.json.decode(response.body, type=soc.IntakeReply)


def read(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


@pytest.mark.parametrize(
    ("subject", "name", "source"),
    [
        (f"{soc.ALERT_INTAKE}.suricata-eve", "suricata-eve/beats-eve-alerts.ndjson", "suricata"),
        (f"{soc.ALERT_INTAKE}.wazuh", "wazuh/integratord-sshd-5712.json", "wazuh"),
        (f"{soc.ALERT_INTAKE}.ecs", "ecs/kibana-8.1.0-threat-match-alert.json", "elastic-security"),
        (f"{soc.ALERT_INTAKE}.ocsf", "ocsf/prowler-detection-finding.json", "prowler"),
        (soc.ALERT_INTAKE, "ocsf/okta-detection-finding.json", "okta-system-log"),  # detected
    ],
)
async def test_each_format_is_mapped_and_queued(subject: str, name: str, source: str):
    recorder = Recorder()
    broker, handlers = make(recorder)
    reply = await ask(broker, subject, read(name))
    assert reply.ok and reply.accepted >= 1 and not reply.rejected
    queued = recorder.queued_alerts()
    assert [a.id for a in queued] == reply.ids and {a.source for a in queued} == {source}
    assert all(msg_id.startswith("alert") for _, _, msg_id in recorder.stored)  # dedup ids on the queue
    assert handlers.accepted == reply.accepted and not recorder.audits


async def test_a_mixed_batch_queues_the_good_and_reports_and_audits_the_bad():
    recorder = Recorder()
    broker, handlers = make(recorder)
    batch = (
        b"["
        + read("suricata-eve/oisf-doc-alert-http.json")
        + b","
        + read("suricata-eve/oisf-doc-fileinfo.json")
    )
    batch += b"," + read("suricata-eve/oisf-doc-example-alert.json") + b"]"
    reply = await ask(broker, f"{soc.ALERT_INTAKE}.suricata-eve", batch)
    assert reply.ok and reply.accepted == 2 and reply.format == "suricata-eve"
    [rejected] = reply.rejected
    assert rejected.index == 1 and rejected.error == "not_an_alert" and "fileinfo" in rejected.message
    assert len(recorder.queued_alerts()) == 2
    [(event, summary)] = recorder.audits
    assert isinstance(event, soc.AlertRejected) and event.rejected_count == 1 and event.accepted == 2
    assert event.records[0].index == 1 and summary.result == "rejected"
    assert handlers.rejected == 1


async def test_a_batch_with_no_good_record_stores_nothing():
    recorder = Recorder()
    broker, _ = make(recorder)
    reply = await ask(broker, soc.ALERT_INTAKE, read("ocsf/inspector-vulnerability-finding.json"))
    assert not reply.ok and reply.error == "invalid_alert" and reply.rejected[0].field == "class_uid"
    assert not recorder.stored and len(recorder.audits) == 1


async def test_audits_of_huge_bad_batches_are_bounded():
    recorder = Recorder()
    broker, _ = make(recorder)
    fileinfo = read("suricata-eve/oisf-doc-fileinfo.json").replace(b"\n", b"")
    reply = await ask(broker, soc.ALERT_INTAKE, b"\n".join([fileinfo] * 600))
    assert len(reply.rejected) == 600  # the producer hears about every record
    [(event, summary)] = recorder.audits
    assert len(event.records) == soc.MAX_AUDITED_RECORDS and event.rejected_count == 600
    assert len(msgspec.json.encode(event)) < 10_000 and len(summary.detail) <= 400


@pytest.mark.parametrize(
    ("subject", "body", "error", "field"),
    [
        (soc.ALERT_INTAKE, b"", "invalid_alert", None),
        (soc.ALERT_INTAKE, b"{nope", "malformed", None),
        (
            soc.ALERT_INTAKE,
            b'{"source": "x", "title": "t", "severity": "severe"}',
            "invalid_alert",
            "$.severity",
        ),
        (f"{soc.ALERT_INTAKE}.splunk", b"{}", "unknown_format", None),
        (
            soc.FEEDBACK_INTAKE,
            b'{"alert_id": "known-1", "verdict": "maybe"}',
            "invalid_feedback",
            "$.verdict",
        ),
        (soc.FEEDBACK_INTAKE, b'{"alert_id": "who", "verdict": "benign"}', "unknown_alert", "$.alert_id"),
        (soc.FEEDBACK_INTAKE, b"[", "invalid_feedback", "$"),  # an array where an object goes
        (soc.FEEDBACK_INTAKE, b'{"alert_id', "invalid_feedback", None),  # truncated JSON
    ],
)
async def test_a_refused_message_gets_an_error_reply_and_an_audit(subject, body, error, field):
    recorder = Recorder()
    broker, _ = make(recorder)
    reply = await ask(broker, subject, body)
    assert not reply.ok and reply.error == error and reply.field == field and reply.message
    assert not recorder.stored
    [(event, _)] = recorder.audits
    assert event.error == error and event.subject == subject and len(event.body_excerpt) <= 200


async def test_a_verdict_on_a_known_alert_is_enriched_and_stored():
    recorder = Recorder()
    broker, _ = make(recorder)
    reply = await ask(broker, soc.FEEDBACK_INTAKE, b'{"alert_id": "known-1", "verdict": "true_positive"}')
    assert reply.ok
    [(subject, body, msg_id)] = recorder.stored
    verdict = soc.feedback_decoder.decode(body)
    assert subject == soc.FEEDBACK_QUEUE and msg_id == verdict.id == reply.ids[0]
    assert verdict.decision == "escalate" and verdict.alert.id == "known-1"


async def test_an_unavailable_queue_is_an_error_reply_not_silence():
    recorder = Recorder(fail_store=True)
    broker, handlers = make(recorder)
    reply = await ask(broker, f"{soc.ALERT_INTAKE}.wazuh", read("wazuh/docs-mitre-sshd-100003.json"))
    assert not reply.ok and reply.error == "unavailable" and handlers.accepted == 0


async def test_a_handler_failure_still_answers():
    recorder = Recorder()

    async def broken_store(*_: Any) -> None:
        raise RuntimeError("bug")

    handlers = IntakeHandlers(broken_store, recorder.audit, lambda _: None)
    handlers._alerts = _explode  # type: ignore[method-assign]  # a bug anywhere in the path
    broker = register(NatsBroker(), handlers)
    reply = await ask(broker, soc.ALERT_INTAKE, b"{}")
    assert not reply.ok and reply.error == "internal"


async def _explode(*_: Any) -> soc.IntakeReply:
    raise KeyError("unexpected")
