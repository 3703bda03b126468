"""/api/v1/factory — the Frontend Factory's API.

Reads (list, detail, preview, stats) are served from the factory view: the factory's
events folded by the same ledger the engine uses. Writes go where the state lives:
a submission is validated here (422 per field), then queued on the factory's input
stream; generate / deploy / cancel / generate-preview ask the factory engine over NATS
request/reply. After a write, the response waits (briefly) until the view has applied
the write's event, so the next GET agrees with it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import BaseModel

from contracts.events import new_id
from contracts.factory import (
    ACTOR_HEADER,
    CORRELATION_HEADER,
    FACTORY,
    HTTP_STATUS,
    ORIGIN_HEADER,
    PAGE_TYPES,
    PRIORITIES,
    REQUIREMENT_ID_HEADER,
    STATUSES,
    SUBMIT_SUBJECT,
    FactoryReply,
    FactoryRequest,
    catalog,
    encode,
    reply_decoder,
    request_subject,
    submission_schema,
    validate_submission,
)
from gateway.deps import Actor, CommandId, CorrelationId, Gateway
from gateway.readmodels.registry import FactoryArea
from gateway.schemas import ComponentInfo, FactoryStats, RequirementDetail, RequirementPreview, TemplateInfo
from gateway.state import GatewayState

router = APIRouter(prefix="/api/v1/factory", tags=["factory"])

INTAKE_WAIT = 2.0  # how long a POST waits for the factory to take the submission in
IDEMPOTENCY_NAMESPACE = uuid.UUID("5b0f5d1e-8d59-4a59-9a55-a0c0ffee0f00")


class RequirementSummary(BaseModel):
    """One row of GET requirements (declared, so the integrity scan knows its fields)."""

    id: str
    title: str
    page_type: Literal["data_table", "dashboard", "form", "detail", "analytics", "settings"]
    route: str
    status: Literal["pending", "generating", "generated", "deployed", "failed", "cancelled"]
    priority: Literal["low", "medium", "high", "critical"]
    requested_by: str
    has_code: bool
    created_at: datetime
    updated_at: datetime
    error: str | None = None


assert RequirementSummary.model_fields["page_type"].annotation.__args__ == PAGE_TYPES  # type: ignore[union-attr]
assert RequirementSummary.model_fields["status"].annotation.__args__ == STATUSES  # type: ignore[union-attr]
assert RequirementSummary.model_fields["priority"].annotation.__args__ == PRIORITIES  # type: ignore[union-attr]


def _view(gw: GatewayState) -> FactoryArea:
    return gw.models.factory_area


def _requirement(view: FactoryArea, requirement_id: str):
    requirement = view.ledger.get(requirement_id)
    if requirement is None:
        raise HTTPException(404, f"no requirement {requirement_id!r}")
    return requirement


def _validation_error(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=422)


# --- requirements ------------------------------------------------------------------------------


@router.post(
    "/requirements",
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": submission_schema()}}}
    },
    responses={202: {"description": "Queued; the factory has not taken it in yet"}, 409: {}, 422: {}},
)
async def submit_requirement(
    request: Request, gw: Gateway, actor: Actor, correlation_id: CorrelationId, idempotency_key: CommandId
):
    """Validate a RequirementSubmission, queue it for the factory, return the requirement."""
    try:
        raw = await request.json()
    except ValueError as exc:
        return _validation_error([{"loc": ["body"], "msg": f"malformed JSON: {exc}", "type": "json_invalid"}])
    if isinstance(raw, dict) and not raw.get("requested_by"):
        raw = {**raw, "requested_by": actor}
    validation = validate_submission(raw)
    if validation.submission is None:
        return _validation_error([error.as_fastapi() for error in validation.errors])
    submission = validation.submission
    view = _view(gw)
    # a client retrying with the same Idempotency-Key gets the same requirement
    requirement_id = uuid.uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key).hex if idempotency_key else new_id()
    existing = view.ledger.get(requirement_id)
    if existing is not None:
        return JSONResponse({**existing.summary(), "message": "already submitted"}, status_code=200)
    holder = view.ledger.holding_route(submission.route)
    if holder is not None:
        raise HTTPException(
            409, f"{submission.route} already belongs to requirement {holder.id} ({holder.status})"
        )

    headers = {
        "Nats-Msg-Id": requirement_id,
        REQUIREMENT_ID_HEADER: requirement_id,
        ACTOR_HEADER: actor,
        ORIGIN_HEADER: "http",
        CORRELATION_HEADER: correlation_id,
    }
    try:
        await gw.js.publish(SUBMIT_SUBJECT, encode(submission), headers=headers, timeout=2.0)
    except Exception as exc:  # the queue is full or unreachable: nothing was accepted
        raise HTTPException(
            503, f"the factory queue did not accept the submission: {type(exc).__name__}"
        ) from None

    def outcome():
        return view.ledger.get(requirement_id) or view.ledger.rejected.get(requirement_id)

    found = await view.wait_until(outcome, INTAKE_WAIT)
    if found is None:
        return JSONResponse(
            {
                "id": requirement_id,
                "status": "queued",
                "title": submission.title,
                "route": submission.route,
                "page_type": submission.page_type,
                "message": "accepted and queued; the factory has not taken it in yet (stopped or busy). "
                "It appears in GET /api/v1/factory/requirements once it has.",
            },
            status_code=202,
            headers={"Location": f"{router.prefix}/requirements/{requirement_id}"},
        )
    if not hasattr(found, "summary"):  # rejected by the factory (a race the checks above lost)
        status = 422 if found.reason == "invalid" else 409
        return JSONResponse({"detail": [e.as_fastapi() for e in found.errors]}, status_code=status)
    return JSONResponse(
        {**found.summary(), "message": "queued for generation"},
        status_code=201,
        headers={"Location": f"{router.prefix}/requirements/{requirement_id}"},
    )


@router.get("/requirements", response_model=list[RequirementSummary])
async def list_requirements(
    gw: Gateway,
    status: Literal["pending", "generating", "generated", "deployed", "failed", "cancelled"] | None = None,
    page_type: Literal["data_table", "dashboard", "form", "detail", "analytics", "settings"] | None = None,
    limit: int = Query(500, ge=1, le=5000),
) -> list[dict[str, Any]]:
    """All requirements, newest first, with their current status."""
    found = []
    for requirement in reversed(_view(gw).ledger.requirements.values()):
        if (status is None or requirement.status == status) and (
            page_type is None or requirement.submission.page_type == page_type
        ):
            found.append(requirement.summary())
            if len(found) >= limit:
                break
    return found


@router.get("/requirements/{req_id}", response_model=RequirementDetail)
async def get_requirement(req_id: str, gw: Gateway) -> dict[str, Any]:
    """Full detail: api_endpoints, data_fields, features, has_code, history."""
    return _requirement(_view(gw), req_id).detail()


@router.get("/requirements/{req_id}/preview", response_model=RequirementPreview)
async def preview_requirement(req_id: str, gw: Gateway) -> dict[str, Any]:
    """The generated TSX, its API wiring and sidebar entry (no side effects)."""
    requirement = _requirement(_view(gw), req_id)
    preview = requirement.preview()
    if preview is None:
        raise HTTPException(
            409, f"requirement {req_id} is {requirement.status} and has no code yet: generate it"
        )
    return preview


async def _ask(gw: GatewayState, verb: str, body: bytes) -> FactoryReply:
    try:
        msg = await gw.nc.request(request_subject(verb), body, timeout=gw.settings.control_timeout)
    except (NatsTimeoutError, TimeoutError, NoRespondersError):
        raise HTTPException(
            504, f"engine {FACTORY!r} did not answer within {gw.settings.control_timeout:g} s"
        ) from None
    return reply_decoder.decode(msg.data)


async def _operate(
    gw: GatewayState, verb: str, req_id: str, actor: str, correlation_id: str, reason: str = ""
) -> JSONResponse:
    request = FactoryRequest(requirement_id=req_id, actor=actor, reason=reason, correlation_id=correlation_id)
    reply = await _ask(gw, verb, encode(request))
    view = _view(gw)
    if reply.seq:
        await view.wait_for_seq(reply.seq)
    requirement = view.ledger.get(req_id)
    current = requirement.detail() if requirement is not None else reply.requirement
    if not reply.ok:
        status = HTTP_STATUS.get(reply.error or "", 409)
        return JSONResponse(
            {"detail": reply.message, "error": reply.error, "requirement": current}, status_code=status
        )
    return JSONResponse({**(current or {}), "message": reply.message, **(reply.result or {})})


@router.post("/requirements/{req_id}/generate")
async def generate_requirement(req_id: str, gw: Gateway, actor: Actor, correlation_id: CorrelationId):
    """Render the TSX now; only from pending or failed (409 otherwise, saying why)."""
    return await _operate(gw, "generate", req_id, actor, correlation_id)


@router.post("/requirements/{req_id}/deploy")
async def deploy_requirement(req_id: str, gw: Gateway, actor: Actor, correlation_id: CorrelationId):
    """Write the page into the frontend tree and signal the deploy pipeline."""
    return await _operate(gw, "deploy", req_id, actor, correlation_id)


@router.delete("/requirements/{req_id}")
async def cancel_requirement(
    req_id: str,
    gw: Gateway,
    actor: Actor,
    correlation_id: CorrelationId,
    reason: str = Query("", max_length=500),
):
    """Cancel a requirement and take it off the queue (pending, generated or failed)."""
    return await _operate(gw, "cancel", req_id, actor, correlation_id, reason)


# --- templates, one-shot preview, stats, components ------------------------------------------------


@router.get("/templates", responses={200: {"model": list[TemplateInfo]}})
async def list_templates() -> list[dict[str, Any]]:
    return catalog.template_list()


@router.get("/templates/{page_type}/schema", response_model=dict[str, Any])
async def template_schema(page_type: str) -> dict[str, Any]:
    if page_type not in catalog.TEMPLATES:
        raise HTTPException(404, f"unknown template {page_type!r}; known: {', '.join(catalog.TEMPLATES)}")
    return catalog.template_schema(page_type)


@router.post(
    "/generate-preview",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": submission_schema()}}}
    },
)
async def generate_preview(request: Request, gw: Gateway) -> dict[str, Any]:
    """Validate and render once, saving nothing: tsx_code, complexity, validation."""
    body = await request.body()
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        return _validation_error([{"loc": ["body"], "msg": f"malformed JSON: {exc}", "type": "json_invalid"}])
    reply = await _ask(gw, "preview", body)
    if not reply.ok:
        raise HTTPException(HTTP_STATUS.get(reply.error or "", 400), reply.message)
    return reply.result or {}


@router.get("/stats", response_model=FactoryStats)
async def stats(gw: Gateway) -> dict[str, Any]:
    view = _view(gw)
    return {
        **view.ledger.stats(),
        "view": {"applied_seq": view.ledger.applied_seq, "replayed": view.ready},
    }


@router.get("/component-library", responses={200: {"model": list[ComponentInfo]}})
async def component_library() -> list[dict[str, Any]]:
    return catalog.component_library()
