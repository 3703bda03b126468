"""What an engine learns at start about how its previous process ended.

- **Counters** resume from the larger of two records: the last ``cycle_completed`` event
  (written for every cycle that was not quiet) and the last heartbeat (sent after every
  cycle, quiet ones too, and every interval). Quiet cycles are not written as events, so
  resuming from the event alone took soc-cycle's ``total_runs`` from 2,639 back to 703
  after a ``kill -9``. The heartbeat is what the dashboard showed, so resuming from it
  means no counter anyone saw ever goes backwards.
- **Unclean end**: a clean shutdown (SIGTERM from the launcher, compose or Kubernetes)
  sends a last heartbeat marked ``final``. If the last heartbeat of the previous process
  is not final, that process died without a word (kill -9, OOM killer, a crash, a power
  loss): the new process publishes ``engine_recovered`` with the previous boot id, when it
  was last heard of and the downtime — so the crash is on record wherever the engine
  runs, launcher or not. (A final heartbeat that could not be stored, NATS being down at
  shutdown, makes the next start report a recovery that was not needed: a false alarm,
  never a missed crash.)

Pure functions; the host reads the two records and publishes what these decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts.events import CycleCompleted, EngineRecovered, Heartbeat, Summary


@dataclass(frozen=True)
class Resumed:
    total_runs: int = 0
    errors: int = 0
    last_run: datetime | None = None


def resume_counters(last_cycle: CycleCompleted | None, last_beat: Heartbeat | None) -> Resumed:
    candidates = [Resumed()]
    if last_cycle is not None:
        candidates.append(Resumed(last_cycle.total_runs, last_cycle.error_count, last_cycle.last_run))
    if last_beat is not None:
        status = last_beat.status
        # error_count may be the engine's own figure (SOC: escalations); cycle_errors is ours
        errors = status.error_count if status.cycle_errors is None else status.cycle_errors
        candidates.append(Resumed(status.total_runs, errors, status.last_run))
    return max(candidates, key=lambda r: (r.total_runs, r.errors))


def recovery(
    last_beat: Heartbeat | None, beat_stored_at: datetime | None, *, boot_id: str, now: datetime
) -> EngineRecovered | None:
    """The record of a recovery, or None when the previous process ended cleanly (or
    there was none)."""
    if last_beat is None or last_beat.final or last_beat.boot_id == boot_id:
        return None
    heard = beat_stored_at or last_beat.time
    return EngineRecovered(
        previous_boot_id=last_beat.boot_id,
        last_heartbeat=heard,
        downtime_s=round(max((now - heard).total_seconds(), 0.0), 3),
        previous_state=last_beat.status.state,
        boot_id=boot_id,
    )


def recovery_summary(label: str, record: EngineRecovered) -> Summary:
    return Summary(
        action="engine_recovered",
        detail=(
            f"{label} restarted after an unclean end: its previous process ({record.previous_boot_id[:8]}, "
            f"{record.previous_state or 'state unknown'}) was last heard {record.downtime_s:.1f} s before "
            f"this start; counters resumed at {record.total_runs} runs"
        ),
        result="recovered",
    )
