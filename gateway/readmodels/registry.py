"""Every read model of the gateway, by name and type, wired to its sources.

``ReadModels`` is what the routes read (``gw.models.activity``, ``gw.models.alerts``,
...). ``start`` ensures what the views read, loads the newest snapshot (or starts
empty), rebuilds the views that have no snapshot, then starts the sources: AOC_EVENTS
once for every view (from the snapshot's sequence), the last heartbeat of every engine
instance, the analysts' verdicts, the advisory buckets. It returns once all of them
have caught up (bounded), and keeps writing snapshots while the gateway runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from nats.aio.client import Client

from contracts import soc, subjects
from contracts.advisory import ADVISORIES_BUCKET, FEEDS_BUCKET, ensure_advisory_buckets
from contracts.settings import Settings
from contracts.streams import ensure_all
from gateway.readmodels.activity import ActivityView
from gateway.readmodels.advisories import AdvisoriesView
from gateway.readmodels.base import ChangeSignal, View
from gateway.readmodels.factory import FactoryView
from gateway.readmodels.feed import EventFeed, KeyedSource, StreamSource
from gateway.readmodels.jobs import JobsView
from gateway.readmodels.snapshot import Loaded, Snapshots, Snapshotted
from gateway.readmodels.soc import AlertsView, ModelsView
from gateway.readmodels.systems import SystemsView
from services.runtime import heap
from services.runtime.stream import replay

log = structlog.get_logger()

READY_WAIT = 120.0  # how long start waits for the sources to catch up before serving a partial view
ALERTS_WINDOW = 200_000


class SocViews:
    """The SOC area as its routes see it: the alerts, the models, the triage queue."""

    def __init__(self, models: ReadModels) -> None:
        self._models = models
        self._queue: tuple[float, int | None] = (0.0, None)

    @property
    def alerts(self) -> AlertsView:
        return self._models.alerts

    @property
    def models(self) -> ModelsView:
        return self._models.ml

    async def wait_changed(self, timeout: float) -> bool:
        return await self._models.changed.wait(timeout)

    async def queue_depth(self, _gw: Any = None) -> int | None:
        """Alerts waiting for triage (the work queue's message count), cached for a second."""
        fetched, depth = self._queue
        if time.monotonic() - fetched < 1.0:
            return depth
        try:
            info = await self._models.js.stream_info(soc.ALERTS_STREAM)
            depth = info.state.messages
        except Exception:
            depth = None
        self._queue = (time.monotonic(), depth)
        return depth


class FactoryArea:
    """The factory's requirements as its routes see them, with read-your-writes waits."""

    def __init__(self, models: ReadModels) -> None:
        self._models = models

    @property
    def ledger(self) -> Any:
        return self._models.factory.ledger

    @property
    def ready(self) -> bool:
        return self._models.factory.ready

    async def wait_until(self, condition: Any, timeout: float) -> Any:
        return await self._models.wait_until(condition, timeout) or None

    async def wait_for_seq(self, seq: int, timeout: float = 1.0) -> bool:
        return await self._models.wait_for_seq(seq, timeout)


class ReadModels:
    def __init__(self, nc: Client, settings: Settings) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.settings = settings
        self.changed = ChangeSignal()
        self.version = 0  # grows with every event and heartbeat applied (the SSE stream's cue)
        self._fresh_views()
        self.events = EventFeed(nc, self.fed_views(), ensure=self._ensure_events, on_change=self._on_event)
        self.heartbeats = StreamSource(
            "heartbeats",
            nc,
            subjects.HEARTBEATS_SUBJECTS,
            subjects.HEARTBEATS_STREAM,
            self._on_heartbeat,
            ensure=self._ensure_events,
            on_change=self.changed.notify,
            last_per_subject=True,
        )
        self.feedback = StreamSource(
            "feedback",
            nc,
            soc.FEEDBACK_QUEUE,
            soc.FEEDBACK_STREAM,
            self._on_feedback,
            ensure=self._ensure_soc,
            on_change=self.changed.notify,
        )
        buckets = (self.advisories.advisories, self.advisories.feeds)
        self.advisory_sources = [
            KeyedSource(
                f"kv:{mirror.bucket}",
                nc,
                mirror.subject,
                mirror.stream,
                mirror.apply,
                ensure=self._ensure_advisories,
                on_change=self.changed.notify,
            )
            for mirror in buckets
        ]
        self.advisories.fed_by(*self.advisory_sources)
        self.soc = SocViews(self)
        self.factory_area = FactoryArea(self)
        self.snapshots = Snapshots(
            self.js,
            settings,
            config={"activity_window": settings.activity_window, "alerts_window": ALERTS_WINDOW},
            positions=lambda: (self.events.last_seq, self.alerts.feedback_seq),
            ready=lambda: self.events.ready and self.feedback.ready,
        )
        self.loaded: Loaded | None = None

    def _fresh_views(self) -> None:
        self.activity = ActivityView(window=self.settings.activity_window)
        self.systems = SystemsView()
        self.alerts = AlertsView(window=ALERTS_WINDOW)
        self.ml = ModelsView()
        self.jobs = JobsView()
        self.factory = FactoryView()
        # the advisory mirrors are bound to their sources once: a restart reads the keys again
        self.advisories = getattr(self, "advisories", None) or AdvisoriesView(ADVISORIES_BUCKET, FEEDS_BUCKET)

    def fed_views(self) -> list[View]:
        """The views the event feed hands events to."""
        return [self.activity, self.systems, self.alerts, self.ml, self.jobs, self.factory]

    def snapshotted(self) -> list[Snapshotted]:
        return [self.activity, self.systems, self.alerts, self.ml, self.jobs]

    def all_views(self) -> list[Any]:
        return [*self.fed_views(), self.advisories]

    # --- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        # the views are built at once from a snapshot and a replay, and then live as long
        # as the process: no collector passes over them while they grow (services/runtime/heap.py)
        with heap.bulk_load():
            await self._load()
        self.snapshots.start(self.snapshotted())
        log.info(
            "readmodels.ready",
            events_seq=self.events.last_seq,
            from_snapshot=self.loaded is not None,
            replayed=self.events.applied,
            rows=len(self.activity.rows),
            alerts=self.alerts.live,
            waiting=[source.name for source in self.sources() if not source.ready],
        )

    async def _load(self) -> None:
        await asyncio.gather(self._ensure_events(), self._ensure_soc(), self._ensure_advisories())
        await self.snapshots.open()
        loaded = await self.snapshots.load(self.snapshotted())
        if loaded is None:
            self._fresh_views()  # a failed restore may have filled some of them
        else:
            self.events.start_seq = loaded.events_seq + 1
            self.feedback.start_seq = loaded.feedback_seq + 1
            await self._rebuild_factory(loaded.events_seq)
        self.loaded = loaded
        self._wire()
        await self.events.start()
        await self.heartbeats.start()
        await self.feedback.start()
        for source in self.advisory_sources:
            await source.start()
        await self.wait_ready(READY_WAIT)

    def _wire(self) -> None:
        self.events.views = self.fed_views()
        for view in self.fed_views():
            view._sources.clear()
            view.fed_by(self.events)
        self.systems.fed_by(self.heartbeats)
        self.alerts.fed_by(self.feedback)

    async def _rebuild_factory(self, until_seq: int) -> None:
        """The factory view is not in snapshots: its requirement events up to the
        snapshot, one subject per type (the server skips everything else), in order."""
        if not until_seq:
            return
        found: list[tuple[int, bytes]] = []
        await asyncio.gather(
            *(
                replay(
                    self.js,
                    subject,
                    lambda seq, data, _at: found.append((seq, data)),
                    stream=subjects.EVENTS_STREAM,
                    until_seq=until_seq,
                )
                for subject in FactoryView.replay_subjects
            )
        )
        for seq, data in sorted(found, key=lambda item: item[0]):
            self.factory.apply_stored(seq, data)

    async def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not all(source.ready for source in self.sources()):
            if time.monotonic() >= deadline:
                waiting = [source.name for source in self.sources() if not source.ready]
                log.warning("readmodels.not_ready", waiting=waiting)
                return False
            await asyncio.sleep(0.02)
        return True

    async def stop(self, *, snapshot: bool = True) -> None:
        await self.snapshots.stop()
        if snapshot and self.snapshots.enabled and self.events.ready:
            # a clean stop leaves a fresh snapshot behind: the next start replays nothing
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    if self.events.last_seq > self.snapshots.last_written_seq:
                        await self.snapshots.write(self.snapshotted())
        for source in reversed(self.sources()):
            await source.stop()

    def sources(self) -> list[Any]:
        return [self.events, self.heartbeats, self.feedback, *self.advisory_sources]

    # --- callbacks ----------------------------------------------------------------------

    def _on_event(self) -> None:
        self.version += 1
        self.changed.notify()

    def _on_heartbeat(self, seq: int, data: bytes, received: Any) -> None:
        self.systems.apply_heartbeat(seq, data, received)
        self.version += 1

    def _on_feedback(self, seq: int, data: bytes, received: Any) -> None:
        self.alerts.apply_feedback(seq, data)

    async def _ensure_events(self) -> None:
        await ensure_all(self.js, self.settings, converge=True)  # the gateway owns stream config

    async def _ensure_soc(self) -> None:
        await soc.ensure_soc_streams(self.js, self.settings)

    async def _ensure_advisories(self) -> None:
        await ensure_advisory_buckets(self.js, self.settings)

    # --- reading ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return all(source.ready for source in self.sources())

    async def wait_until(self, condition: Any, timeout: float) -> Any:
        """Read-your-writes: the first truthy ``condition()`` within ``timeout``, else falsy."""
        return await self.changed.until(condition, timeout)

    async def wait_for_seq(self, seq: int, timeout: float = 1.0) -> bool:
        """Until the views have applied AOC_EVENTS up to ``seq`` (bounded)."""
        return bool(await self.changed.until(lambda: self.events.last_seq >= seq, timeout))

    def health(self) -> dict[str, Any]:
        views = {
            "activity": {"rows": len(self.activity.rows), "oldest_seq": self.activity.first_seq},
            "systems": {
                "systems": len(self.systems.lifecycle),
                "ignored_deposed_events": self.systems.ignored,
                "ignored_deposed_heartbeats": self.systems.ignored_beats,
            },
            "alerts": {"rows": self.alerts.live, "feedback_seq": self.alerts.feedback_seq},
            "models": {"versions": len(self.ml.versions)},
            "jobs": {"jobs": len(self.jobs.jobs)},
            "factory": {"requirements": len(self.factory.ledger.requirements)},
            "advisories": {
                "advisories": len(self.advisories.advisories.values),
                "feeds": len(self.advisories.feeds.values),
            },
        }
        readmodels = {
            view.name: {"ready": view.ready, "lag": view.lag, **views[view.name]} for view in self.all_views()
        }
        sources = {
            source.name: {
                "ready": source.ready,
                "lag": source.lag,
                "last_seq": source.last_seq,
                "resubscriptions": source.follower.resubscriptions if source.follower else 0,
            }
            for source in self.sources()
        }
        sources["events"].update(applied=self.events.applied, undecodable=self.events.undecodable)
        return {"readmodels": readmodels, "sources": sources, "snapshot": dict(self.snapshots.status)}
