"""/api/v1/advisories — the threat advisories advisory-refresh synthesized, and the
health of its feeds.

Reads are served from memory: the advisories view mirrors the buckets ``aoc_advisories``
and ``aoc_advisory_feeds`` (gateway/readmodels/advisories.py), rebuilt from KV at every
start and following every change live. Nothing here is state of its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from fastapi import APIRouter, HTTPException, Query

from contracts.advisory import PRIORITIES, Advisory, FeedState
from gateway.deps import Gateway
from gateway.readmodels.advisories import AdvisoriesView
from gateway.schemas import AdvisoryList, AdvisoryView, FeedList
from gateway.state import GatewayState

router = APIRouter(prefix="/api/v1/advisories", tags=["advisories"])


def _view(gw: GatewayState) -> AdvisoriesView:
    return gw.models.advisories


def _urgency(advisory: Advisory) -> tuple:
    rank = PRIORITIES.index(advisory.priority) if advisory.priority in PRIORITIES else len(PRIORITIES)
    return (rank, not advisory.known_exploited, -(advisory.cvss or 0.0), advisory.id)


def _as_dict(advisory: Advisory, *, evidence: bool) -> dict[str, Any]:
    body = msgspec.to_builtins(advisory)
    if not evidence:
        body.pop("evidence", None)
    return body


@router.get("", response_model=AdvisoryList)
async def list_advisories(
    gw: Gateway,
    priority: list[str] | None = Query(
        None, description="critical, high, medium, low; repeat or comma-separate"
    ),
    known_exploited: bool | None = None,
    affected: bool | None = Query(None, description="only advisories that name an inventory asset (or none)"),
    asset: str | None = Query(None, max_length=200, description="an inventory asset id"),
    cve: str | None = Query(None, max_length=30),
    product: str | None = Query(None, max_length=200, description="substring of an affected product"),
    source: str | None = Query(None, max_length=64, description="a feed name"),
    q: str | None = Query(None, max_length=200, description="text in id, title or description"),
    min_cvss: float | None = Query(None, ge=0, le=10),
    updated_since: datetime | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    include_evidence: bool = False,
) -> dict[str, Any]:
    view = _view(gw)
    wanted = {p.strip().lower() for value in priority or [] for p in value.split(",") if p.strip()}
    unknown = wanted - set(PRIORITIES)
    if unknown:
        raise HTTPException(422, f"unknown priority {sorted(unknown)}; expected {', '.join(PRIORITIES)}")
    text = q.lower() if q else None
    product_text = product.lower() if product else None

    def keep(a: Advisory) -> bool:
        return (
            (not wanted or a.priority in wanted)
            and (known_exploited is None or a.known_exploited == known_exploited)
            and (affected is None or bool(a.affected_assets) == affected)
            and (asset is None or asset in a.affected_assets)
            and (cve is None or cve.upper() in a.cves)
            and (product_text is None or any(product_text in p.lower() for p in a.products))
            and (source is None or source in a.sources)
            and (min_cvss is None or (a.cvss is not None and a.cvss >= min_cvss))
            and (updated_since is None or (a.updated is not None and a.updated >= updated_since))
            and (text is None or text in f"{a.id} {a.title} {a.description}".lower())
        )

    matching = sorted((a for a in view.advisories.values.values() if keep(a)), key=_urgency)
    page = matching[offset : offset + limit]
    counts = {p: 0 for p in PRIORITIES}
    for advisory in matching:
        counts[advisory.priority] = counts.get(advisory.priority, 0) + 1
    return {
        "advisories": [_as_dict(a, evidence=include_evidence) for a in page],
        "total": len(matching),
        "count": len(page),
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if offset + limit < len(matching) else None,
        "counts_by_priority": counts,
        "view": {"ready": view.ready, "advisories_in_memory": len(view.advisories.values)},
    }


@router.get("/feeds", response_model=FeedList)
async def feeds(gw: Gateway) -> dict[str, Any]:
    view = _view(gw)
    states: list[FeedState] = sorted(view.feeds.values.values(), key=lambda s: s.name)
    return {
        "feeds": [msgspec.to_builtins(state) for state in states],
        "count": len(states),
        "failing": [state.name for state in states if state.status == "failing"],
        "view": {"ready": view.ready},
    }


@router.get("/{advisory_id}", response_model=AdvisoryView)
async def get_advisory(advisory_id: str, gw: Gateway) -> dict[str, Any]:
    advisory = _view(gw).advisories.values.get(advisory_id) or _view(gw).advisories.values.get(
        advisory_id.upper()
    )
    if advisory is None:
        raise HTTPException(404, f"no advisory {advisory_id!r}")
    return _as_dict(advisory, evidence=True)
