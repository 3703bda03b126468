"""Subject names. Control stays on core NATS (never inside a stream, see
NATS-NOTES.md); events and heartbeats are captured by their streams."""

from __future__ import annotations

CTL_PREFIX = "aoc.ctl"
EVT_PREFIX = "aoc.evt"
HB_PREFIX = "aoc.hb"

EVENTS_STREAM = "AOC_EVENTS"
EVENTS_SUBJECTS = f"{EVT_PREFIX}.>"
HEARTBEATS_STREAM = "AOC_HEARTBEATS"
HEARTBEATS_SUBJECTS = f"{HB_PREFIX}.>"
# The audit records, copied from AOC_EVENTS by the server (a sourced stream with no
# subjects of its own): kept for the retention age whatever load does to AOC_EVENTS
AUDIT_STREAM = "AOC_AUDIT"
# event types that are audit records: who did what to which engine, and crashes
AUDIT_EVENT_TYPES = (
    "command_handled",
    "lifecycle_changed",
    "process_crashed",
    "engine_recovered",
    "instance_took_over",
    "kill_switch_engaged",
    "entry_annotated",
)
# the gateway's own audit (token created / revoked) is an activity_recorded event
GATEWAY_AUDIT_SUBJECT = f"{EVT_PREFIX}.gateway.activity_recorded"

COMMAND_IDS_BUCKET = "aoc_command_ids"
LEASES_BUCKET = "aoc_leases"  # one key per engine: which instance is active (services/runtime/lease.py)
INST_PREFIX = "aoc.inst"  # aoc.inst.<system>.<instance>: commands a standby forwards to the active
ASK_CACHE_BUCKET = "aoc_ask_cache"  # answers of POST /api/v1/ask, 1 h TTL (gateway only)

# Asked by the integrity engine and heal-check; answered by the gateway.
GATEWAY_HEALTH = "aoc.gateway.health"


def ctl(system: str, verb: str) -> str:
    """aoc.ctl.<system>.<verb>; system may be ``all``."""
    return f"{CTL_PREFIX}.{system}.{verb}"


def ctl_wildcard(system: str) -> str:
    return f"{CTL_PREFIX}.{system}.*"


def ctl_user_wildcard(system: str) -> str:
    """aoc.ctl.<system>.<verb>.<user>: what a human NATS user sends on the secure server,
    which refuses any last token but the sender's own user name (docs/security.md)."""
    return f"{CTL_PREFIX}.{system}.*.*"


def evt(system: str, event_type: str) -> str:
    """aoc.evt.<system>.<type>"""
    return f"{EVT_PREFIX}.{system}.{event_type}"


def hb(system: str, standby_instance: str | None = None) -> str:
    """aoc.hb.<system> for the active instance, aoc.hb.<system>.<instance> for a standby."""
    return f"{HB_PREFIX}.{system}" if standby_instance is None else f"{HB_PREFIX}.{system}.{standby_instance}"


def instance(system: str, instance_id: str) -> str:
    """aoc.inst.<system>.<instance>: where one instance takes commands forwarded to it."""
    return f"{INST_PREFIX}.{system}.{instance_id}"


def parse_ctl(subject: str) -> tuple[str, str] | None:
    """'aoc.ctl.soc-cycle.stop' (or '...stop.<user>') -> ('soc-cycle', 'stop'); None when it
    is not a control subject."""
    parts = subject.split(".")
    if len(parts) not in (4, 5) or parts[0] != "aoc" or parts[1] != "ctl":
        return None
    return parts[2], parts[3]
