"""Self-Healing Engine — `heal-check`.

MINIMAL: this engine's domain work (checks and heals nothing yet) arrives with issue #5. Until then
each cycle is a placeholder that says so in its result; lifecycle, control, events,
heartbeats and counters are the real shared runtime.
"""

from __future__ import annotations

from typing import Any

from services.runtime import CycleOutcome, Engine, Loop


class HealingEngine(Engine):
    slug = "heal-check"
    minimal_work = "minimal placeholder cycle: real work arrives with issue #5"

    def __init__(self, settings) -> None:
        super().__init__(settings)

    def loops(self) -> list[Loop]:
        return [
            Loop(
                "heartbeat_watch",
                self.interval("heartbeat_watch", 30),
                self._minimal_cycle("heartbeat_watch"),
            ),
            Loop(
                "subsystem_checks",
                self.interval("subsystem_checks", 60),
                self._minimal_cycle("subsystem_checks"),
                primary=True,
            ),
            Loop("remediation", self.interval("remediation", 120), self._minimal_cycle("remediation")),
            Loop("report", self.interval("report", 3600), self._minimal_cycle("report")),
        ]

    def _minimal_cycle(self, loop: str):
        async def cycle() -> CycleOutcome:
            return CycleOutcome(
                detail=f"{loop}: minimal cycle, no domain work yet (issue #5)",
                quiet=True,
                output={"minimal": True},
            )

        return cycle

    def status_extras(self) -> dict[str, Any]:
        return {
            "circuit_breakers": {},
            "healing_log": [],
        }
