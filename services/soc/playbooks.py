"""SOAR playbooks: declarative YAML files (services/soc/playbooks/*.yaml, listed in
docs/soc.md), applied to confirmed threats. Pure: running a playbook *generates* the
artefacts (firewall and resolver rules, EDR block-list entries, isolation and account
requests, tickets) and returns them; enforcement points consume the
``playbook_executed`` events that carry them.

A file:
    name: block-external-attacker
    description: ...
    match:                      # every key present must hold; {} matches anything
      any_technique: [T1110]    # prefixes of the alert's MITRE technique ids
      external: src_ip          # that address must be on the internet
      min_severity: high
      title_contains: [brute]
    actions:
      - type: block_ip          # block_ip | block_domain | block_hash | isolate_host
        field: src_ip           #   | disable_account | open_ticket
        direction: inbound
        ttl_hours: 24
        optional: true          # skip quietly when the field is empty

Files apply in name order; the first playbook whose match holds runs (keep a catch-all
last). ``block_ip`` never blocks a private, loopback or reserved address: a playbook
must not be able to cut the estate off from itself.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import yaml

from contracts.soc import SEVERITIES, AlertSummary
from contracts.soc.playbooks import Action, Playbook

PLAYBOOK_DIR = Path(__file__).parent / "playbooks"
RULE_ACTIONS = frozenset({"block_ip", "block_domain", "block_hash"})


class PlaybookError(ValueError):
    pass


def load_playbooks(directory: Path = PLAYBOOK_DIR) -> list[Playbook]:
    playbooks = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            document = yaml.safe_load(path.read_text())
            playbook = msgspec.convert(document, Playbook)
        except (yaml.YAMLError, msgspec.ValidationError) as exc:
            raise PlaybookError(f"{path.name}: {exc}") from None
        for action in playbook.actions:
            if action.type != "open_ticket" and action.field is None:
                raise PlaybookError(f"{path.name}: action {action.type} needs a field")
        playbooks.append(msgspec.structs.replace(playbook, file=path.name))
    if not playbooks:
        raise PlaybookError(f"no playbooks in {directory}")
    return playbooks


def field_value(alert: AlertSummary, name: str) -> str:
    if name.startswith("process."):
        if alert.process is None:
            return ""
        return getattr(alert.process, name.split(".", 1)[1]) or ""
    return getattr(alert, name) or ""


def _is_internet(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def matches(playbook: Playbook, alert: AlertSummary) -> bool:
    rule = playbook.match
    if rule.any_technique and not any(
        technique.startswith(prefix) for technique in alert.techniques for prefix in rule.any_technique
    ):
        return False
    if rule.external and not _is_internet(field_value(alert, rule.external)):
        return False
    if rule.min_severity and SEVERITIES.index(alert.severity) < SEVERITIES.index(rule.min_severity):
        return False
    title = alert.title.lower()
    return not rule.title_contains or any(part.lower() in title for part in rule.title_contains)


def select(playbooks: list[Playbook], alert: AlertSummary) -> Playbook | None:
    return next((playbook for playbook in playbooks if matches(playbook, alert)), None)


def run(playbook: Playbook, alert: AlertSummary, now: datetime) -> tuple[str, list[dict[str, Any]]]:
    """The playbook's artefacts for this alert and the result: ``rule_generated`` when
    at least one blocking rule came out, ``actions_recorded`` when only requests and
    tickets did, ``failed`` when a required field was missing."""
    artefacts: list[dict[str, Any]] = []
    for action in playbook.actions:
        value = field_value(alert, action.field) if action.field else ""
        if action.field and not value:
            if action.optional:
                continue
            artefacts.append(
                {"type": action.type, "status": "skipped", "reason": f"alert has no {action.field}"}
            )
            return "failed", artefacts
        artefacts.append(_artefact(action, value, alert, playbook, now))
    generated = [a for a in artefacts if a["type"] in RULE_ACTIONS and a.get("status") == "generated"]
    if generated:
        return "rule_generated", artefacts
    return "actions_recorded", artefacts


def _artefact(action: Action, value: str, alert: AlertSummary, playbook: Playbook, now: datetime) -> dict:
    expires = (now + timedelta(hours=action.ttl_hours)).isoformat()
    tag = f"aoc:{playbook.name}:{alert.id}"
    if action.type == "block_ip":
        if not _is_internet(value):
            return {"type": "block_ip", "status": "refused", "ip": value, "reason": "not an internet address"}
        v6 = ipaddress.ip_address(value).version == 6
        chain, flag = ("INPUT", "-s") if action.direction == "inbound" else ("OUTPUT", "-d")
        family = "blocklist6" if v6 else "blocklist4"
        hours = f"{action.ttl_hours:g}h"
        return {
            "type": "block_ip",
            "status": "generated",
            "ip": value,
            "direction": action.direction,
            "expires_at": expires,
            "nftables": f"add element inet aoc {family}_{action.direction} {{ {value} timeout {hours} }}",
            "iptables": f"{'ip6tables' if v6 else 'iptables'} -I {chain} {flag} {value} -j DROP "
            f'-m comment --comment "{tag}"',
        }
    if action.type == "block_domain":
        return {
            "type": "block_domain",
            "status": "generated",
            "domain": value,
            "expires_at": expires,
            "rpz": f"{value.rstrip('.')} CNAME .",
        }
    if action.type == "block_hash":
        return {
            "type": "block_hash",
            "status": "generated",
            "sha256": value.lower(),
            "scope": "all-endpoints",
        }
    if action.type == "isolate_host":
        return {"type": "isolate_host", "status": "requested", "host": value, "reference": tag}
    if action.type == "disable_account":
        return {"type": "disable_account", "status": "requested", "user": value, "reference": tag}
    return {
        "type": "open_ticket",
        "status": "requested",
        "queue": action.queue,
        "priority": action.priority,
        "title": f"[{alert.severity}] {alert.title} on {alert.host or alert.src_ip or 'unknown asset'}",
        "reference": tag,
    }
