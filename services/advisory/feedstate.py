"""Per-feed health and incremental-refresh bookkeeping. Pure: state in, state out."""

from __future__ import annotations

from datetime import datetime

import msgspec

from contracts.advisory import FeedItem, FeedState
from services.advisory.config import FeedConfig

FAILING = "failing"
HEALTHY_STATUSES = ("ok", "not_modified")


def initial(feed: FeedConfig) -> FeedState:
    return FeedState(
        name=feed.name, format=feed.format, source=feed.source, schedule_seconds=feed.schedule_seconds
    )


def configured(state: FeedState, feed: FeedConfig) -> FeedState:
    """The stored state under the feed's current configuration. A feed whose source or
    format changed starts over: its validators and watermark described something else."""
    if state.source != feed.source or state.format != feed.format:
        return msgspec.structs.replace(initial(feed), status=state.status, last_fetch=state.last_fetch)
    return msgspec.structs.replace(state, schedule_seconds=feed.schedule_seconds)


def is_due(state: FeedState, now: datetime) -> bool:
    if state.last_fetch is None:
        return True
    return (now - state.last_fetch).total_seconds() >= state.schedule_seconds


def unseen(items: list[FeedItem], watermark: datetime | None) -> list[FeedItem]:
    """Items at or past the watermark (or undated). 'At' is kept on purpose: a catalog that
    dates entries by day adds more entries on the watermark's day; re-deriving an item
    already seen changes nothing and writes nothing."""
    if watermark is None:
        return list(items)
    return [item for item in items if item.updated is None or item.updated >= watermark]


def succeeded(
    state: FeedState,
    now: datetime,
    *,
    items: list[FeedItem] | None,
    fresh: int,
    etag: str | None,
    last_modified: str | None,
    content_sha256: str | None,
) -> FeedState:
    """After a good fetch; ``items`` is None when the feed was not modified."""
    if items is None:
        return msgspec.structs.replace(
            state,
            status="not_modified",
            last_fetch=now,
            last_success=now,
            last_error=None,
            consecutive_failures=0,
            new_items=0,
            etag=etag or state.etag,
            last_modified=last_modified or state.last_modified,
        )
    dated = [item.updated for item in items if item.updated is not None]
    watermark = max([*dated, *([state.watermark] if state.watermark else [])], default=None)
    return msgspec.structs.replace(
        state,
        status="ok",
        last_fetch=now,
        last_success=now,
        last_error=None,
        consecutive_failures=0,
        item_count=len(items),
        new_items=fresh,
        etag=etag,
        last_modified=last_modified,
        content_sha256=content_sha256,
        watermark=watermark,
    )


def failed(state: FeedState, now: datetime, error: str) -> FeedState:
    """A failed fetch or parse keeps the validators and watermark of the last good one, so
    the next success is still incremental and nothing already processed is lost."""
    return msgspec.structs.replace(
        state,
        status=FAILING,
        last_fetch=now,
        last_error=error[:1000],
        consecutive_failures=state.consecutive_failures + 1,
        new_items=0,
    )


def health(state: FeedState) -> dict:
    """The compact per-feed view that rides on heartbeats."""
    return {
        "status": state.status,
        "last_fetch": state.last_fetch.isoformat() if state.last_fetch else None,
        "last_success": state.last_success.isoformat() if state.last_success else None,
        "items": state.item_count,
        "error": state.last_error,
    }
