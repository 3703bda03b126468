"""OCSF Detection Finding (``class_uid`` 2004), OCSF 1.1 and later; the ``attacks`` of
1.0 (top level) are read too.

Severity from ``severity_id``: 1 informational, 2 low, 3 medium, 4 high, 5 critical,
6 (fatal) critical; 0 (unknown) and 99 (other) medium, unless the ``severity`` label
names one of ours — an unknown severity gets an analyst's look rather than a silent
auto-resolve.
"""

from __future__ import annotations

import re
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

FORMAT = "ocsf"
LABEL = "OCSF Detection Finding"
DETECTION_FINDING = 2004
SEVERITY = {1: "informational", 2: "low", 3: "medium", 4: "high", 5: "critical", 6: "critical"}
LABELS = frozenset({"informational", "low", "medium", "high", "critical"})
CLASS_NAMES = {2001: "Security Finding", 2002: "Vulnerability Finding", 2003: "Compliance Finding"}
SHA256_ALGORITHM = 3  # OCSF fingerprint algorithm_id


def matches(record: dict[str, Any]) -> bool:
    return "class_uid" in record and isinstance(record.get("metadata"), dict)


def severity(record: dict[str, Any]) -> str:
    severity_id = record.get("severity_id")
    if isinstance(severity_id, int) and not isinstance(severity_id, bool) and severity_id in SEVERITY:
        return SEVERITY[severity_id]
    label = record.get("severity")
    if isinstance(label, str) and label.lower() in LABELS:
        return label.lower()
    return "medium"


def to_alert(record: dict[str, Any]) -> dict[str, Any]:
    class_uid = record.get("class_uid")
    if class_uid != DETECTION_FINDING:
        name = CLASS_NAMES.get(class_uid, "another class") if isinstance(class_uid, int) else "no class"
        raise RecordError(
            f"class_uid {str(class_uid)[:16]} ({name}) is not a Detection Finding ({DETECTION_FINDING})",
            "class_uid",
            error="not_an_alert",
        )
    title = text(first(record, "finding_info.title", "message"), 256)
    if not title:
        raise RecordError("finding_info.title is missing", "finding_info.title")
    product = text(first(record, "metadata.product.name", "metadata.product.vendor_name"), 128)
    count = record.get("count")
    return {
        "id": product_id(first(record, "finding_info.uid", "metadata.uid"), "ocsf", record),
        "time": parse_time(first(record, "time_dt", "time"), "time"),
        "source": re.sub(r"\s+", "-", product.lower()) or "ocsf",
        "title": title,
        "severity": severity(record),
        "rule_id": text(first(record, "finding_info.analytic.uid", "finding_info.analytic.name"), 128),
        "description": text(first(record, "finding_info.desc", "message"), 4096),
        "host": text(first(record, "device.hostname", "device.name"), 255),
        "user": text(get(record, "actor.user.name"), 255),
        "src_ip": ip(get(record, "src_endpoint.ip")) or _evidence_ip(record, "src_endpoint"),
        "dst_ip": ip(get(record, "dst_endpoint.ip")) or _evidence_ip(record, "dst_endpoint"),
        "domain": domain(first(record, "dst_endpoint.domain", "url.hostname")),
        "process": _process(record),
        "techniques": technique_ids(_techniques(record)),
        "cves": cve_ids(
            [get(v, "cve.uid") for v in as_list(record.get("vulnerabilities")) if isinstance(v, dict)]
        ),
        "count": count
        if isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= 10_000_000
        else 1,
    }


def _evidence_ip(record: dict[str, Any], endpoint: str) -> str | None:
    for evidence in as_list(record.get("evidences")):
        found = ip(get(evidence, f"{endpoint}.ip")) if isinstance(evidence, dict) else None
        if found:
            return found
    return None


def _techniques(record: dict[str, Any]) -> list[Any]:
    found: list[Any] = []
    for attack in [*as_list(get(record, "finding_info.attacks")), *as_list(record.get("attacks"))]:
        if isinstance(attack, dict):
            found += [get(attack, "technique.uid"), get(attack, "sub_technique.uid")]
    return found


def _process(record: dict[str, Any]) -> dict[str, Any] | None:
    process = get(record, "actor.process")
    if not isinstance(process, dict) or not text(process.get("name"), 128):
        return None
    digest = next(
        (
            h.get("value")
            for h in as_list(get(process, "file.hashes"))
            if isinstance(h, dict) and h.get("algorithm_id") == SHA256_ALGORITHM
        ),
        None,
    )
    pid = process.get("pid")
    return {
        "name": text(process.get("name"), 128),
        "command_line": text(process.get("cmd_line"), 4096),
        "pid": pid if isinstance(pid, int) and not isinstance(pid, bool) and pid >= 0 else None,
        "parent": text(get(process, "parent_process.name"), 128),
        "sha256": sha256(digest),
    }
