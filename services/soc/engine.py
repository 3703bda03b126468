"""Autonomous SOC Engine — `soc-cycle`.

MINIMAL: this engine's domain work (triages no alerts yet) arrives with issue #4. Until then
each cycle is a placeholder that says so in its result; lifecycle, control, events,
heartbeats and counters are the real shared runtime.
"""

from __future__ import annotations

from typing import Any

from services.runtime import CycleOutcome, Engine, Loop


class SocEngine(Engine):
    slug = "soc-cycle"
    minimal_work = "minimal placeholder cycle: real work arrives with issue #4"

    def __init__(self, settings) -> None:
        super().__init__(settings)

    def loops(self) -> list[Loop]:
        return [
            Loop("triage", self.interval("triage", 1800), self._minimal_cycle("triage"), primary=True),
            Loop("escalation", self.interval("escalation", 10), self._minimal_cycle("escalation")),
            Loop("soar", self.interval("soar", 3600), self._minimal_cycle("soar")),
            Loop("hunting", self.interval("hunting", 300), self._minimal_cycle("hunting")),
        ]

    def _minimal_cycle(self, loop: str):
        async def cycle() -> CycleOutcome:
            return CycleOutcome(
                detail=f"{loop}: minimal cycle, no domain work yet (issue #4)",
                quiet=True,
                output={"minimal": True},
            )

        return cycle

    def status_extras(self) -> dict[str, Any]:
        return {
            "alerts_processed": 0,
            "auto_resolved": 0,
            "escalated_to_human": 0,
        }
