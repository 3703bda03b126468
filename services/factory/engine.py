"""Frontend Factory Engine — `frontend-factory`.

MINIMAL: this engine's domain work (generates no pages yet) arrives with issue #3. Until then
each cycle is a placeholder that says so in its result; lifecycle, control, events,
heartbeats and counters are the real shared runtime.
"""

from __future__ import annotations

from typing import Any

from services.runtime import CycleOutcome, Engine, Loop


class FactoryEngine(Engine):
    slug = "frontend-factory"
    minimal_work = "minimal placeholder cycle: real work arrives with issue #3"

    def __init__(self, settings) -> None:
        super().__init__(settings)

    def loops(self) -> list[Loop]:
        return [
            Loop("queue", self.interval("queue", 10), self._minimal_cycle("queue"), primary=True),
        ]

    def _minimal_cycle(self, loop: str):
        async def cycle() -> CycleOutcome:
            return CycleOutcome(
                detail=f"{loop}: minimal cycle, no domain work yet (issue #3)",
                quiet=True,
                output={"minimal": True},
            )

        return cycle

    def status_extras(self) -> dict[str, Any]:
        return {
            "total_requirements": 0,
            "total_generated": 0,
            "total_deployed": 0,
            "success_rate_pct": 100.0,
        }
