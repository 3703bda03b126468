"""The activity log below the in-memory window: a bounded scan of the stream behind the
same cursor API.

A page whose cursor ``before`` is at or below the oldest row in memory reads the slice
``[before - scan_limit, before - 1]`` of AOC_EVENTS (only that system's subject when the
page filters by system, so the server skips the rest), filters it exactly as the
in-memory log does, and answers the newest ``limit`` matches. A page never reads more
than ``scan_limit`` stream sequences: when the slice holds fewer matches than
``limit``, ``next_before`` is the bottom of the slice, and the next page goes on from
there, until the first sequence the stream still holds.

Tags live only with the rows in memory (an annotation is refused for older entries), so
a tag filter ends where the window does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext

from contracts import subjects
from gateway.readmodels.activity import ActivityRow, activity_row
from gateway.readmodels.base import decode_feed_event
from gateway.readmodels.index import matches_at_word_start
from services.runtime.stream import replay

CONCURRENT_SCANS = 2  # stream scans at once; more requests wait their turn


@dataclass(frozen=True, slots=True)
class Filters:
    system: str | None = None
    result: str | None = None
    actor: str | None = None
    text: str | None = None  # lower case
    since: str | None = None
    until: str | None = None

    def keep(self, row: ActivityRow) -> bool:
        return (
            (self.system is None or row.system == self.system)
            and (self.result is None or row.result == self.result)
            and (self.actor is None or row.actor == self.actor)
            and (self.until is None or row.time <= self.until)
            and (
                self.text is None
                or matches_at_word_start(row.detail.lower(), self.text)
                or matches_at_word_start(row.action.lower(), self.text)
            )
        )


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[ActivityRow]
    next_before: int | None
    from_seq: int
    to_seq: int
    scanned: int  # messages the server delivered


class History:
    def __init__(self, js: JetStreamContext, scan_limit: int) -> None:
        self.js = js
        self.scan_limit = scan_limit
        self._turns = asyncio.Semaphore(CONCURRENT_SCANS)

    async def page(self, *, before: int, limit: int, first_seq: int, filters: Filters) -> Page:
        """The newest ``limit`` rows below ``before`` from one bounded slice of the stream."""
        low = max(first_seq, before - self.scan_limit, 1)
        high = before - 1
        if high < low:
            return Page([], None, low, high, 0)
        found: list[ActivityRow] = []
        older_than_since = False

        def on_message(seq: int, data: bytes, _at: object) -> None:
            nonlocal older_than_since
            try:
                event = decode_feed_event(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return
            row = activity_row(seq, event)
            if filters.since is not None and row.time < filters.since:
                older_than_since = True
                return
            if filters.keep(row):
                found.append(row)

        subject = subjects.evt(filters.system, ">") if filters.system else subjects.EVENTS_SUBJECTS
        async with self._turns:
            scanned = await replay(
                self.js,
                subject,
                on_message,
                stream=subjects.EVENTS_STREAM,
                start_seq=low,
                until_seq=high,
            )
        found.reverse()  # newest first
        if len(found) >= limit:
            page = found[:limit]
            return Page(page, page[-1].seq, low, high, scanned)
        more = low > first_seq and not older_than_since
        return Page(found, low if more else None, low, high, scanned)
