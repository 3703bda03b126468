"""The SOAR playbook types: what soc-cycle loads from its YAML files
(services/soc/playbooks.py reads and runs them) and announces in a ``playbooks_loaded``
event, so the gateway lists the playbooks in force without importing the engine."""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

FieldName = Literal["src_ip", "dst_ip", "domain", "host", "user", "process.sha256", "process.name"]


class Match(msgspec.Struct, forbid_unknown_fields=True):
    any_technique: list[str] = []
    external: Literal["src_ip", "dst_ip"] | None = None
    min_severity: Literal["informational", "low", "medium", "high", "critical"] | None = None
    title_contains: list[str] = []


class Action(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["block_ip", "block_domain", "block_hash", "isolate_host", "disable_account", "open_ticket"]
    field: FieldName | None = None
    direction: Literal["inbound", "outbound"] = "inbound"
    ttl_hours: float = 24.0
    optional: bool = False
    queue: str = "soc-l2"
    priority: Literal["P1", "P2", "P3"] = "P2"


class Playbook(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    actions: list[Action]
    description: str = ""
    match: Match = msgspec.field(default_factory=Match)
    file: str = ""


class PlaybooksLoaded(msgspec.Struct, kw_only=True):
    """The playbooks soc-cycle runs, in the order it tries them (one event per process
    start): the last one is what is in force."""

    TYPE: ClassVar[str] = "playbooks_loaded"
    playbooks: list[Playbook]
    directory: str
    digest: str  # sha256 of the playbooks as loaded
