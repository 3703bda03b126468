"""Cycle accounting: how many cycles an engine ran, how many failed, when it last ran.

The counters ride on every ``cycle_completed`` event, so a restarted engine resumes them
from its own newest one."""

from __future__ import annotations

from datetime import datetime

import msgspec
from nats.js import JetStreamContext

from contracts import subjects
from contracts.events import CycleCompleted, envelope_decoder
from services.runtime.stream import last_message


class Counters(msgspec.Struct):
    total_runs: int = 0
    errors: int = 0
    last_run: datetime | None = None

    @property
    def success_rate(self) -> float:
        if self.total_runs == 0:
            return 100.0
        return round((self.total_runs - self.errors) / self.total_runs * 100, 2)

    def count(self, ok: bool, now: datetime) -> None:
        self.total_runs += 1
        self.errors += 0 if ok else 1
        self.last_run = now


async def resume_counters(js: JetStreamContext, slug: str) -> Counters:
    """The counters as the engine's newest ``cycle_completed`` left them."""
    stored = await last_message(js, subjects.evt(slug, CycleCompleted.TYPE))
    if stored is None:
        return Counters()
    last = envelope_decoder.decode(stored.data).payload()
    return Counters(last.total_runs, last.error_count, last.last_run)
