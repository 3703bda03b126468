"""/api/v1/admin — the operator's control API. Routes stay thin: the work is in
ControlClient (commands) and the read models (reads, gateway/readmodels)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import re
from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette.sse import EventSourceResponse

from contracts.events import EntryAnnotated, Summary, new_event, utcnow
from contracts.siem import KillSwitchEngaged
from gateway import views
from gateway.control import HTTP_STATUS
from gateway.deps import Actor, CommandId, CorrelationId, Gateway
from gateway.isotime import iso
from gateway.origin import request_origin
from gateway.readmodels.history import Filters
from gateway.schemas import ActivityLog, Dashboard, Metrics, SystemDetail
from services.runtime.process import process_metrics

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class CommandBody(BaseModel):
    reason: str = Field("", max_length=1000)
    args: dict[str, Any] = Field(default_factory=dict)


SETTLED = {"stop": "stopped", "start": "running", "restart": "running"}


async def _command(
    gw: Gateway,
    system: str,
    verb: str,
    actor: str,
    body: CommandBody | None,
    correlation_id: str,
    command_id: str | None,
    origin: str = "http",
) -> JSONResponse:
    body = body or CommandBody()
    reply = await gw.control.send(
        system,
        verb,
        actor=actor,
        reason=body.reason,
        args=body.args,
        correlation_id=correlation_id,
        command_id=command_id,
        origin=origin,
    )
    if reply.ok and verb in SETTLED:
        await gw.wait_for_state(system, SETTLED[verb])
    content = {"timestamp": iso(utcnow()), **msgspec.to_builtins(reply)}
    if reply.status == "started" and reply.run_id:
        content["job_url"] = f"/api/v1/jobs/{reply.run_id}"  # its status, built from the stream
    status = 200 if reply.ok else HTTP_STATUS.get(reply.error or "", 409)
    return JSONResponse(content, status_code=status)


async def _command_all(
    gw: Gateway, verb: str, actor: str, body: CommandBody | None, correlation_id: str, origin: str = "http"
):
    body = body or CommandBody()
    results = await gw.control.send_all(
        verb, actor=actor, reason=body.reason, correlation_id=correlation_id, origin=origin
    )
    # the kill switch's own record is written while the view catches up; both are done
    # before the reply
    engaged = (
        asyncio.ensure_future(_kill_switch_engaged(gw, actor, body.reason, correlation_id, results))
        if verb == "stop"
        else None
    )
    try:
        if verb in SETTLED:
            for system, result in results.items():
                if result.get("ok"):
                    await gw.wait_for_state(system, SETTLED[verb])
    finally:
        if engaged is not None:
            await engaged
    return {
        "timestamp": iso(utcnow()),
        "action": verb,
        "ok": all(result.get("ok") for result in results.values()),
        "succeeded": sum(bool(result.get("ok")) for result in results.values()),
        "failed": sum(not result.get("ok") for result in results.values()),
        "results": results,
    }


async def _kill_switch_engaged(
    gw: Gateway, actor: str, reason: str, correlation_id: str, results: dict[str, dict[str, Any]]
) -> None:
    """One event per use of the kill switch (the engines record each stop themselves).
    Its id comes from the request's correlation id, so a retried request (same
    X-Request-ID) is stored once (Nats-Msg-Id)."""
    systems = {
        system: "accepted" if result.get("ok") else str(result.get("error") or "failed")[:64]
        for system, result in results.items()
    }
    outcomes = dict(Counter(systems.values()))
    succeeded = sum(bool(result.get("ok")) for result in results.values())
    payload = KillSwitchEngaged(
        reason=reason,
        succeeded=succeeded,
        failed=len(results) - succeeded,
        outcomes=outcomes,
        systems=systems,
    )
    event = new_event(
        system="gateway",
        payload=payload,
        summary=Summary(
            action="kill_switch_engaged",
            detail=f"emergency stop of all systems: {succeeded}/{len(results)} stopped"[:500],
            result="success" if succeeded == len(results) else "failed",
        ),
        source="gateway",
        actor=actor,
        correlation_id=correlation_id,
        event_id=hashlib.sha256(f"kill_switch_engaged|{correlation_id}".encode()).hexdigest()[:32],
    )
    await gw.publisher.publish(event)


@router.get("/dashboard", response_model=Dashboard)
async def dashboard(gw: Gateway) -> Response:
    view = views.dashboard(
        gw.models.systems, heartbeat_timeout=gw.settings.heartbeat_timeout, view_status=await gw.view_status()
    )
    # the most polled view: msgspec encodes it in ~10 µs, FastAPI's encoder in ~0.6 ms
    return Response(msgspec.json.encode(view), media_type="application/json")


@router.post("/trigger/{system_name}")
async def trigger(
    system_name: str,
    request: Request,
    gw: Gateway,
    actor: Actor,
    correlation_id: CorrelationId,
    command_id: CommandId,
    body: CommandBody | None = None,
):
    origin = request_origin(request)
    response = await _command(gw, system_name, "trigger", actor, body, correlation_id, command_id, origin)
    return response


@router.get(
    "/activity-log",
    response_model=ActivityLog,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def activity_log(
    gw: Gateway,
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(None, ge=1, description="stream sequence cursor (exclusive)"),
    system: str | None = None,
    result: str | None = None,
    actor: str | None = None,
    q: str | None = Query(
        None, max_length=200, description="text in action or detail, matched where a word begins"
    ),
    since: datetime | None = None,
    until: datetime | None = None,
    tag: str | None = Query(None, max_length=32, description="only entries an operator tagged so"),
    format: Literal["json", "csv"] = "json",
):
    activity = gw.models.activity
    since_at, until_at = iso(since) if since else None, iso(until) if until else None
    first_in_stream = (await gw.stream_state()).get("first_seq", 0) or 0
    # the stream holds events older than the window (and a tag filter cannot look there)
    older = bool(activity.rows) and 0 < first_in_stream < activity.first_seq and tag is None
    body: dict[str, Any] = {"source": "memory"}
    if older and before is not None and before <= activity.first_seq:
        # below the window: one bounded slice of the stream, behind the same cursor
        filters = Filters(system, result, actor, q.lower() if q else None, since_at, until_at)
        page = await gw.history.page(before=before, limit=limit, first_seq=first_in_stream, filters=filters)
        rows, next_before = page.rows, page.next_before
        scanned = {"from_seq": page.from_seq, "to_seq": page.to_seq, "messages": page.scanned}
        body = {"source": "stream", "scanned": scanned}
    else:
        rows = activity.activity(
            limit=limit,
            before=before,
            system=system,
            result=result,
            actor=actor,
            text=q,
            since=since_at,
            until=until_at,
            tag=tag.lower() if tag else None,
        )
        next_before = rows[-1].seq if len(rows) == limit else None
        if next_before is None and older and not _older_than_since(activity, since_at):
            next_before = activity.first_seq  # the window ran out; older rows are in the stream
    events = [activity.entry(row) for row in rows]
    if format == "csv":
        return _csv(events)
    content = {
        "events": events,
        "count": len(events),
        "next_before": next_before,
        "last_seq": gw.models.events.last_seq,
        "oldest_seq_in_memory": activity.first_seq,
        **body,
    }
    return Response(msgspec.json.encode(content), media_type="application/json")


def _older_than_since(activity: Any, since: str | None) -> bool:
    """Everything below the window is older than ``since`` (rows are in stream order)."""
    return since is not None and bool(activity.rows) and activity.rows[0].time < since


def _csv(events: list[dict[str, Any]]) -> Response:
    out = io.StringIO()
    columns = [
        "seq",
        "timestamp",
        "system",
        "action",
        "result",
        "actor",
        "detail",
        "type",
        "correlation_id",
        "id",
        "tags",
        "comments",
    ]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for event in events:
        comments = [f"{n['actor']} {n['time']}: {n['comment']}" for n in event["annotations"] if n["comment"]]
        writer.writerow({**event, "tags": ";".join(event["tags"]), "comments": " | ".join(comments)})
    headers = {"Content-Disposition": 'attachment; filename="aoc-activity.csv"'}
    return Response(out.getvalue(), media_type="text/csv", headers=headers)


# --- annotations: operators tag and comment activity entries ---------------------------

TAG_PATTERN = r"^[a-z0-9][a-z0-9_.:-]{0,31}$"
MAX_TAGS = 10
READ_YOUR_WRITES = 2.0  # an annotation's response waits this long for the view to show it


class AnnotationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    comment: str = Field("", max_length=1000)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        clean: list[str] = []
        for tag in tags:
            tag = tag.strip().lower()
            if not re.fullmatch(TAG_PATTERN, tag):
                raise ValueError(f"tag {tag[:40]!r}: 1-32 of a-z 0-9 _ . : - starting with a letter or digit")
            if tag not in clean:
                clean.append(tag)
        return clean

    @field_validator("comment")
    @classmethod
    def _comment(cls, comment: str) -> str:
        return comment.strip()


EntryId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:=-]{1,128}$", description="the entry's id")]


@router.post("/activity-log/{entry_id}/annotations", status_code=201)
async def annotate(
    entry_id: EntryId, body: AnnotationBody, gw: Gateway, actor: Actor, correlation_id: CorrelationId
) -> dict[str, Any]:
    """Tag and/or comment one activity entry. Stored as an entry_annotated event (the
    audit record: who, when, which entry), replayed like every other event."""
    if not body.tags and not body.comment:
        raise HTTPException(422, "send at least one tag or a comment")
    activity = gw.models.activity
    row = activity.find(entry_id)
    if row is None:
        raise HTTPException(404, f"no activity entry {entry_id!r} in the gateway's view")
    detail = f"annotated {row.system} entry #{row.seq} ({row.action})"
    if body.tags:
        detail += f" tags: {', '.join(body.tags)}"
    if body.comment:
        detail += f" — {body.comment[:200]}"
    event = new_event(
        system="gateway",
        payload=EntryAnnotated(
            entry_id=row.id, entry_seq=row.seq, entry_system=row.system, tags=body.tags, comment=body.comment
        ),
        summary=Summary(action="entry_annotated", detail=detail, result="success"),
        source="gateway",
        actor=actor,
        correlation_id=correlation_id,
    )
    try:
        ack = await gw.publisher.publish(event)
    except Exception as exc:
        raise HTTPException(503, f"the event stream is unavailable: {type(exc).__name__}") from None
    await gw.models.wait_for_seq(ack.seq, READ_YOUR_WRITES)
    return {"annotation_id": event.id, "seq": ack.seq, "entry": activity.entry(row)}


@router.get("/system/{name}/detail", response_model=SystemDetail)
async def system_detail(name: str, gw: Gateway, actor: Actor, correlation_id: CorrelationId):
    reply = await gw.control.send(name, "detail", actor=actor, correlation_id=correlation_id)
    now, timeout = utcnow(), gw.settings.heartbeat_timeout or 15.0
    dashboard_view = views.system_view(gw.models.systems, name, now, heartbeat_timeout=timeout)
    return {
        **(reply.result or {}),
        "state": dashboard_view["state"],
        "last_heartbeat": dashboard_view["last_heartbeat"],
        "instances": gw.models.systems.instances_of(name, now, timeout),
    }


def _single_system_route(path: str, verb: str, summary: str) -> None:
    async def endpoint(
        name: str,
        request: Request,
        gw: Gateway,
        actor: Actor,
        correlation_id: CorrelationId,
        command_id: CommandId,
        body: CommandBody | None = None,
    ) -> JSONResponse:
        origin = request_origin(request)
        return await _command(gw, name, verb, actor, body, correlation_id, command_id, origin)

    router.add_api_route(f"/{path}/{{name}}", endpoint, methods=["POST"], name=path, summary=summary)


def _all_systems_route(path: str, verb: str, summary: str) -> None:
    async def endpoint(
        request: Request,
        gw: Gateway,
        actor: Actor,
        correlation_id: CorrelationId,
        body: CommandBody | None = None,
    ) -> dict[str, Any]:
        return await _command_all(gw, verb, actor, body, correlation_id, request_origin(request))

    router.add_api_route(f"/{path}", endpoint, methods=["POST"], name=path, summary=summary)


_single_system_route("emergency-stop", "stop", "Stop one system (kept stopped across restarts)")
_all_systems_route("emergency-stop-all", "stop", "Kill switch: stop every system; per-system results")
_single_system_route("start", "start", "Start one system")
_all_systems_route("start-all", "start", "Start every system; per-system results")
_single_system_route("restart", "restart", "Restart one system")
_all_systems_route("restart-all", "restart", "Restart every system; per-system results")


@router.get("/metrics", response_model=Metrics)
async def metrics(gw: Gateway) -> dict[str, Any]:
    body = views.metrics(
        gw.models.systems,
        gateway=process_metrics(),
        heartbeat_timeout=gw.settings.heartbeat_timeout,
        live_connections=gw.live_connections,
        jetstream=await gw.stream_state(),
        db_pool=views.nats_pool(gw.nc),
    )
    body["projection"] = {
        "applied_seq": gw.models.events.last_seq,
        "rows_in_memory": len(gw.models.activity.rows),
    }
    body["nats"] = await gw.nats_servers()  # servers, stream leaders, replicas (gateway/cluster_view.py)
    return body


@router.get("/stream", responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def stream(request: Request, gw: Gateway):
    """Server-sent events: the dashboard whenever it changes (and at least every few
    seconds, so a missed heartbeat turns a card 'unreachable' without a reload)."""

    async def dashboards():
        gw.live_connections += 1
        try:
            last = None
            while not await request.is_disconnected():
                view = views.dashboard(
                    gw.models.systems,
                    heartbeat_timeout=gw.settings.heartbeat_timeout,
                    view_status=await gw.view_status(),
                )
                signature = (gw.models.version, tuple(s["state"] for s in view["systems"].values()))
                if signature != last:
                    last = signature
                    yield {"event": "dashboard", "id": str(gw.models.events.last_seq), "data": _json(view)}
                await gw.models.changed.wait(1.0)
        finally:
            gw.live_connections -= 1

    return EventSourceResponse(dashboards(), ping=15)


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()
