"""Wazuh alerts (``/var/ossec/logs/alerts/alerts.json`` lines, or the same documents
from the Wazuh indexer).

Severity from ``rule.level`` (0-15, Wazuh's rules classification):
0-3 -> informational (ignored, system notifications, successful/authorised events),
4-6 -> low (low-priority errors, user errors, low-relevance attacks),
7-11 -> medium ("bad word" matches, first-time-seen, invalid sources, repeated errors,
integrity warnings), 12-14 -> high (high-importance events, unusual errors, correlated
attacks), 15 and above -> critical (severe attack). These are the Wazuh dashboard's
low/medium/high/critical bands, with its no-security-relevance levels 0-3 as informational.
"""

from __future__ import annotations

from typing import Any

from contracts.soc.formats.common import (
    RecordError,
    basename,
    cve_ids,
    first,
    get,
    ip,
    parse_time,
    product_id,
    sha256,
    technique_ids,
    text,
)

FORMAT = "wazuh"
LABEL = "Wazuh"


def matches(record: dict[str, Any]) -> bool:
    rule = record.get("rule")
    return (
        isinstance(rule, dict)
        and "level" in rule
        and any(key in record for key in ("agent", "manager", "decoder", "location"))
    )


def level_of(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def severity(level: int) -> str:
    if level >= 15:
        return "critical"
    if level >= 12:
        return "high"
    if level >= 7:
        return "medium"
    if level >= 4:
        return "low"
    return "informational"


def to_alert(record: dict[str, Any]) -> dict[str, Any]:
    rule = record.get("rule")
    if not isinstance(rule, dict):
        raise RecordError("not a Wazuh alert: no `rule` object", "rule", error="not_an_alert")
    level = level_of(rule.get("level"))
    if level is None:
        raise RecordError(f"rule.level {str(rule.get('level'))[:32]!r} is not a number", "rule.level")
    title = text(rule.get("description"), 256)
    if not title:
        raise RecordError("rule.description is missing", "rule.description")
    data = record.get("data") if isinstance(record.get("data"), dict) else {}
    frequency = level_of(rule.get("frequency"))
    return {
        "id": product_id(record.get("id"), "wazuh", record),
        "time": parse_time(first(record, "timestamp", "@timestamp"), "timestamp"),
        "source": "wazuh",
        "title": title,
        "severity": severity(level),
        "rule_id": text(rule.get("id"), 128),
        "description": text(record.get("full_log"), 4096),
        "host": text(first(record, "agent.name", "predecoder.hostname"), 255),
        "user": text(
            first(
                data,
                "dstuser",
                "srcuser",
                "win.eventdata.targetUserName",
                "win.eventdata.subjectUserName",
                "audit.auid",
            ),
            255,
        ),
        "src_ip": ip(first(data, "srcip", "src_ip", "win.eventdata.ipAddress")),
        "dst_ip": ip(first(data, "dstip", "dst_ip", "dest_ip")),
        "process": _process(data),
        "techniques": technique_ids(get(rule, "mitre.id")),
        "cves": cve_ids(first(data, "vulnerability.cve", "vulnerability.id")),
        # a frequency rule fires on `frequency` matching events (previous_output has them)
        "count": frequency if frequency and 1 <= frequency <= 10_000_000 else 1,
    }


def _process(data: dict[str, Any]) -> dict[str, Any] | None:
    """Sysmon (``data.win.eventdata``) or auditd (``data.audit``) through Wazuh."""
    image = first(data, "win.eventdata.image", "audit.exe")
    if not image:
        return None
    hashes = str(get(data, "win.eventdata.hashes") or "")
    digest = next(
        (part.split("=", 1)[1] for part in hashes.split(",") if part.upper().startswith("SHA256=")), None
    )
    pid = get(data, "win.eventdata.processId") or get(data, "audit.pid")
    return {
        "name": text(basename(image), 128) or "unknown",
        "command_line": text(first(data, "win.eventdata.commandLine", "audit.command"), 4096),
        "pid": _pid(pid),
        "parent": text(basename(get(data, "win.eventdata.parentImage")), 128),
        "sha256": sha256(digest),
    }


def _pid(value: Any) -> int | None:
    try:
        text_value = str(value)
        number = int(text_value, 16) if text_value.lower().startswith("0x") else int(text_value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None
