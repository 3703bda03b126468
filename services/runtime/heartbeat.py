"""Heartbeats: every ``interval`` seconds (and soon after a change) an engine says what
it is, with its status snapshot and process metrics. A lost one is replaced by the
next, so they are sent once, never retried."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import structlog

from contracts import subjects
from contracts.events import Heartbeat, StatusSnapshot, encode, utcnow
from services.runtime.bus import EventPublisher, publish_with_retry
from services.runtime.process import process_metrics


class Heartbeats:
    def __init__(
        self,
        slug: str,
        boot_id: str,
        interval: float,
        snapshot: Callable[[], StatusSnapshot],
        publisher: EventPublisher,
        *,
        instance: str = "",
        role: Callable[[], tuple[str, int]] = lambda: ("active", 0),
    ) -> None:
        self.slug = slug
        self.instance = instance
        self._role = role  # () -> (active | standby, epoch)
        self.started = utcnow()
        self.host = socket.gethostname()
        self.boot_id = boot_id
        self.interval = interval
        self._snapshot = snapshot
        self._publisher = publisher
        self._seq = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._log = structlog.get_logger().bind(system=slug)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"{self.slug}-heartbeat")

    def soon(self, *, after: float = 0.0) -> None:
        """Beat now rather than at the next tick (after a state change). ``after``: a
        little later, so its psutil work does not run while a reply waits to go out."""
        if after:
            asyncio.get_running_loop().call_later(after, self._wakeup.set)
        else:
            self._wakeup.set()

    async def send(self, *, final: bool = False) -> None:
        """One heartbeat now. ``final``: the last one of a clean shutdown (acked and retried
        briefly, since it tells the next process that this one did not crash)."""
        self._seq += 1
        role, epoch = self._role()
        beat = Heartbeat(
            system=self.slug,
            boot_id=self.boot_id,
            seq=self._seq,
            time=utcnow(),
            status=self._snapshot(),
            process=process_metrics(),
            interval_s=self.interval,
            instance=self.instance,
            role=role,
            epoch=epoch,
            host=self.host,
            started=self.started,
            final=final,
        )
        if final:
            subject = subjects.hb(self.slug, None if role == "active" else self.instance)
            await publish_with_retry(self._publisher.js, subject, encode(beat), msg_id=None, deadline=3.0)
            return
        await self._publisher.heartbeat(beat)

    async def stop(self) -> None:
        """No more heartbeats from this process (shutdown; tests freezing the view)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while not self._stopped:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.send()
            except Exception:
                self._log.exception("heartbeat.failed")
