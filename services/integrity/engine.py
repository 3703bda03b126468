"""Platform Integrity Monitor — `integrity-scan`.

MINIMAL: its domain work (inventories nothing yet: counts scans only) comes with issue #3. Until then
each cycle is a placeholder that says so in its result; lifecycle, control, events,
heartbeats and counters are the real shared runtime.
"""

from __future__ import annotations

from typing import Any

from services.runtime import CycleOutcome, Engine, Loop


class IntegrityEngine(Engine):
    slug = "integrity-scan"
    minimal_work = "minimal placeholder cycle: real work arrives with issue #3"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.total_scans = 0

    def loops(self) -> list[Loop]:
        return [
            Loop("scan", self.interval("scan", 1800), self._minimal_cycle("scan"), primary=True),
        ]

    def _minimal_cycle(self, loop: str):
        async def cycle() -> CycleOutcome:
            self.total_scans += 1
            return CycleOutcome(
                detail=f"{loop}: minimal cycle, no domain work yet (issue #3)",
                quiet=True,
                output={"minimal": True},
            )

        return cycle

    def status_extras(self) -> dict[str, Any]:
        return {
            "total_scans": self.total_scans,
            "pages_generated": 0,
            "pending_deploy": False,
        }
