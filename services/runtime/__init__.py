"""What the seven engines share: lifecycle, loops, control, heartbeats, events, counters."""

from services.runtime.engine import CycleOutcome, Engine, Loop, StopRequested
from services.runtime.host import EngineHost
from services.runtime.lifecycle import Lifecycle, State
from services.runtime.main import run

__all__ = ["CycleOutcome", "Engine", "EngineHost", "Lifecycle", "Loop", "State", "StopRequested", "run"]
