"""What an engine is, apart from I/O: its loops, its cycle outcomes, its status extras.

An engine subclass reads like the story of that engine only. ``EngineHost``
(host.py) runs it on the bus: lifecycle, control, heartbeats, events, counters; the
engine itself reaches the bus only through ``self.ctx`` (context.py), never through a
raw connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from contracts.settings import Settings
from contracts.systems import SYSTEMS, SystemInfo

if TYPE_CHECKING:
    from services.runtime.context import EngineContext


class StopRequested(Exception):
    """Raised by ``EngineHost.until_stopping`` when a stop begins during an idle wait."""


@dataclass
class CycleOutcome:
    """What one cycle did. ``result`` is the activity-log result (success, failed,
    auto_resolved, rule_generated, ...); ``ok`` decides the error counter."""

    ok: bool = True
    result: str = "success"
    detail: str = ""
    action: str | None = None  # defaults to "<loop>_cycle"
    output: dict[str, Any] = field(default_factory=dict)
    # a quiet outcome (nothing to do) is counted but not written to the event log,
    # so a 10 s queue check does not flood the activity feed
    quiet: bool = False
    # the exception's type name when the cycle raised (set by the host, not by engines)
    error_type: str | None = None


@dataclass
class Loop:
    name: str
    interval: float  # seconds between the end of one cycle and the start of the next
    cycle: Callable[[], Awaitable[CycleOutcome]]
    primary: bool = False  # the loop `trigger` runs by default
    # runs on every instance, standbys too, while the engine's desired state is running
    # (work that scales out, e.g. triage from a shared work queue); the others run on the
    # active instance only. Its engine prepares it in ``setup_shared``.
    everywhere: bool = False


class Engine:
    """Base class of the seven engines. Subclasses set ``slug`` and define ``loops``."""

    slug: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # what the engine may do on the bus (services/runtime/context.py), set by its host
        self.ctx: EngineContext = None  # type: ignore[assignment]

    @property
    def info(self) -> SystemInfo:
        return SYSTEMS[self.slug]

    def interval(self, loop: str, default: float) -> float:
        return self.settings.interval(self.slug, loop, default)

    # --- what subclasses define ---------------------------------------------------------

    def loops(self) -> list[Loop]:
        raise NotImplementedError

    def status_extras(self) -> dict[str, Any]:
        """The engine's extras in its status (DESIGN.md §3)."""
        return {}

    def detail_extras(self) -> dict[str, Any]:
        """Deep fields for the detail view (recent_decisions, performance_log, ...)."""
        return {}

    def error_count(self, cycle_errors: int) -> int:
        """The error count the dashboard shows; SOC overrides it with escalations."""
        return cycle_errors

    async def setup_shared(self) -> None:
        """Once per process, on every instance (standbys too), before the lease is sought:
        what the ``everywhere`` loops and the inputs every instance serves need."""

    async def setup(self) -> None:
        """Once per process, when the instance first becomes the active one: rebuild the
        engine's domain state, open what only the active instance uses."""

    async def teardown(self) -> None:
        """Once per process, at exit, if ``setup`` ran (the instance was active once)."""

    async def teardown_shared(self) -> None:
        """Once per process, at exit, on every instance (after ``teardown``): close what
        ``setup_shared`` opened. A pull subscription left open makes the connection's drain
        wait its whole timeout (30 s)."""

    async def on_start(self) -> None:
        """Each time the engine enters running."""

    async def on_stop(self) -> None:
        """Each time the engine leaves running."""

    async def trigger(self, args: dict[str, Any]) -> CycleOutcome:
        """One cycle now. The default runs the primary loop's cycle."""
        return await self.primary_loop().cycle()

    def primary_loop(self) -> Loop:
        loops = self.loops()
        return next((loop for loop in loops if loop.primary), loops[0])
