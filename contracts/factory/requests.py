"""Request/reply: the factory's answers on ``aoc.factory.<verb>`` and the gateway's
inventory of its API routes on ``aoc.gateway.routes``."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.factory.requirement import RequirementSubmission


class FactoryRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of aoc.factory.<generate|deploy|cancel>; preview takes a submission instead."""

    requirement_id: str
    actor: str = "nats:anonymous"
    reason: str = ""
    correlation_id: str = ""


class FactoryReply(msgspec.Struct, kw_only=True):
    ok: bool
    message: str
    # not_found | conflict | not_running | invalid | internal
    error: str | None = None
    requirement: dict[str, Any] | None = None
    seq: int = 0  # stream sequence of the last event this request caused (read-your-writes)
    result: dict[str, Any] | None = None


HTTP_STATUS = {"not_found": 404, "conflict": 409, "not_running": 409, "invalid": 422, "internal": 500}


class RouteField(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    type: str  # one of FIELD_TYPES
    values: list[str] = []


class GatewayRoute(msgspec.Struct, kw_only=True, frozen=True):
    path: str  # /api/v1/factory/requirements/{req_id}
    methods: list[str]
    name: str = ""
    # for a GET that returns a list of records: the record's fields, when the route declares them
    list_of: list[RouteField] | None = None


class GatewayRoutes(msgspec.Struct, kw_only=True):
    routes: list[GatewayRoute]


encode = msgspec.json.encode
submission_decoder = msgspec.json.Decoder(RequirementSubmission)
reply_decoder = msgspec.json.Decoder(FactoryReply)
request_decoder = msgspec.json.Decoder(FactoryRequest)
routes_decoder = msgspec.json.Decoder(GatewayRoutes)
