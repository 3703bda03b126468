"""/api/v1/ml — the model versions: metrics of every evaluation, which version is
active, which one the SOC is scoring with (gateway/readmodels/soc.py ``ModelsView``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from gateway.deps import Gateway
from gateway.schemas import ModelVersion, ModelVersions

router = APIRouter(prefix="/api/v1/ml", tags=["ml"])


@router.get(
    "/models",
    response_model=ModelVersions,
    summary="Model versions with their held-out metrics; the active one",
)
async def models(gw: Gateway) -> dict[str, Any]:
    return gw.models.ml.view()


@router.get("/models/{version}", response_model=ModelVersion, summary="One model version")
async def model(version: str, gw: Gateway) -> dict[str, Any]:
    view = gw.models.ml.view()
    found = next((entry for entry in view["versions"] if entry["version"] == version), None)
    if found is None:
        raise HTTPException(404, f"no model version {version!r}")
    return found
