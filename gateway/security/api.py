"""/api/v1/auth — who am I, a ticket for the live stream, and token management.

Creating or revoking a token is an event on the stream (``gateway`` system, actor =
the admin who did it), so the activity log shows who gave or took whose access.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from contracts.events import ActivityRecorded, Summary, new_event
from contracts.identity import Role, canonical_name
from gateway.deps import CorrelationId, CurrentIdentity, Gateway
from gateway.security.authn import Authenticator
from gateway.security.policy import AUTH_API, STREAM
from gateway.security.roles import Identity
from services.shared.tokens import TokenError, TokenExists

router = APIRouter(prefix=AUTH_API, tags=["auth"])


def _authenticator(request: Request) -> Authenticator:
    return request.app.state.access_guard.authenticator


@router.get("/me")
async def me(identity: CurrentIdentity) -> dict[str, Any]:
    return {
        "name": identity.name,
        "role": identity.role.label if identity.role else None,
        "method": identity.method,
    }


@router.post("/stream-ticket")
async def stream_ticket(request: Request, identity: CurrentIdentity) -> dict[str, Any]:
    """A short-lived ticket for ``GET /api/v1/admin/stream?ticket=...`` (EventSource sends no headers)."""
    ticket, ttl = _authenticator(request).issue_ticket(identity)
    return {"ticket": ticket, "expires_in": ttl, "stream_url": f"{STREAM}?ticket={ticket}"}


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: Literal["viewer", "operator", "admin"]


@router.get("/tokens")
async def list_tokens(request: Request) -> dict[str, Any]:
    records = _authenticator(request).store.records()
    return {
        "tokens": [
            {"name": r.name, "role": r.role, "created": r.created, "created_by": r.created_by}
            for r in records
        ]
    }


@router.post("/tokens", status_code=201)
async def create_token(
    body: NewToken, request: Request, gw: Gateway, identity: CurrentIdentity, correlation_id: CorrelationId
) -> dict[str, Any]:
    role = Role.parse(body.role) or Role.VIEWER
    try:
        token = _authenticator(request).store.create(body.name, role, created_by=identity.name)
    except TokenExists as exc:
        raise HTTPException(409, str(exc)) from None
    except TokenError as exc:
        raise HTTPException(422, str(exc)) from None
    name = canonical_name(body.name)  # names are case-insensitive: this is the one it has
    detail = f"API token {name!r} ({role.label}) created"
    await _audit(gw, identity, "token_created", detail, correlation_id)
    # the only time the token is shown: it is stored as a digest
    return {"name": name, "role": role.label, "token": token}


@router.delete("/tokens/{name}", status_code=204)
async def revoke_token(
    name: str, request: Request, gw: Gateway, identity: CurrentIdentity, correlation_id: CorrelationId
) -> Response:
    if not _authenticator(request).store.revoke(name):
        raise HTTPException(404, f"no token named {name!r}")
    await _audit(gw, identity, "token_revoked", f"API token {canonical_name(name)!r} revoked", correlation_id)
    return Response(status_code=204)


async def _audit(gw: Gateway, identity: Identity, action: str, detail: str, correlation_id: str) -> None:
    event = new_event(
        system="gateway",
        payload=ActivityRecorded(details={"action": action}),
        summary=Summary(action=action, detail=detail, result="success"),
        source="gateway",
        actor=identity.name,
        correlation_id=correlation_id,
    )
    await gw.publisher.publish(event)
