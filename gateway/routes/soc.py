"""/api/v1/soc — alerts in, analyst verdicts in, and the SOC's read views.

Alerts come in AOC's own shape (validated strictly, all or nothing: a 422 names the
field, e.g. ``$[3].src_ip``) or in a product's format (``?format=suricata-eve|wazuh|ecs|
ocsf``, or detected): each record is mapped on its own, the good ones are queued and the
bad ones reported with their index and reason, and audited (contracts/soc/intake.py).
Alerts go to the triage work queue, verdicts to AOC_FEEDBACK. Reads are served from the
SOC views (gateway/readmodels/soc.py); the playbooks in force from the SOC's last
``playbooks_loaded`` event.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import structlog
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from nats.js.errors import NotFoundError

from contracts import soc, subjects
from contracts.events import Summary, envelope_decoder, new_event
from gateway.deps import Actor, CorrelationId, Gateway
from gateway.isotime import iso
from gateway.readmodels.registry import SocViews
from gateway.schemas import AlertList, AlertView, DecisionList, Hunts, SocStats
from gateway.state import GatewayState
from services.runtime.bus import publish_with_retry

log = structlog.get_logger()
router = APIRouter(prefix="/api/v1/soc", tags=["soc"])

PUBLISH_DEADLINE = 5.0
READ_YOUR_WRITES = 1.0  # a verdict's response waits this long for the view to show it

Status = Literal["auto_resolved", "escalated", "escalated_to_human", "contained", "reviewed"]
DecisionKind = Literal["auto_resolve", "escalate", "contain"]
SeverityName = Literal["informational", "low", "medium", "high", "critical"]
FormatName = Literal["aoc", "suricata-eve", "wazuh", "ecs", "ocsf"]
ALERTS_ROUTE = "POST /api/v1/soc/alerts"


def area_of(gw: GatewayState) -> SocViews:
    return gw.models.soc


def invalid(message: str, field: str | None, kind: str) -> JSONResponse:
    """422 in FastAPI's shape (``detail`` list with ``loc``), plus the JSON path."""
    loc = ["body", *_path_parts(field)] if field else ["body"]
    return JSONResponse(
        {"detail": [{"loc": loc, "msg": message, "type": kind}], "field": field, "message": message},
        status_code=422,
    )


def _path_parts(field: str) -> list[str | int]:
    parts: list[str | int] = []
    for token in field.removeprefix("$").replace("[", ".").replace("]", "").split("."):
        if token:
            parts.append(int(token) if token.isdigit() else token)
    return parts


# --- alerts in -----------------------------------------------------------------------


@router.post(
    "/alerts",
    status_code=202,
    summary="Submit alerts: one object, a JSON array or NDJSON (up to 1000), AOC's shape or a product's",
)
async def submit_alerts(
    request: Request,
    gw: Gateway,
    actor: Actor,
    correlation_id: CorrelationId,
    format: FormatName | None = Query(None, description="the body's format; detected when absent"),
) -> Any:
    body = await request.body()
    try:
        parsed = soc.parse_alerts(body, format)
    except soc.AlertDecodeError as exc:
        return invalid(str(exc), exc.field, exc.error)
    return await accept_alerts(gw, parsed, route=ALERTS_ROUTE, actor=actor, correlation_id=correlation_id)


async def accept_alerts(
    gw: GatewayState, parsed: soc.ParsedAlerts, *, route: str, actor: str, correlation_id: str
) -> JSONResponse:
    """Queue a parsed batch's alerts, audit its refused records, answer: 202 with what was
    accepted and refused, or 422 when no record became an alert."""
    audit = soc.rejection_audit(route, parsed)
    if audit is not None:
        await audit_event(gw, *audit, actor=actor, correlation_id=correlation_id)
    rejected = [msgspec.to_builtins(record) for record in parsed.rejected]
    if not parsed.alerts:
        detail = [
            {
                "loc": ["body", r["index"], *([r["field"]] if r.get("field") else [])],
                "msg": r["message"],
                "type": r["error"],
            }
            for r in rejected
        ]
        message = f"none of the {len(rejected)} records became an alert"
        return JSONResponse(
            {"detail": detail, "message": message, "format": parsed.format, "rejected": rejected},
            status_code=422,
        )
    messages = await queue_alerts(gw, parsed.alerts)
    return JSONResponse(
        {
            "accepted": len(parsed.alerts),
            "ids": [alert.id for alert in parsed.alerts],
            "queue_messages": messages,
            "format": parsed.format,
            "rejected": rejected,
        },
        status_code=202,
    )


async def queue_alerts(gw: GatewayState, alerts: list[soc.Alert]) -> int:
    """Publish to the triage queue (stream-acked, deduplicated by Nats-Msg-Id); 503 if it cannot."""
    messages = soc.queue_messages(alerts)
    try:
        await asyncio.gather(
            *(
                publish_with_retry(gw.js, soc.ALERT_QUEUE, body, msg_id=msg_id, deadline=PUBLISH_DEADLINE)
                for msg_id, body in messages
            )
        )
    except Exception as exc:
        raise HTTPException(503, f"the alert queue is unavailable: {type(exc).__name__}") from None
    return len(messages)


async def audit_event(
    gw: GatewayState, payload: msgspec.Struct, summary: Summary, *, actor: str, correlation_id: str
) -> None:
    """An audit event from the gateway (``aoc.evt.gateway.<type>``); a failure is logged, the
    request it describes has its own answer."""
    event = new_event(
        system="gateway",
        payload=payload,
        summary=summary,
        source="gateway",
        actor=actor,
        correlation_id=correlation_id,
    )
    try:
        await gw.publisher.publish(event)
    except Exception as exc:
        log.warning("soc.audit_failed", action=summary.action, error=type(exc).__name__)


# --- verdicts in ---------------------------------------------------------------------


class VerdictBody(msgspec.Struct, forbid_unknown_fields=True):
    verdict: soc.Verdict
    note: soc.Note = ""


class BatchVerdict(msgspec.Struct, forbid_unknown_fields=True):
    alert_id: soc.AlertId
    verdict: soc.Verdict
    note: soc.Note = ""


_verdict_decoder = msgspec.json.Decoder(VerdictBody)
_batch_decoder = msgspec.json.Decoder(
    Annotated[list[BatchVerdict], msgspec.Meta(min_length=1, max_length=1000)]
)


@router.post("/alerts/{alert_id}/feedback", status_code=202, summary="An analyst's verdict on one alert")
async def submit_feedback(alert_id: str, request: Request, gw: Gateway, actor: Actor) -> Any:
    try:
        body = _verdict_decoder.decode(await request.body())
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return invalid(f"invalid verdict: {exc}", soc.error_path(str(exc)), "invalid_feedback")
    area = area_of(gw)
    row = area.alerts.by_id.get(alert_id)
    if row is None:
        raise HTTPException(404, f"alert {alert_id!r} has not been triaged (or is older than the view)")
    verdict = soc.new_feedback(row.decision.alert, body.verdict, actor, body.note, row.decision.decision)
    seq = await _publish_verdicts(gw, [verdict])
    await _until_applied(area, seq)
    return {"id": verdict.id, "alert_id": alert_id, "verdict": verdict.verdict, "analyst": actor}


@router.post("/feedback", status_code=202, summary="Verdicts on many alerts at once (up to 1000)")
async def submit_feedback_batch(request: Request, gw: Gateway, actor: Actor) -> Any:
    try:
        items = _batch_decoder.decode(await request.body())
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return invalid(f"invalid verdicts: {exc}", soc.error_path(str(exc)), "invalid_feedback")
    area = area_of(gw)
    verdicts = []
    for index, item in enumerate(items):
        row = area.alerts.by_id.get(item.alert_id)
        if row is None:
            return invalid(
                f"alert {item.alert_id!r} has not been triaged", f"$[{index}].alert_id", "unknown_alert"
            )
        verdicts.append(
            soc.new_feedback(row.decision.alert, item.verdict, actor, item.note, row.decision.decision)
        )
    seq = await _publish_verdicts(gw, verdicts)
    await _until_applied(area, seq)
    return {"accepted": len(verdicts), "ids": [v.id for v in verdicts]}


async def _publish_verdicts(gw: GatewayState, verdicts: list[soc.AnalystFeedback]) -> int:
    try:
        acks = await asyncio.gather(
            *(
                publish_with_retry(
                    gw.js, soc.FEEDBACK_QUEUE, msgspec.json.encode(v), msg_id=v.id, deadline=PUBLISH_DEADLINE
                )
                for v in verdicts
            )
        )
    except Exception as exc:
        raise HTTPException(503, f"the feedback stream is unavailable: {type(exc).__name__}") from None
    return max(ack.seq for ack in acks)


async def _until_applied(area: SocViews, seq: int) -> None:
    deadline = time.monotonic() + READ_YOUR_WRITES
    while area.alerts.feedback_seq < seq and time.monotonic() < deadline:
        await area.wait_changed(deadline - time.monotonic())


# --- reads ---------------------------------------------------------------------------


def _page(rows: list, limit: int) -> int | None:
    return rows[-1].pos if len(rows) == limit else None


@router.get(
    "/alerts", response_model=AlertList, summary="Triaged alerts, newest first (filters, cursor paging)"
)
async def list_alerts(
    gw: Gateway,
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(None, ge=1, description="cursor from next_before (exclusive)"),
    status: Status | None = None,
    decision: DecisionKind | None = None,
    severity: SeverityName | None = None,
    source: str | None = Query(None, max_length=128),
    host: str | None = Query(None, max_length=255),
    user: str | None = Query(None, max_length=255),
    technique: str | None = Query(None, max_length=16, description="MITRE id or prefix, e.g. T1110"),
    q: str | None = Query(
        None, max_length=200, description="text in id, title, host, user, IPs, where a word begins"
    ),
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    area = area_of(gw)
    rows = area.alerts.query(
        limit=limit,
        before=before,
        status=status,
        decision=decision,
        severity=severity,
        source=source,
        host=host,
        user=user,
        technique=technique,
        text=q,
        since=iso(since),
        until=iso(until),
    )
    return {
        "alerts": [row.alert_view() for row in rows],
        "count": len(rows),
        "next_before": _page(rows, limit),
        "queued": await area.queue_depth(gw),
        "total_in_view": area.alerts.live,
    }


@router.get(
    "/alerts/{alert_id}",
    response_model=AlertView,
    summary="One triaged alert with its decision, verdict and playbook",
)
async def get_alert(alert_id: str, gw: Gateway) -> dict[str, Any]:
    row = area_of(gw).alerts.by_id.get(alert_id)
    if row is None:
        raise HTTPException(404, f"alert {alert_id!r} has not been triaged (or is older than the view)")
    return {**row.alert_view(), "reasons": row.decision.reasons}


@router.get(
    "/decisions",
    response_model=DecisionList,
    summary="Triage decisions with scores and reasons, newest first",
)
async def list_decisions(
    gw: Gateway,
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(None, ge=1, description="cursor from next_before (exclusive)"),
    decision: DecisionKind | None = None,
    severity: SeverityName | None = None,
    model_version: str | None = Query(None, max_length=32),
    min_threat: float | None = Query(None, ge=0, le=100),
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    rows = area_of(gw).alerts.query(
        limit=limit,
        before=before,
        decision=decision,
        severity=severity,
        model_version=model_version,
        min_threat=min_threat,
        since=iso(since),
        until=iso(until),
    )
    return {
        "decisions": [row.decision_view() for row in rows],
        "count": len(rows),
        "next_before": _page(rows, limit),
    }


@router.get("/stats", response_model=SocStats, summary="SOC counters, queue depth and the model in use")
async def stats(gw: Gateway) -> dict[str, Any]:
    area = area_of(gw)
    return {
        **area.alerts.stats(),
        "queued": await area.queue_depth(gw),
        "model_active": area.models.active,
        "model_in_use": area.models.soc_version,
    }


@router.get("/hunts", response_model=Hunts, summary="Recent threat hunts and their findings")
async def hunts(gw: Gateway, limit: int = Query(20, ge=1, le=50)) -> dict[str, Any]:
    recent = list(area_of(gw).alerts.hunts)[-limit:]
    return {"hunts": list(reversed(recent)), "count": len(recent)}


@router.get("/playbooks", summary="The SOAR playbooks in force (as soc-cycle last loaded them)")
async def list_playbooks(gw: Gateway) -> dict[str, Any]:
    subject = subjects.evt(soc.SOC_SYSTEM, soc.PlaybooksLoaded.TYPE)
    try:
        raw = await gw.js.get_last_msg(subjects.EVENTS_STREAM, subject)
    except NotFoundError:
        return {"playbooks": [], "count": 0, "loaded_at": None, "note": "soc-cycle has not started yet"}
    except Exception as exc:
        raise HTTPException(503, f"the event stream is unavailable: {type(exc).__name__}") from None
    envelope = envelope_decoder.decode(raw.data)
    loaded = msgspec.json.decode(envelope.data, type=soc.PlaybooksLoaded)
    return {
        "playbooks": [msgspec.to_builtins(book) for book in loaded.playbooks],
        "count": len(loaded.playbooks),
        "loaded_at": iso(envelope.time),
        "directory": loaded.directory,
        "digest": loaded.digest,
    }
