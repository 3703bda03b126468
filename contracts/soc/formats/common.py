"""What the product mappers share: reading fields the way these products write them
(nested objects, flattened dotted keys, or both in one document), and turning their
values into the Alert's (times with or without a colon in the offset, epoch seconds or
milliseconds, MITRE ids in any case, CVE ids with underscores).

Tolerance is deliberate: a product's extra fields are ignored, and an optional value that
does not parse (an address, a domain, a hash) is left out rather than losing the alert.
What a record cannot do without — being an alert of the format at all, a title, a time
that parses if it is given — raises ``RecordError``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts.soc.alerts import MAX_RAW_BYTES, normalised_ip

MISSING = object()
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
_CVE = re.compile(r"^CVE-\d{4}-\d{4,7}$")
_ALERT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$")
_SHA256 = re.compile(r"^[A-Fa-f0-9]{64}$")
_OFFSET_WITHOUT_COLON = re.compile(r"([+-]\d{2})(\d{2})$")
MAX_LIST = 20  # techniques, CVEs per alert (the Alert contract's limit)


class RecordError(ValueError):
    """This record cannot become an alert; ``error`` says which kind of problem."""

    def __init__(self, message: str, field: str | None = None, error: str = "invalid_record") -> None:
        super().__init__(message)
        self.field = field
        self.error = error


def get(record: Any, path: str, default: Any = None) -> Any:
    """``record["a"]["b"]["c"]`` for ``"a.b.c"``, also when some levels are flattened
    into dotted keys (``{"kibana.alert.rule": {"name": ...}}``, ``{"kibana.alert.rule.name": ...}``)."""
    value = _get(record, path.split("."))
    return default if value is MISSING else value


def _get(node: Any, parts: list[str]) -> Any:
    if not parts:
        return node
    if not isinstance(node, dict):
        return MISSING
    # the longest dotted key first: flattened documents name a leaf in one key
    for cut in range(len(parts), 0, -1):
        key = ".".join(parts[:cut])
        if key in node:
            found = _get(node[key], parts[cut:])
            if found is not MISSING:
                return found
    return MISSING


def first(record: Any, *paths: str) -> Any:
    """The first of ``paths`` with a value (not None, not empty)."""
    for path in paths:
        value = get(record, path)
        if value not in (None, "", [], {}):
            return value
    return None


def text(value: Any, limit: int) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).strip()[:limit]


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def parse_time(value: Any, field: str) -> datetime | None:
    """RFC 3339 / ISO 8601 (``+0000`` offsets too), or epoch seconds / milliseconds."""
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise RecordError(f"{field}: {value!r} is not a time", field)
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 100_000_000_000 else value  # ms after 1973 vs s
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise RecordError(f"{field}: {value!r} is not a time", field) from None
    if isinstance(value, str):
        candidate = value.strip()
        if candidate.endswith(("Z", "z")):
            candidate = candidate[:-1] + "+00:00"
        candidate = _OFFSET_WITHOUT_COLON.sub(r"\1:\2", candidate)
        try:
            parsed = datetime.fromisoformat(candidate)
        except ValueError:
            raise RecordError(f"{field}: {value[:64]!r} is not an ISO 8601 time", field) from None
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise RecordError(f"{field}: {str(value)[:64]!r} is not a time", field)


def technique_ids(values: Any) -> list[str]:
    """MITRE ATT&CK technique ids: ``t1190`` -> ``T1190``; anything else is left out."""
    found: list[str] = []
    for value in as_list(values):
        candidate = str(value).strip().upper()
        if _TECHNIQUE.match(candidate) and candidate not in found:
            found.append(candidate)
    return found[:MAX_LIST]


def cve_ids(values: Any) -> list[str]:
    """``CVE-2021-44228``, ``CVE_2021_44228``, ``2021-44228`` -> ``CVE-2021-44228``."""
    found: list[str] = []
    for value in as_list(values):
        candidate = str(value).strip().upper().replace("_", "-")
        if not candidate.startswith("CVE-"):
            candidate = f"CVE-{candidate}"
        if _CVE.match(candidate) and candidate not in found:
            found.append(candidate)
    return found[:MAX_LIST]


def ip(value: Any) -> str | None:
    """An address, or None when the product's value is not one (an optional field)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str) or not value:
        return None
    return normalised_ip(value.strip())


def domain(value: Any) -> str | None:
    """A DNS name (not an address written where a host name goes), or None."""
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str):
        return None
    candidate = value.strip().rstrip(".").lower()
    if not candidate or ip(candidate) is not None or not _DOMAIN.match(candidate):
        return None
    return candidate


def sha256(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and _SHA256.match(value) else None


def basename(path: Any) -> str:
    """The file name of a Windows or POSIX path."""
    return re.split(r"[\\/]", str(path))[-1] if path else ""


def stable_id(prefix: str, value: Any) -> str:
    """A deterministic id: the same record (or product id) always gets the same alert id,
    so a re-sent record is recognised by triage and its queue message deduplicated."""
    digest = hashlib.sha256(msgspec.json.encode(value, order="sorted")).hexdigest()
    return f"{prefix}-{digest[:40]}"


def product_id(value: Any, prefix: str, record: Any) -> str:
    """The product's own id when it is usable as an alert id, else a digest of it (or of
    the whole record when there is none)."""
    if value not in (None, ""):
        candidate = str(value)
        return candidate if _ALERT_ID.match(candidate) else stable_id(prefix, candidate)
    return stable_id(prefix, record)


def bounded_raw(record: dict[str, Any]) -> dict[str, Any]:
    """The original record for ``raw``, within ``MAX_RAW_BYTES``: a larger one keeps its
    smallest top-level fields and says what was left out (size, digest, field names)."""
    encoded = msgspec.json.encode(record)
    if len(encoded) <= MAX_RAW_BYTES:
        return record
    budget = MAX_RAW_BYTES - 2048  # room for the note below
    sizes = {
        key: len(msgspec.json.encode(key)) + len(msgspec.json.encode(value)) + 2
        for key, value in record.items()
    }
    kept: dict[str, Any] = {}
    used = 2
    for key in sorted(record, key=lambda k: sizes[k]):
        if used + sizes[key] > budget:
            break
        kept[key] = record[key]
        used += sizes[key]
    dropped = [str(key)[:64] for key in record if key not in kept]
    kept["aoc_raw_truncated"] = {
        "bytes": len(encoded),
        "sha256": hashlib.sha256(encoded).hexdigest(),
        "dropped_fields": dropped[:20],
        "dropped_count": len(dropped),
    }
    return {key: kept[key] for key in [*record, "aoc_raw_truncated"] if key in kept}
