"""/api/v1/ml — the model versions: metrics of every evaluation, which version is
active, which one the SOC is scoring with. A projection of ml-retrain's events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from gateway.deps import Gateway
from gateway.routes.soc import area_of
from gateway.soc_area import close_soc_area, soc_area
from gateway.state import GatewayState

router = APIRouter(prefix="/api/v1/ml", tags=["ml"])


async def on_startup(state: GatewayState) -> None:
    await soc_area(state)  # shared with /api/v1/soc: created once


async def on_shutdown(state: GatewayState) -> None:
    await close_soc_area(state)


@router.get("/models", summary="Model versions with their held-out metrics; the active one")
async def models(gw: Gateway) -> dict[str, Any]:
    return area_of(gw).models.view()


@router.get("/models/{version}", summary="One model version")
async def model(version: str, gw: Gateway) -> dict[str, Any]:
    view = area_of(gw).models.view()
    found = next((entry for entry in view["versions"] if entry["version"] == version), None)
    if found is None:
        raise HTTPException(404, f"no model version {version!r}")
    return found
