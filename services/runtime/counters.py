"""Cycle accounting: how many cycles an engine ran, how many failed, when it last ran.

The counters ride on every ``cycle_completed`` event and every heartbeat (one follows
every cycle, quiet ones too), so a restarted (or newly active) engine resumes them from
the larger of its newest of each: no counter anyone saw goes backwards
(services/runtime/recovery.py)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

import msgspec
from nats.js import JetStreamContext

from contracts import subjects
from contracts.events import CycleCompleted, Heartbeat, envelope_decoder, heartbeat_decoder
from services.runtime import recovery
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


@dataclass(frozen=True, slots=True)
class Resumption:
    counters: Counters
    last_beat: Heartbeat | None  # the active instance's newest heartbeat
    beat_stored_at: datetime | None


async def resume_counters(js: JetStreamContext, slug: str) -> Resumption:
    """The counters as the engine's newest cycle event and heartbeat left them."""
    last_cycle = last_beat = None
    stored = await last_message(js, subjects.evt(slug, CycleCompleted.TYPE))
    if stored is not None:
        last_cycle = envelope_decoder.decode(stored.data).payload()
    beat = await last_message(js, subjects.hb(slug), stream=subjects.HEARTBEATS_STREAM)
    if beat is not None:
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            last_beat = heartbeat_decoder.decode(beat.data)
    resumed = recovery.resume_counters(last_cycle, last_beat)
    counters = Counters(resumed.total_runs, resumed.errors, resumed.last_run)
    return Resumption(counters, last_beat, beat.time if beat is not None else None)
