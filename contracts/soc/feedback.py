"""Analyst verdicts: what a producer submits, and the enriched labelled sample."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from contracts.events import new_id, utcnow
from contracts.soc.alerts import Alert, AlertId, AlertSummary, Note, Verdict


class FeedbackSubmission(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an analyst (or a raw producer) sends. `alert` lets a producer label an alert
    the SOC has not decided (e.g. an import of historic cases)."""

    alert_id: AlertId
    verdict: Verdict
    analyst: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = "anonymous"
    note: Note = ""
    alert: Alert | None = None


class AnalystFeedback(msgspec.Struct, kw_only=True):
    """A verdict on one alert, enriched with the alert: a labelled training sample."""

    id: str
    alert_id: str
    verdict: str
    analyst: str
    note: str
    time: datetime
    alert: AlertSummary
    decision: str | None = None  # what triage had decided, when it had

    @property
    def is_threat(self) -> bool:
        return self.verdict == "true_positive"


def new_feedback(
    alert: AlertSummary, verdict: str, analyst: str, note: str = "", decision: str | None = None
) -> AnalystFeedback:
    return AnalystFeedback(
        id=new_id(),
        alert_id=alert.id,
        verdict=verdict,
        analyst=analyst,
        note=note,
        time=utcnow(),
        alert=alert,
        decision=decision,
    )


feedback_decoder = msgspec.json.Decoder(AnalystFeedback)
submission_decoder = msgspec.json.Decoder(FeedbackSubmission)
