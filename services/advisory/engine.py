"""Threat Advisory Engine — `advisory-refresh`.

MINIMAL: this engine's domain work (fetches no feeds yet) arrives with issue #5. Until then
each cycle is a placeholder that says so in its result; lifecycle, control, events,
heartbeats and counters are the real shared runtime.
"""

from __future__ import annotations

from typing import Any

from services.runtime import CycleOutcome, Engine, Loop


class AdvisoryEngine(Engine):
    slug = "advisory-refresh"
    minimal_work = "minimal placeholder cycle: real work arrives with issue #5"

    def __init__(self, settings) -> None:
        super().__init__(settings)

    def loops(self) -> list[Loop]:
        return [
            Loop("refresh", self.interval("refresh", 1800), self._minimal_cycle("refresh"), primary=True),
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
            "total_advisories": 0,
            "feed_count": 0,
        }
