"""How the gateway writes a moment in its responses: ISO 8601, UTC as ``Z``.

One function for every view and route (it was written three times)."""

from __future__ import annotations

from datetime import datetime


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None
