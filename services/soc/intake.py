"""Raw NATS intake for alerts and analyst verdicts, as FastStream subscribers, answered
by the soc-cycle process whether or not triage is running — a stopped SOC still accepts
alerts; they wait in the queue.

- ``aoc.in.soc.alerts``: one alert, a JSON array or NDJSON; the format (AOC's own, or a
  product's) is detected. ``aoc.in.soc.alerts.<format>`` names it: ``suricata-eve``,
  ``wazuh``, ``ecs``, ``ocsf`` or ``aoc`` (contracts/soc/intake.py).
- ``aoc.in.soc.feedback``: one analyst verdict.

Each message is mapped and validated before anything is stored. The valid alerts are
published to the work queue, and the reply — sent after the stream's ack — says how many
were accepted and which records were refused and why. A body refused as a whole, or the
refused records of a batch, are audited (``alert_rejected``, bounded). ``nats pub`` (no
reply subject) gets the same treatment minus the reply.

The handlers take the raw ``NatsMessage`` and decode it themselves, and always reply (with
an error if need be): FastStream would otherwise answer a body that fails a typed
parameter with nothing at all, and the requester would time out (NATS-NOTES.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec
import structlog
from faststream.nats import NatsBroker, NatsMessage
from faststream.nats.security import NatsUserPassword

from contracts.events import Summary
from contracts.settings import Settings
from contracts.soc import (
    ALERT_FORMAT_INTAKE,
    ALERT_INTAKE,
    ALERT_QUEUE,
    FEEDBACK_INTAKE,
    FEEDBACK_QUEUE,
    Alert,
    AlertDecodeError,
    AlertSummary,
    FeedbackSubmission,
    IntakeReply,
    error_path,
    new_feedback,
    parse_alerts,
    queue_messages,
    refusal_audit,
    rejection_audit,
    submission_decoder,
    summarize,
)
from contracts.soc.formats import FORMATS
from services.runtime.bus import connect_options

log = structlog.get_logger()

INTAKE_QUEUE_GROUP = "aoc-soc-intake"
ACTOR = "nats:anonymous"  # core NATS does not say who published

# What the handlers need from the outside, passed in (the engine gives it its JetStream
# publish and its event publisher; unit tests give recorders).
Store = Callable[[str, bytes, str], Awaitable[Any]]  # subject, body, Nats-Msg-Id -> stored (acked)
Audit = Callable[[msgspec.Struct, Summary], Awaitable[Any]]  # an audit event
Lookup = Callable[[str], tuple[AlertSummary, str] | None]  # alert id -> (summary, decision)


class IntakeHandlers:
    def __init__(self, store: Store, audit: Audit, lookup: Lookup) -> None:
        self.store = store
        self.audit = audit
        self.lookup = lookup
        self.accepted = 0
        self.rejected = 0  # messages refused as a whole, and refused records of batches

    async def on_alerts(self, msg: NatsMessage) -> bytes:
        subject = msg.raw_message.subject
        try:
            reply = await self._alerts(subject, msg.body)
        except Exception:
            log.exception("soc.intake_failed", subject=subject)
            reply = IntakeReply(ok=False, error="internal", message="the intake failed; nothing was stored")
        return msgspec.json.encode(reply)

    async def on_feedback(self, msg: NatsMessage) -> bytes:
        subject = msg.raw_message.subject
        try:
            reply = await self._feedback(subject, msg.body)
        except Exception:
            log.exception("soc.intake_failed", subject=subject)
            reply = IntakeReply(ok=False, error="internal", message="the intake failed; nothing was stored")
        return msgspec.json.encode(reply)

    async def _alerts(self, subject: str, body: bytes) -> IntakeReply:
        fmt = None if subject == ALERT_INTAKE else subject.rsplit(".", 1)[-1]
        if fmt is not None and fmt not in FORMATS:
            error = AlertDecodeError(
                f"unknown format {fmt[:40]!r} in the subject: {ALERT_INTAKE}.<{'|'.join(FORMATS)}>",
                None,
                "unknown_format",
            )
            return await self._refuse(subject, error, body)
        try:
            parsed = parse_alerts(body, fmt)
        except AlertDecodeError as exc:
            return await self._refuse(subject, exc, body)
        rejected = rejection_audit(subject, parsed)
        if not parsed.alerts:  # every record of the batch refused: nothing to store
            return await self._refused_records(rejected, parsed.format, parsed.rejected)
        try:
            for msg_id, queued in queue_messages(parsed.alerts):
                await self.store(ALERT_QUEUE, queued, msg_id)
        except Exception as exc:
            log.warning("soc.intake_unavailable", error=type(exc).__name__)
            return IntakeReply(
                ok=False, error="unavailable", message=f"queue unavailable: {type(exc).__name__}"
            )
        self.accepted += len(parsed.alerts)
        if rejected is not None:
            self.rejected += len(parsed.rejected)
            await self._audit(*rejected)
        return IntakeReply(
            ok=True,
            accepted=len(parsed.alerts),
            ids=[alert.id for alert in parsed.alerts],
            format=parsed.format,
            rejected=parsed.rejected,
        )

    async def _feedback(self, subject: str, body: bytes) -> IntakeReply:
        try:
            submission = submission_decoder.decode(body)
        except msgspec.ValidationError as exc:
            error = AlertDecodeError(f"invalid feedback: {exc}", error_path(str(exc)), "invalid_feedback")
            return await self._refuse(subject, error, body)
        except msgspec.DecodeError as exc:
            return await self._refuse(
                subject, AlertDecodeError(f"malformed JSON: {exc}", None, "invalid_feedback"), body
            )
        known = self.lookup(submission.alert_id)
        if submission.alert is not None:
            if submission.alert.id != submission.alert_id:
                error = AlertDecodeError("alert.id differs from alert_id", "$.alert.id", "invalid_feedback")
                return await self._refuse(subject, error, body)
            summary, decision = summarize(submission.alert), (known[1] if known else None)
        elif known is not None:
            summary, decision = known
        else:
            error = AlertDecodeError(
                f"alert {submission.alert_id!r} is not one the SOC decided recently; "
                "send the alert with the verdict (field `alert`)",
                "$.alert_id",
                "unknown_alert",
            )
            return await self._refuse(subject, error, body)
        verdict = new_feedback(summary, submission.verdict, submission.analyst, submission.note, decision)
        try:
            await self.store(FEEDBACK_QUEUE, msgspec.json.encode(verdict), verdict.id)
        except Exception as exc:
            return IntakeReply(
                ok=False, error="unavailable", message=f"stream unavailable: {type(exc).__name__}"
            )
        return IntakeReply(ok=True, accepted=1, ids=[verdict.id])

    async def _refuse(self, subject: str, error: AlertDecodeError, body: bytes) -> IntakeReply:
        self.rejected += 1
        await self._audit(*refusal_audit(subject, error, body))
        return IntakeReply(ok=False, error=error.error, message=str(error), field=error.field)

    async def _refused_records(self, audit: Any, fmt: str, rejected: list) -> IntakeReply:
        self.rejected += len(rejected)
        await self._audit(*audit)
        return IntakeReply(
            ok=False,
            error="invalid_alert",
            message=f"none of the {len(rejected)} records became an alert",
            format=fmt,
            rejected=rejected,
        )

    async def _audit(self, payload: msgspec.Struct, summary: Summary) -> None:
        try:
            await self.audit(payload, summary)
        except Exception:
            log.exception("soc.reject_audit_failed")


async def warm_up() -> None:
    """FastStream handles each message in an anyio task group, and anyio imports its
    asyncio backend on first use: 40-170 ms on this machine, measured in soc-cycle. Paid
    at start instead of by the first alert's producer."""
    async with anyio.create_task_group():
        pass


def _unavailable(what: str, exc: Exception) -> IntakeReply:
    return IntakeReply(ok=False, error="unavailable", message=f"{what} unavailable: {type(exc).__name__}")


async def raw_body(msg: NatsMessage) -> bytes:
    """The subscribers' decoder: none. FastStream would otherwise json.loads every body
    without a content type before the handler runs (a third of the intake's CPU for a
    batch of 500 alerts, measured), only for the handler to ignore it and decode the bytes
    itself, strictly."""
    return msg.body


def register(broker: NatsBroker, handlers: IntakeHandlers) -> NatsBroker:
    """The intake's subscribers on ``broker`` (also what docs/asyncapi.json is made of)."""
    alerts_doc = "Alerts: one object, a JSON array or NDJSON; the format is detected. Reply: IntakeReply."
    broker.subscriber(
        ALERT_INTAKE,
        queue=INTAKE_QUEUE_GROUP,
        decoder=raw_body,
        title="soc-alert-intake",
        description=alerts_doc,
    )(handlers.on_alerts)
    broker.subscriber(
        ALERT_FORMAT_INTAKE,
        queue=INTAKE_QUEUE_GROUP,
        decoder=raw_body,
        title="soc-alert-intake-by-format",
        description=f"Alerts in the format the last token names ({', '.join(FORMATS)}). Reply: IntakeReply.",
    )(handlers.on_alerts)
    broker.subscriber(
        FEEDBACK_INTAKE,
        queue=INTAKE_QUEUE_GROUP,
        decoder=raw_body,
        title="soc-feedback-intake",
        description="One analyst verdict (FeedbackSubmission). Reply: IntakeReply.",
    )(handlers.on_feedback)
    return broker


def intake_broker(settings: Settings, handlers: IntakeHandlers, *, name: str = "aoc-soc-cycle") -> NatsBroker:
    """A broker with its own connection, as the engine's NATS user: the intake lives for
    the whole process, apart from the engine's lifecycle (a stopped SOC still queues)."""
    options = connect_options(settings, name.removeprefix("aoc-"))
    security = NatsUserPassword(options["user"], options["password"]) if "user" in options else None

    async def on_error(exc: Exception) -> None:
        text = str(exc)
        if "permissions violation" in text.lower():
            log.error("nats.permission_denied", error=text, user=options.get("user"), connection="intake")
        else:
            log.warning("nats.error", error=text, connection="intake")

    broker = NatsBroker(
        options["servers"],
        security=security,
        inbox_prefix=options.get("inbox_prefix", "_INBOX"),
        name=f"{name}-intake",
        error_cb=on_error,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        graceful_timeout=5.0,
        log_level=logging.DEBUG,  # a line per message at INFO would drown the engine's own log
    )
    return register(broker, handlers)


# --- the bus document (docs/asyncapi.json, scripts/asyncapi.py) -----------------------

PRODUCT_RECORD = {
    "type": "object",
    "title": "ProductAlertRecord",
    "description": "A record in a product's own format: Suricata EVE (event_type alert), a Wazuh "
    "alerts.json line, an Elastic Security alert document (kibana.alert.*), an OCSF Detection Finding "
    "(class_uid 2004). Mapped onto Alert as docs/soc.md describes; extra fields are fine.",
}


def asyncapi_broker() -> tuple[NatsBroker, dict[str, tuple[dict, dict]], dict[str, dict]]:
    """For docs/asyncapi.json: the intake's subscribers on a broker that never connects,
    each channel's (request, reply) JSON Schema, and the schemas they refer to."""
    handlers = IntakeHandlers(_not_connected, _not_connected, lambda _: None)
    broker = register(NatsBroker("nats://localhost:4222"), handlers)
    (alert, reply, submission), components = msgspec.json.schema_components(
        [Alert, IntakeReply, FeedbackSubmission], ref_template="#/components/schemas/{name}"
    )
    components["ProductAlertRecord"] = PRODUCT_RECORD
    record = {"anyOf": [alert, {"$ref": "#/components/schemas/ProductAlertRecord"}]}
    alerts = {
        "title": "AlertIntakeBody",
        "description": "One record, a JSON array of up to 1000, or NDJSON (one record per line).",
        "anyOf": [record, {"type": "array", "maxItems": 1000, "items": record}],
    }
    return (
        broker,
        {
            "soc-alert-intake": (alerts, reply),
            "soc-alert-intake-by-format": (alerts, reply),
            "soc-feedback-intake": (submission, reply),
        },
        components,
    )


async def _not_connected(*_: Any) -> None:
    raise RuntimeError("the documentation broker stores nothing")
