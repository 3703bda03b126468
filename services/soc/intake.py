"""Raw NATS intake for alerts and analyst verdicts (``aoc.in.soc.alerts``,
``aoc.in.soc.feedback``), answered by the soc-cycle process whether or not triage is
running — a stopped SOC still accepts alerts; they wait in the queue.

Each message is validated in full before anything is stored. A valid one is published
to its queue subject and the reply (sent after the stream's ack) says how many were
accepted; an invalid one gets an error reply naming the field and an ``alert_rejected``
audit event, and nothing reaches the queue. ``nats pub`` (no reply subject) gets the
same treatment minus the reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.events import Summary
from contracts.soc import (
    ALERT_INTAKE,
    ALERT_QUEUE,
    FEEDBACK_INTAKE,
    FEEDBACK_QUEUE,
    AlertDecodeError,
    AlertRejected,
    AlertSummary,
    IntakeReply,
    decode_alerts,
    error_path,
    new_feedback,
    queue_messages,
    submission_decoder,
    summarize,
)
from services.runtime.bus import publish_with_retry

log = structlog.get_logger()

INTAKE_QUEUE_GROUP = "aoc-soc-intake"
PUBLISH_DEADLINE = 5.0  # the producer is waiting for the reply


class Intake:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        publish: Callable[..., Awaitable[object]],
        lookup: Callable[[str], tuple[AlertSummary, str] | None],
    ) -> None:
        self.nc = nc
        self.js = js
        self.publish = publish  # host.publish: audit events
        self.lookup = lookup  # alert id -> (summary, decision) when the SOC decided it
        self.accepted = 0
        self.rejected = 0
        self._subs: list = []

    async def start(self) -> None:
        self._subs = [
            await self.nc.subscribe(ALERT_INTAKE, queue=INTAKE_QUEUE_GROUP, cb=self.on_alerts),
            await self.nc.subscribe(FEEDBACK_INTAKE, queue=INTAKE_QUEUE_GROUP, cb=self.on_feedback),
        ]

    async def stop(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:
                continue

    async def on_alerts(self, msg: Msg) -> None:
        try:
            alerts = decode_alerts(msg.data)
        except AlertDecodeError as exc:
            await self._refuse(msg, "invalid_alert", str(exc), exc.field)
            return
        try:
            for msg_id, body in queue_messages(alerts):
                await publish_with_retry(self.js, ALERT_QUEUE, body, msg_id=msg_id, deadline=PUBLISH_DEADLINE)
        except Exception as exc:
            log.warning("soc.intake_unavailable", error=type(exc).__name__)
            await self._reply(
                msg, IntakeReply(ok=False, error="unavailable", message=f"queue unavailable: {exc}")
            )
            return
        self.accepted += len(alerts)
        await self._reply(msg, IntakeReply(ok=True, accepted=len(alerts), ids=[a.id for a in alerts]))

    async def on_feedback(self, msg: Msg) -> None:
        try:
            submission = submission_decoder.decode(msg.data)
        except msgspec.ValidationError as exc:
            await self._refuse(msg, "invalid_feedback", f"invalid feedback: {exc}", error_path(str(exc)))
            return
        except msgspec.DecodeError as exc:
            await self._refuse(msg, "invalid_feedback", f"malformed JSON: {exc}", None)
            return
        known = self.lookup(submission.alert_id)
        if submission.alert is not None:
            if submission.alert.id != submission.alert_id:
                await self._refuse(msg, "invalid_feedback", "alert.id differs from alert_id", "$.alert.id")
                return
            summary, decision = summarize(submission.alert), (known[1] if known else None)
        elif known is not None:
            summary, decision = known
        else:
            await self._refuse(
                msg,
                "unknown_alert",
                f"alert {submission.alert_id!r} is not one the SOC decided recently; "
                "send the alert with the verdict (field `alert`)",
                "$.alert_id",
            )
            return
        verdict = new_feedback(summary, submission.verdict, submission.analyst, submission.note, decision)
        try:
            await publish_with_retry(
                self.js,
                FEEDBACK_QUEUE,
                msgspec.json.encode(verdict),
                msg_id=verdict.id,
                deadline=PUBLISH_DEADLINE,
            )
        except Exception as exc:
            await self._reply(
                msg, IntakeReply(ok=False, error="unavailable", message=f"stream unavailable: {exc}")
            )
            return
        await self._reply(msg, IntakeReply(ok=True, accepted=1, ids=[verdict.id]))

    async def _refuse(self, msg: Msg, error: str, message: str, field: str | None) -> None:
        self.rejected += 1
        excerpt = msg.data[:200].decode("utf-8", "replace")
        await self._reply(msg, IntakeReply(ok=False, error=error, message=message, field=field))
        try:
            await self.publish(
                AlertRejected(
                    subject=msg.subject, error=error, message=message, field=field, body_excerpt=excerpt
                ),
                Summary(
                    action="alert_rejected", detail=f"{msg.subject}: {message}"[:1000], result="rejected"
                ),
                actor="nats:anonymous",
            )
        except Exception:
            log.exception("soc.reject_audit_failed")

    @staticmethod
    async def _reply(msg: Msg, reply: IntakeReply) -> None:
        if msg.reply:
            await msg.respond(msgspec.json.encode(reply))
