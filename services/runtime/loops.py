"""An engine's loops: each runs its cycle, sleeps its interval, and runs it again,
until a stop. A cycle is never cut short by a stop that can wait for it: the stop
takes the cycle's lock (waits up to the grace for the cycle in flight), then cancels.

``run_cycle`` runs one cycle (scheduled or triggered) under its loop's lock, times it
and hands the outcome to ``on_cycle`` (the host counts and records it)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import structlog

from contracts.events import new_id, utcnow
from services.runtime import refusals
from services.runtime.engine import CycleOutcome, Loop, StopRequested

T = TypeVar("T")
STUCK_LOOP_S = 5.0  # how long a cancelled loop may take to end before the stop goes on without it

# (loop, outcome, run_id, duration_ms, finished, actor, correlation_id)
OnCycle = Callable[[Loop, CycleOutcome, str, float, datetime, str | None, str], Awaitable[None]]


class LoopRunner:
    def __init__(self, slug: str, loops: list[Loop], *, stop_grace: float, on_cycle: OnCycle) -> None:
        self.slug = slug
        self.loops = loops
        self.stop_grace = stop_grace
        self._on_cycle = on_cycle
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._locks = {loop.name: asyncio.Lock() for loop in loops}
        self.last_run: dict[str, datetime] = {}
        self.stopping = asyncio.Event()  # set from the moment a stop begins until a start
        self._log = structlog.get_logger().bind(system=slug)

    def find(self, name: str) -> Loop | None:
        return next((loop for loop in self.loops if loop.name == name), None)

    def active(self, name: str) -> bool:
        return name in self._tasks

    def busy(self, name: str | None = None) -> bool:
        """A cycle of loop ``name`` (of any loop, without a name) is in flight."""
        if name is not None:
            return self._locks[name].locked()
        return any(lock.locked() for lock in self._locks.values())

    def start(self, *, everywhere_only: bool = False) -> None:
        """Start the loops not running yet (a standby starts only its ``everywhere`` ones)."""
        self.stopping.clear()
        for loop in self.loops:
            if loop.name in self._tasks or (everywhere_only and not loop.everywhere):
                continue
            self._tasks[loop.name] = asyncio.create_task(self._run(loop), name=f"{self.slug}-{loop.name}")

    def begin_stop(self) -> None:
        self.stopping.set()

    async def stop(self) -> None:
        self.stopping.set()
        tasks = list(self._tasks.values())
        busy = [self._locks[name] for name in self._tasks if self._locks[name].locked()]
        self._tasks.clear()
        # A loop asleep between cycles stops at once; one mid-cycle may finish that cycle
        # within stop_grace. Wait for the cycle (take its lock), not for the loop task:
        # that never ends by itself, so waiting on it always cost the whole grace. Holding
        # the lock keeps the loop from starting another cycle before it is cancelled.
        held: list[asyncio.Lock] = []

        async def hold(lock: asyncio.Lock) -> None:
            await lock.acquire()
            held.append(lock)

        if busy:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.stop_grace):
                    await asyncio.gather(*(hold(lock) for lock in busy))
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STUCK_LOOP_S)
            for task in stuck:  # a cycle swallowed its cancel: say so loudly, do not hang the stop
                self._log.error("loop.ignored_cancel", loop=task.get_name())
        for lock in held:
            lock.release()

    async def until_stopping(self, idle_wait: Awaitable[T]) -> T:
        """Await an idle wait of a cycle (a long-poll with nothing in hand) but give up,
        raising StopRequested, as soon as a stop begins: the stop then need not wait for
        the poll to time out. Only for waits that are safe to abandon: a pull whose
        messages arrive after it was abandoned stays in the subscription for the next
        pull, or is redelivered by JetStream (never acked, never lost)."""
        wait = asyncio.ensure_future(idle_wait)
        if self.stopping.is_set():
            wait.cancel()
            raise StopRequested
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({wait, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not wait.done():
                # Cancel, but do not await it here: awaiting inside a suppress would also
                # swallow a cancel of *this* task, and a loop that ignores its cancel never
                # stops. The abandoned wait winds down on its own.
                wait.cancel()
                wait.add_done_callback(_retrieve)
        if not wait.done() or wait.cancelled():
            raise StopRequested
        return wait.result()

    async def _run(self, loop: Loop) -> None:
        me = asyncio.current_task()
        # Ends when cancelled, and also once a stop has dropped it from _tasks: a cancel
        # can be swallowed inside a cycle (nats-py's fetch may turn one into a TimeoutError),
        # and a loop that carried on would keep the stop waiting.
        while self._tasks.get(loop.name) is me:
            try:
                await self.run_cycle(loop)
            except asyncio.CancelledError:
                raise
            except Exception:  # the cycle itself never raises; this is publishing failing
                self._log.exception("loop.cycle_not_recorded", loop=loop.name)
            await asyncio.sleep(loop.interval)

    async def run_cycle(
        self,
        loop: Loop,
        *,
        run: Callable[[], Awaitable[CycleOutcome]] | None = None,
        run_id: str | None = None,
        actor: str | None = None,
        correlation_id: str = "",
    ) -> CycleOutcome:
        """Run one cycle (``run`` overrides the loop's cycle, for triggers) and record it."""
        run_id = run_id or new_id()
        async with self._locks[loop.name]:
            started = time.perf_counter()
            try:
                outcome = await (run or loop.cycle)()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.exception("cycle.failed", loop=loop.name)
                outcome = CycleOutcome(
                    ok=False,
                    result="failed",
                    detail=refusals.bound(f"{type(exc).__name__}: {exc}", 1000),
                    error_type=type(exc).__name__,
                )
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            now = utcnow()
            self.last_run[loop.name] = now
            await self._on_cycle(loop, outcome, run_id, duration_ms, now, actor, correlation_id)
        return outcome

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": loop.name,
                "interval_seconds": loop.interval,
                "primary": loop.primary,
                "last_run": self.last_run.get(loop.name),
                "active": loop.name in self._tasks,
            }
            for loop in self.loops
        ]


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Done callback of an abandoned wait: fetch its outcome so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background loop and wait until it has ended.

    Cancel again until it does: on Python 3.11, ``asyncio.wait_for`` inside nats-py's
    ``fetch`` can swallow a cancellation and raise TimeoutError instead, which a fetch
    loop reads as "nothing yet" and carries on (the loops also check a stop flag)."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


async def first_of(*waits: Awaitable[object], timeout: float | None = None) -> None:
    """Return when the first of ``waits`` is done (or after ``timeout``); cancel the rest."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
