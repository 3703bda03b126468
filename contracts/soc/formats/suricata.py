"""Suricata EVE JSON (``eve.json``), ``event_type: alert`` records.

Severity: ``alert.severity`` is the rule's classification priority, 1 the most severe:
1 -> high, 2 -> medium, 3 -> low, 4 and above -> informational; absent -> medium.
(Suricata has no "critical": a priority-1 rule still needs triage to confirm it.)
"""

from __future__ import annotations

from typing import Any

from contracts.soc.formats.common import (
    RecordError,
    cve_ids,
    domain,
    first,
    get,
    ip,
    parse_time,
    stable_id,
    technique_ids,
    text,
)

FORMAT = "suricata-eve"
LABEL = "Suricata EVE"
SEVERITY = {1: "high", 2: "medium", 3: "low"}


def matches(record: dict[str, Any]) -> bool:
    return isinstance(record.get("event_type"), str) and (
        "flow_id" in record or isinstance(record.get("alert"), dict) or "src_ip" in record
    )


def severity(priority: Any) -> str:
    if isinstance(priority, bool) or not isinstance(priority, int | float | str):
        return "medium"
    try:
        level = int(priority)
    except ValueError:
        return "medium"
    if level in SEVERITY:
        return SEVERITY[level]
    return "informational" if level >= 4 else "medium"


def to_alert(record: dict[str, Any]) -> dict[str, Any]:
    event_type = record.get("event_type")
    if event_type != "alert":
        raise RecordError(
            f"event_type {str(event_type)[:32]!r} is not an alert", "event_type", error="not_an_alert"
        )
    alert = record.get("alert")
    if not isinstance(alert, dict):
        raise RecordError("an alert event without its `alert` object", "alert")
    title = text(alert.get("signature"), 256)
    if not title:
        raise RecordError("alert.signature is missing", "alert.signature")
    metadata = alert.get("metadata") if isinstance(alert.get("metadata"), dict) else {}
    rule_id = ":".join(str(alert.get(key, "")) for key in ("gid", "signature_id", "rev")).strip(":")
    return {
        # EVE carries no alert id: the record's digest, so a re-sent line is the same alert
        "id": stable_id("suricata", record),
        "time": parse_time(record.get("timestamp"), "timestamp"),
        "source": "suricata",
        "title": title,
        "severity": severity(alert.get("severity")),
        "rule_id": text(rule_id, 128),
        "description": text(alert.get("category"), 4096),
        "src_ip": ip(record.get("src_ip")),
        "dst_ip": ip(record.get("dest_ip")),
        "domain": domain(
            first(record, "http.hostname", "tls.sni", "dns.rrname") or _first_query(get(record, "dns.query"))
        ),
        "techniques": technique_ids(
            [*_listed(metadata.get("mitre_technique_id")), *_listed(metadata.get("mitre_attack"))]
        ),
        "cves": cve_ids(_listed(metadata.get("cve"))),
    }


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _first_query(queries: Any) -> Any:
    if isinstance(queries, list) and queries and isinstance(queries[0], dict):
        return queries[0].get("rrname")
    return None
