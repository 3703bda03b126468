"""/health (public: up or down, nothing more) and /health/details (any authenticated
role: NATS and its servers, the stream, each read model's readiness and lag, the
snapshot it started from (or why it replayed everything), every engine's heartbeat age)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from contracts.systems import SYSTEMS
from gateway import views
from gateway.deps import Gateway
from gateway.schemas import HealthDetails, Up

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Up, responses={503: {"model": Up}})
async def health(gw: Gateway) -> JSONResponse:
    # load balancers and `aoc up` need a yes or no; the details would tell strangers
    # which NATS server we use and how far behind we are
    up = (await gw.health())["status"] == "ok"
    return JSONResponse({"status": "up" if up else "down"}, status_code=200 if up else 503)


@router.get("/health/details", response_model=HealthDetails, responses={503: {"model": HealthDetails}})
async def health_details(gw: Gateway) -> JSONResponse:
    body: dict[str, Any] = await gw.health()
    # which nats-servers there are, reachable or not, what each leads, replicas current or lagging
    body["nats"].update(await gw.nats_servers())
    now = datetime.now(UTC)
    timeout = gw.settings.heartbeat_timeout
    engines = {}
    for slug in SYSTEMS:
        view = views.system_view(gw.models.systems, slug, now, heartbeat_timeout=timeout)
        engines[slug] = {
            "state": view["state"],
            "last_heartbeat": view["last_heartbeat"],
            "heartbeat_age_seconds": view["heartbeat_age_seconds"],
        }
    body["engines"] = engines
    body["heartbeat_timeout_seconds"] = timeout
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
