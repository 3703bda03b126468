"""Elastic Security alerts: documents of ``.alerts-security.alerts-*`` with their
``kibana.alert.*`` fields beside the ECS fields of the source event — flattened dotted
keys, nested objects, or a mix (as Kibana writes them); also an Elasticsearch search hit
(``_source``) or a whole search response (``hits.hits``).

Severity: ``kibana.alert.severity`` (low, medium, high, critical) as it is; else ECS
``event.severity`` (0-100) or ``kibana.alert.risk_score`` (0-100) by Elastic's risk
bands: below 21 low, below 47 medium, below 73 high, else critical; else medium.
"""

from __future__ import annotations

from typing import Any

from contracts.soc.formats.common import (
    RecordError,
    as_list,
    cve_ids,
    domain,
    first,
    get,
    ip,
    parse_time,
    product_id,
    sha256,
    technique_ids,
    text,
)

FORMAT = "ecs"
LABEL = "Elastic Security (ECS)"
SEVERITIES = frozenset({"low", "medium", "high", "critical"})


def unwrap(record: dict[str, Any]) -> dict[str, Any]:
    source = record.get("_source")
    return source if isinstance(source, dict) else record


def matches(record: dict[str, Any]) -> bool:
    document = unwrap(record)
    if isinstance(document.get("kibana"), dict) and isinstance(document["kibana"].get("alert"), dict):
        return True
    return any(isinstance(key, str) and key.startswith("kibana.alert.") for key in document)


def risk_band(score: Any) -> str | None:
    if isinstance(score, bool) or not isinstance(score, int | float):
        return None
    if score < 21:
        return "low"
    if score < 47:
        return "medium"
    if score < 73:
        return "high"
    return "critical"


def severity(document: dict[str, Any]) -> str:
    label = get(document, "kibana.alert.severity")
    if isinstance(label, str) and label.lower() in SEVERITIES:
        return label.lower()
    return (
        risk_band(get(document, "event.severity"))
        or risk_band(get(document, "kibana.alert.risk_score"))
        or "medium"
    )


def to_alert(record: dict[str, Any]) -> dict[str, Any]:
    document = unwrap(record)
    if not matches(record):
        raise RecordError(
            "not an Elastic Security alert: no kibana.alert.* fields", "kibana.alert", error="not_an_alert"
        )
    title = text(first(document, "kibana.alert.rule.name", "rule.name"), 256)
    if not title:
        raise RecordError("kibana.alert.rule.name is missing", "kibana.alert.rule.name")
    threshold = get(document, "kibana.alert.threshold_result.count")
    return {
        "id": product_id(
            first(document, "kibana.alert.uuid", "event.id") or record.get("_id"), "ecs", document
        ),
        "time": parse_time(first(document, "@timestamp", "kibana.alert.original_time"), "@timestamp"),
        "source": text(first(document, "observer.product", "event.module"), 128).lower()
        or "elastic-security",
        "title": title,
        "severity": severity(document),
        "rule_id": text(first(document, "kibana.alert.rule.rule_id", "rule.id"), 128),
        "description": text(
            first(document, "kibana.alert.rule.description", "kibana.alert.reason", "message"), 4096
        ),
        "host": text(first(document, "host.name", "host.hostname"), 255),
        "user": text(get(document, "user.name"), 255),
        "src_ip": ip(get(document, "source.ip")),
        "dst_ip": ip(get(document, "destination.ip")),
        "domain": domain(first(document, "destination.domain", "url.domain", "dns.question.name")),
        "process": _process(document),
        "techniques": technique_ids(_techniques(document)),
        "cves": cve_ids(get(document, "vulnerability.id")),
        "count": threshold if isinstance(threshold, int) and 1 <= threshold <= 10_000_000 else 1,
    }


def _techniques(document: dict[str, Any]) -> list[Any]:
    """The event's ``threat.technique`` and the rule's MITRE mapping
    (``kibana.alert.rule.threat[].technique[]``, where detection rules keep it)."""
    found: list[Any] = [
        *as_list(get(document, "threat.technique.id")),
        *as_list(get(document, "threat.technique.subtechnique.id")),
    ]
    for threat in as_list(get(document, "kibana.alert.rule.threat")):
        for technique in as_list(threat.get("technique")) if isinstance(threat, dict) else []:
            if isinstance(technique, dict):
                found.append(technique.get("id"))
                found += [
                    sub.get("id") for sub in as_list(technique.get("subtechnique")) if isinstance(sub, dict)
                ]
    return found


def _process(document: dict[str, Any]) -> dict[str, Any] | None:
    name = text(get(document, "process.name"), 128)
    if not name:
        return None
    pid = get(document, "process.pid")
    return {
        "name": name,
        "command_line": text(get(document, "process.command_line"), 4096),
        "pid": pid if isinstance(pid, int) and not isinstance(pid, bool) and pid >= 0 else None,
        "parent": text(get(document, "process.parent.name"), 128),
        "sha256": sha256(get(document, "process.hash.sha256")),
    }
