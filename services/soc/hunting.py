"""Threat hunting: correlate recent alerts with the IOCs of the current advisories.
Pure; the engine reads the advisories from KV ``aoc_advisories`` and the alerts from
its own memory of recent decisions.

An IOC matches an alert when:
- ip      — equals src_ip or dst_ip (both normalised by ipaddress);
- domain  — equals the alert's domain, or the domain is a subdomain of it;
- url     — its host part matches like a domain;
- sha256 / md5 — equals the process hash (case-insensitive);
- cve     — is in the alert's CVEs (so do the advisory's own ``cves``);
- process — equals the process name (case-insensitive).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from contracts.advisory import Advisory
from contracts.soc import AlertSummary, HuntFinding


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _domain(value: str) -> str:
    return value.strip().lower().rstrip(".")


class IocIndex:
    """Advisory IOCs by type and normalised value -> the advisories that name them."""

    def __init__(self, advisories: Iterable[Advisory]) -> None:
        self.by_key: dict[tuple[str, str], list[Advisory]] = {}
        self.advisories = 0
        for advisory in advisories:
            self.advisories += 1
            for ioc in advisory.iocs:
                key = self._key(ioc.type.lower(), ioc.value)
                if key:
                    self.by_key.setdefault(key, []).append(advisory)
            for cve in advisory.cves:
                self.by_key.setdefault(("cve", cve.upper()), []).append(advisory)

    @staticmethod
    def _key(kind: str, value: str) -> tuple[str, str] | None:
        if kind == "ip":
            address = _ip(value)
            return ("ip", address) if address else None
        if kind == "url":
            host = urlsplit(value if "://" in value else f"http://{value}").hostname
            return ("domain", _domain(host)) if host else None
        if kind == "domain":
            return ("domain", _domain(value))
        if kind in ("sha256", "md5", "sha1"):
            return ("hash", value.strip().lower())
        if kind == "cve":
            return ("cve", value.strip().upper())
        if kind == "process":
            return ("process", value.strip().lower())
        return None

    def __len__(self) -> int:
        return len(self.by_key)

    def candidates(self, alert: AlertSummary) -> Iterable[tuple[str, str, str]]:
        """(key type, key value, alert field) for every indicator the alert carries."""
        for name in ("src_ip", "dst_ip"):
            value = getattr(alert, name)
            if value:
                yield "ip", value, name
        if alert.domain:
            parts = _domain(alert.domain).split(".")
            for start in range(len(parts) - 1):  # the domain and every parent but the TLD
                yield "domain", ".".join(parts[start:]), "domain"
        if alert.process is not None:
            if alert.process.sha256:
                yield "hash", alert.process.sha256.lower(), "process.sha256"
            yield "process", alert.process.name.lower(), "process.name"
        for cve in alert.cves:
            yield "cve", cve.upper(), "cves"


def hunt(
    alerts: Iterable[AlertSummary], index: IocIndex, already_reported: set[tuple[str, str, str]]
) -> list[HuntFinding]:
    """New findings: (alert, advisory, indicator) triples not reported before. Does not
    touch ``already_reported``: the engine records findings once their event is stored."""
    findings: list[HuntFinding] = []
    if not len(index):
        return findings
    seen: set[tuple[str, str, str]] = set()
    for alert in alerts:
        for kind, value, field in index.candidates(alert):
            for advisory in index.by_key.get((kind, value), ()):
                key = (alert.id, advisory.id, value)
                if key in already_reported or key in seen:
                    continue
                seen.add(key)
                findings.append(
                    HuntFinding(
                        alert_id=alert.id,
                        advisory_id=advisory.id,
                        advisory_title=advisory.title,
                        priority=advisory.priority,
                        ioc_type=kind,
                        ioc_value=value,
                        matched_field=field,
                    )
                )
    return findings
