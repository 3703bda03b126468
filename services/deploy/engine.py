"""Auto-Deploy Pipeline — `deploy`.

MINIMAL: this engine's domain work (builds no release yet) arrives with issue #3. Until then
each cycle is a placeholder that says so in its result; lifecycle, control, events,
heartbeats and counters are the real shared runtime.
"""

from __future__ import annotations

from typing import Any

from services.runtime import CycleOutcome, Engine, Loop


class DeployEngine(Engine):
    slug = "deploy"
    minimal_work = "minimal placeholder cycle: real work arrives with issue #3"

    def __init__(self, settings) -> None:
        super().__init__(settings)

    def loops(self) -> list[Loop]:
        return [
            Loop("watch", self.interval("watch", 60), self._minimal_cycle("watch"), primary=True),
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
            "deploy_history": [],
            "is_deploying": False,
            "total_deploys": 0,
        }
