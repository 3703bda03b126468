"""Alerts in the formats real products emit, mapped onto ``contracts.soc.Alert``
(docs/soc.md has the field table and the severity mapping of each format).

``detect(record)`` names the format of one record; ``to_alert(format, record)`` maps it
and validates the result with the Alert contract, keeping the original record (bounded)
in ``raw``. Both are pure.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import msgspec

from contracts.soc.alerts import Alert, error_path
from contracts.soc.formats import ecs, ocsf, suricata, wazuh
from contracts.soc.formats.common import RecordError, bounded_raw

NATIVE = "aoc"  # AOC's own shape, strictly validated
MAPPERS: dict[str, ModuleType] = {m.FORMAT: m for m in (suricata, wazuh, ecs, ocsf)}
FORMATS = (NATIVE, *MAPPERS)
# tried in this order: the first format whose signature a record carries
_DETECTION_ORDER = (ocsf, suricata, ecs, wazuh)

__all__ = ["FORMATS", "MAPPERS", "NATIVE", "RecordError", "detect", "to_alert"]


def detect(record: Any) -> str | None:
    """The product format of one record, or None (AOC's own shape, or unknown)."""
    if not isinstance(record, dict):
        return None
    for mapper in _DETECTION_ORDER:
        if mapper.matches(record):
            return mapper.FORMAT
    return None


def looks_native(record: Any) -> bool:
    return isinstance(record, dict) and {"title", "severity", "source"} <= record.keys()


def to_alert(fmt: str, record: Any) -> Alert:
    """One product record -> an Alert, or RecordError naming what is wrong."""
    if not isinstance(record, dict):
        raise RecordError(f"expected a JSON object, got {type(record).__name__}", None, error="not_an_object")
    if fmt == NATIVE:
        try:
            return msgspec.convert(record, Alert)
        except msgspec.ValidationError as exc:
            raise RecordError(f"invalid alert: {exc}", _field(str(exc))) from None
    mapper = MAPPERS[fmt]
    if not mapper.matches(record):
        raise RecordError(f"not a {mapper.LABEL} record", None, error="not_an_alert")
    fields = {key: value for key, value in mapper.to_alert(record).items() if value not in (None, "", [])}
    fields["raw"] = bounded_raw(record)
    try:
        return msgspec.convert(fields, Alert)
    except msgspec.ValidationError as exc:
        raise RecordError(f"mapped alert is invalid: {exc}", _field(str(exc))) from None


def _field(message: str) -> str | None:
    path = error_path(message)
    return None if path in (None, "$") else path.removeprefix("$.")
