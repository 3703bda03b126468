"""The seven systems as the dashboard shows them: each one's last lifecycle event and its
active instance's last heartbeat, every live instance, and the lease (pure).

The lease: every event and heartbeat of an engine carries the epoch of the instance
that wrote it (the lease's revision; it only grows). The view keeps the highest epoch it
has seen per system, from lifecycle and takeover events, and ignores a lifecycle event
or an active heartbeat from a lower epoch: an instance that was deposed and has not
noticed yet. Epoch 0 means "written without a lease" (older events, or a standby
recording a command while the lease was vacant) and is never ignored.

The epochs that decide which lifecycle events count come from the event stream only,
so a replay gives the same answer whatever the heartbeats did meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from contracts.events import Heartbeat, InstanceTookOver, LifecycleChanged, heartbeat_decoder
from contracts.systems import SYSTEMS
from gateway.isotime import iso
from gateway.readmodels.base import FeedEvent, View

_decode_lifecycle = msgspec.json.Decoder(LifecycleChanged).decode
_decode_took_over = msgspec.json.Decoder(InstanceTookOver).decode


class LifecycleView(msgspec.Struct, array_like=True):
    seq: int
    time: str
    state: str
    desired: str
    reason: str
    epoch: int = 0
    instance: str = ""


class CrashView(msgspec.Struct, array_like=True):
    """The last crash of an engine: the launcher's ``process_crashed`` or the engine's own
    ``engine_recovered`` (the card says "restarted N s ago after a crash")."""

    seq: int
    time: str
    type: str
    detail: str


CRASH_TYPES = frozenset({"process_crashed", "engine_recovered"})


@dataclass(slots=True)
class HeartbeatView:
    beat: Heartbeat
    received: datetime  # the stream's timestamp: one clock for every engine


class _State(msgspec.Struct, array_like=True):
    lifecycle: dict[str, LifecycleView]
    epochs: dict[str, int]
    ignored: int
    crashes: dict[str, CrashView] = {}


_encode = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder(_State).decode


class SystemsView(View):
    name = "systems"
    event_types = frozenset({LifecycleChanged.TYPE, InstanceTookOver.TYPE, *CRASH_TYPES})

    def __init__(self) -> None:
        super().__init__()
        self.lifecycle: dict[str, LifecycleView] = {}
        self.crashes: dict[str, CrashView] = {}
        self.heartbeats: dict[str, HeartbeatView] = {}  # the active instance's last beat
        self.instances: dict[str, dict[str, HeartbeatView]] = {}  # system -> instance -> last beat
        self.epochs: dict[str, int] = {}  # the highest epoch per system, from the event stream
        self.beat_epochs: dict[str, int] = {}  # ... and from active heartbeats
        self.ignored = 0  # lifecycle events from a deposed epoch
        self.ignored_beats = 0
        self.undecodable = 0

    # --- applying -------------------------------------------------------------------

    def apply(self, seq: int, event: FeedEvent, raw: bytes) -> None:
        system = event.system
        if system not in SYSTEMS:
            return
        if event.type in CRASH_TYPES:
            self.crashes[system] = CrashView(seq, event.time, event.type, event.summary.detail)
            return
        if event.type == InstanceTookOver.TYPE:
            try:
                self._raise(self.epochs, system, _decode_took_over(event.data).epoch)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.undecodable += 1
            return
        if event.epoch and event.epoch < self.epochs.get(system, 0):
            self.ignored += 1  # written by an instance that had lost the lease
            return
        try:
            change = _decode_lifecycle(event.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.undecodable += 1
            return
        self._raise(self.epochs, system, event.epoch)
        self.lifecycle[system] = LifecycleView(
            seq, event.time, change.state, change.desired, change.reason, event.epoch, event.instance
        )

    def apply_heartbeat(self, seq: int, data: bytes, received: datetime) -> None:
        try:
            beat = heartbeat_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.undecodable += 1
            return
        system = beat.system
        active = beat.role == "active"
        if active:
            highest = max(self.epochs.get(system, 0), self.beat_epochs.get(system, 0))
            if beat.epoch and beat.epoch < highest:
                self.ignored_beats += 1  # a deposed instance that still beats as active
                return
            self._raise(self.beat_epochs, system, beat.epoch)
        seen = HeartbeatView(beat, received)
        instances = self.instances.setdefault(system, {})
        known = instances.get(beat.instance)
        if known is None or _newer(beat, known):
            instances[beat.instance] = seen
        if not active:
            return
        current = self.heartbeats.get(system)
        if current is not None and not _newer(beat, current):
            return  # an older snapshot arriving late
        self.heartbeats[system] = seen

    @staticmethod
    def _raise(epochs: dict[str, int], system: str, epoch: int) -> None:
        if epoch > epochs.get(system, 0):
            epochs[system] = epoch

    # --- reading ----------------------------------------------------------------------

    def instances_of(self, system: str, now: datetime, heartbeat_timeout: float) -> list[dict[str, Any]]:
        """The instances that beat within the heartbeat timeout, the active one first."""
        active = self.heartbeats.get(system)
        active_id = active.beat.instance if active is not None else None
        highest = max(self.epochs.get(system, 0), self.beat_epochs.get(system, 0))
        found = []
        for instance_id, seen in self.instances.get(system, {}).items():
            if (now - seen.received).total_seconds() > heartbeat_timeout:
                continue
            beat = seen.beat
            if beat.role == "active" and instance_id != active_id and beat.epoch < highest:
                continue  # the previous active instance's last word: it is gone or fenced
            is_active = beat.role == "active" and instance_id == active_id
            found.append(
                {
                    "id": instance_id,
                    "pid": beat.process.pid,
                    "host": beat.host,
                    "role": "active" if is_active else "standby",
                    "epoch": beat.epoch,
                    "started": iso(beat.started),
                    "last_heartbeat": iso(seen.received),
                }
            )
        found.sort(key=lambda entry: (entry["role"] != "active", entry["id"]))
        return found

    # --- snapshots (heartbeats are not in them: the last one per subject is read again) ---

    def cut(self) -> Any:
        return _encode(_State(dict(self.lifecycle), dict(self.epochs), self.ignored, dict(self.crashes)))

    @staticmethod
    def encode(cut: Any) -> Iterator[bytes]:
        yield cut

    def restore(self, frames: Iterator[bytes]) -> None:
        state = _decode_state(next(frames))
        self.lifecycle, self.epochs, self.ignored = state.lifecycle, state.epochs, state.ignored
        self.crashes = state.crashes


def _newer(beat: Heartbeat, than: HeartbeatView) -> bool:
    """Is ``beat`` a later snapshot than the one kept? Within one process by its sequence,
    across processes by the stream's clock (the later one arrived later)."""
    if beat.boot_id == than.beat.boot_id:
        return beat.seq > than.beat.seq
    return True
