"""Dependencies, declared once as Annotated aliases."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from contracts.events import new_id
from gateway.state import GatewayState

_ACTOR = re.compile(r"^[\w.@:+-]{1,128}$")


def get_gateway(request: Request) -> GatewayState:
    return request.app.state.gateway


def get_actor(x_aoc_actor: Annotated[str | None, Header()] = None) -> str:
    # Until auth lands (issue #7) the caller names itself; the value is validated and
    # recorded as given, so the audit trail is honest about where it came from.
    if x_aoc_actor is None:
        return "anonymous"
    if not _ACTOR.match(x_aoc_actor):
        raise HTTPException(400, "X-AOC-Actor must be 1-128 characters of letters, digits and . @ : + - _")
    return x_aoc_actor


def get_correlation_id(x_request_id: Annotated[str | None, Header()] = None) -> str:
    if x_request_id and re.fullmatch(r"[\w.:-]{1,128}", x_request_id):
        return x_request_id
    return new_id()


def get_command_id(idempotency_key: Annotated[str | None, Header()] = None) -> str | None:
    if idempotency_key is None:
        return None
    if not re.fullmatch(r"[A-Za-z0-9_=-]{1,100}", idempotency_key):
        raise HTTPException(400, "Idempotency-Key must be 1-100 characters of letters, digits, _ = -")
    return idempotency_key


Gateway = Annotated[GatewayState, Depends(get_gateway)]
Actor = Annotated[str, Depends(get_actor)]
CorrelationId = Annotated[str, Depends(get_correlation_id)]
CommandId = Annotated[str | None, Depends(get_command_id)]
