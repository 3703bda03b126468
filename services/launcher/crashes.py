"""Crashes of supervised processes as audited events.

When a child of `aoc up` ends by a signal or a non-zero exit, the launcher — the one
that saw the exit status — publishes ``process_crashed`` on
``aoc.evt.<process>.process_crashed`` (system = the engine slug or "gateway", source
"launcher"), as its own NATS user ``launcher``, which may publish nothing else
(services/launcher/natsauth.py). It goes out as soon as the exit is seen, before the
restart's backoff, so the crash is on record within moments; the engine adds
``engine_recovered`` when it is back (services/runtime/recovery.py). A clean exit (0), or
an exit during the launcher's own shutdown, is not a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from nats.aio.client import Client

from contracts import subjects
from contracts.events import ProcessCrashed, Summary, encode, new_event
from contracts.settings import Settings
from services.runtime.bus import connect, publish_with_retry
from services.runtime.main import DEPOSED_EXIT

LAUNCHER = "launcher"
CONNECT_TIMEOUT_S = 5.0


def is_crash(returncode: int) -> bool:
    # an instance that lost its lease exits on purpose (DEPOSED_EXIT): the takeover is on
    # record as instance_took_over; it is started again as a standby, not a crash
    return returncode not in (0, DEPOSED_EXIT)


def crash_record(
    *, pid: int, returncode: int, uptime_s: float, restarts: int, restart_in_s: float | None
) -> ProcessCrashed:
    name: str | None = None
    if returncode < 0:
        with contextlib.suppress(ValueError):
            name = signal.Signals(-returncode).name
        name = name or f"signal {-returncode}"
    return ProcessCrashed(
        pid=pid,
        exit_code=None if returncode < 0 else returncode,
        signal=name,
        uptime_s=round(uptime_s, 3),
        restarts=restarts,
        restart_in_s=restart_in_s,
    )


def crash_summary(system: str, record: ProcessCrashed) -> Summary:
    how = f"was killed by {record.signal}" if record.signal else f"exited with code {record.exit_code}"
    then = (
        f"; restart #{record.restarts} in {record.restart_in_s:g} s"
        if record.restart_in_s is not None
        else ""
    )
    return Summary(
        action="process_crashed",
        detail=f"{system} (pid {record.pid}) {how} after {record.uptime_s:.1f} s{then}",
        result="failed",
    )


class CrashReporter:
    """Publishes crash records as the NATS user ``launcher``; connects on first use."""

    def __init__(self, settings: Settings, log: Callable[[str], None]) -> None:
        self.settings = settings
        self._log = log
        self._nc: Client | None = None
        self._lock = asyncio.Lock()
        self.reported = 0

    async def _client(self) -> Client:
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await asyncio.wait_for(
                    connect(self.settings, name=f"aoc-{LAUNCHER}"), CONNECT_TIMEOUT_S
                )
            return self._nc

    async def report(
        self,
        system: str,
        *,
        pid: int,
        returncode: int,
        uptime_s: float,
        restarts: int,
        restart_in_s: float | None,
    ) -> None:
        if not is_crash(returncode):
            return
        record = crash_record(
            pid=pid, returncode=returncode, uptime_s=uptime_s, restarts=restarts, restart_in_s=restart_in_s
        )
        event = new_event(
            system=system,
            payload=record,
            summary=crash_summary(system, record),
            source=LAUNCHER,
            actor=LAUNCHER,
        )
        try:
            nc = await self._client()
            await publish_with_retry(
                nc.jetstream(),
                subjects.evt(system, ProcessCrashed.TYPE),
                encode(event),
                msg_id=event.id,
                deadline=10.0,
            )
            self.reported += 1
        except Exception as exc:  # NATS down too: the launcher's own log line still says it
            self._log(f"could not record the crash of {system} on the bus: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
