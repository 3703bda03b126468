"""ML Training Pipeline — `ml-retrain`.

MINIMAL: this engine's domain work (trains no models yet) arrives with issue #4. Until then
each cycle is a placeholder that says so in its result; lifecycle, control, events,
heartbeats and counters are the real shared runtime.
"""

from __future__ import annotations

from typing import Any

from services.runtime import CycleOutcome, Engine, Loop


class MlEngine(Engine):
    slug = "ml-retrain"
    minimal_work = "minimal placeholder cycle: real work arrives with issue #4"

    def __init__(self, settings) -> None:
        super().__init__(settings)

    def loops(self) -> list[Loop]:
        return [
            Loop("retrain", self.interval("retrain", 60), self._minimal_cycle("retrain"), primary=True),
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
            "training_buffer": 0,
            "retrain_threshold": 100,
            "total_retrains": 0,
        }
