"""/api/v1/jobs — the status of triggered runs, from the jobs read model
(gateway/readmodels/jobs.py): running, succeeded or failed, with who started it and when.

A trigger answered ``started`` carries the run id (and ``job_url``). The view is built
from the stream, so it answers the same after a gateway restart."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel

from gateway.deps import Gateway

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

READ_YOUR_WRITES = 1.0  # a run id just handed out may be a moment ahead of the view
RunId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_=-]{1,100}$", description="the trigger's run id")]
Status = Literal["running", "succeeded", "failed"]


class JobView(BaseModel):
    run_id: str
    status: Status
    system: str
    actor: str
    started: str | None
    finished: str | None
    accepted: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    outcome: dict[str, Any] | None = None
    command_id: str | None = None
    correlation_id: str = ""
    seq: int = 0


class JobList(BaseModel):
    jobs: list[JobView]
    count: int
    ready: bool
    lag: int


@router.get("/{run_id}", response_model=JobView, summary="One triggered run: running, succeeded or failed")
async def get_job(run_id: RunId, gw: Gateway) -> dict[str, Any]:
    view = gw.models.jobs
    if view.get(run_id) is None:
        await gw.models.wait_until(lambda: view.get(run_id) is not None, READ_YOUR_WRITES)
    job = view.get(run_id)
    if job is None:
        note = "" if view.ready else " (the jobs view is still replaying the stream)"
        raise HTTPException(404, f"no job with run id {run_id!r}{note}")
    return job.view()


@router.get("", response_model=JobList, summary="Triggered runs, newest first")
async def list_jobs(
    gw: Gateway,
    system: str | None = Query(None, max_length=64),
    status: Status | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    view = gw.models.jobs
    jobs = view.query(limit=limit, system=system, status=status)
    return {"jobs": [job.view() for job in jobs], "count": len(jobs), "ready": view.ready, "lag": view.lag}
