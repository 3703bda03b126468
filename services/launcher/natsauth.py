"""Users and subject permissions of the embedded nats-server (`aoc up`).

Who may do what on the bus (docs/security.md has the table for operators):

- each engine ``<slug>`` publishes only its own events ``aoc.evt.<slug>.>`` and heartbeats
  ``aoc.hb.<slug>[.<instance>]``, writes only its own keys of the shared KV buckets (its
  lease among them), and listens only to its own control subjects, ``aoc.ctl.all.*`` and
  ``aoc.inst.<slug>.>`` (commands its standbys forward). It may create the AOC streams (a
  create never changes a stream that exists) and read every stream, but cannot update,
  purge or delete one. Engines cannot send control commands, except heal-check, whose
  job is to restart engines (restart/status/detail of one engine, never ``all``);
- ``gateway`` sends control commands on ``aoc.ctl.<system>.<verb>`` for the people it
  authenticated (their identity travels in the body) and owns the stream configuration;
- each human operator user ``<user>`` sends control commands only on
  ``aoc.ctl.<system>.<verb>.<user>``: the server refuses any other last token, so an
  engine can trust that token as the NATS user who sent the command;
- ``siem`` (the SIEM service, not an engine) reads every stream, keeps its own durable
  consumers on ``AOC_EVENTS`` (create, info, pull, ack; never delete), publishes only
  ``aoc.evt.siem.>`` (its alerts) and writes only its status bucket ``aoc_siem`` and its
  own lease ``aoc_leases.siem`` (single-active instances). It sends no control command
  and answers none;
- ``launcher`` (`aoc up`'s supervisor) publishes one kind of event,
  ``aoc.evt.<process>.process_crashed``, when a child ends by a signal or a non-zero exit
  (it saw the exit status); it asks JetStream whether the cluster has a meta leader
  before it starts the services, and pings the engines' ``$SRV`` discovery before it
  says the stack is up; it reads no stream and sends no command;
- ``producer`` is for alert producers (a Suricata or Wazuh shipper, an EDR forwarder):
  it may only send alerts to the SOC intake, ``aoc.in.soc.alerts`` and
  ``aoc.in.soc.alerts.<format>``, and read the replies; nothing else;
- ``admin`` is for break-glass JetStream maintenance (edit a stream, delete a message):
  everything except sending control commands or forging events and heartbeats;
- nobody connects without a user.

What the services share besides that is read from ``contracts/``, so the engines other
people are writing work under `aoc up` without edits here:

- streams: string constants named ``*_STREAM``;
- KV buckets and object stores: constants named ``*_BUCKET`` / ``*_OBJECT_STORE`` (both
  kinds are allowed for every such name). Only the engine whose contract module declares
  one (``contracts/ml.py`` -> the engine whose ``SystemInfo.module`` is ``ml``) and the
  gateway write it; everyone reads;
- request and input namespaces: every ``aoc.<area>`` that a constant's value starts with
  (``aoc.in``, ``aoc.q``, ``aoc.factory``, ``aoc.gateway`` ...), except ``ctl``, ``evt``
  and ``hb``. These are shared by the services: any of them may publish and subscribe
  there (requests, replies, inputs and work queues).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field

import contracts
from contracts import soc, subjects
from contracts.events import ProcessCrashed
from contracts.siem import SIEM
from contracts.systems import SYSTEMS
from services.runtime.bus import inbox_prefix

JS = "$JS.API"
GATEWAY = "gateway"
ADMIN = "admin"
LAUNCHER = "launcher"
PRODUCER = "producer"
HEAL_CHECK = "heal-check"
HEAL_CHECK_VERBS = ("restart", "status", "detail")  # heal-check remediates; it never stops anything
PROTECTED_AREAS = frozenset({"ctl", "evt", "hb", "inst"})


@dataclass(frozen=True)
class Catalog:
    """What ``contracts/`` names: streams, buckets (owner slug or None) and shared areas."""

    streams: frozenset[str]
    buckets: dict[str, str | None]
    areas: frozenset[str]  # "aoc.in", "aoc.factory", ...

    def all_streams(self) -> list[str]:
        stores = [f"{kind}_{bucket}" for bucket in self.buckets for kind in ("KV", "OBJ")]
        return sorted({*self.streams, *stores})

    def buckets_of(self, slug: str) -> list[str]:
        return sorted(bucket for bucket, owner in self.buckets.items() if owner == slug)


def _area_of(value: str) -> str | None:
    """'aoc.in.soc.alerts' -> 'aoc.in'; None for the protected areas and non-subjects."""
    tokens = value.split(".")
    if len(tokens) < 2 or tokens[0] != "aoc" or tokens[1] in PROTECTED_AREAS:
        return None
    return f"aoc.{tokens[1]}" if re.fullmatch(r"[a-z][a-z0-9_-]*", tokens[1]) else None


def contract_catalog() -> Catalog:
    owners = {info.module: slug for slug, info in SYSTEMS.items()}
    owners[SIEM] = SIEM  # contracts/siem.py's bucket belongs to the SIEM service
    streams: set[str] = set()
    buckets: dict[str, str | None] = {}
    areas: set[str] = set()
    for module_info in pkgutil.iter_modules(contracts.__path__):
        module = importlib.import_module(f"contracts.{module_info.name}")
        for name, value in vars(module).items():
            if not isinstance(value, str) or not name.isupper():
                continue
            if name.endswith("_STREAM"):
                streams.add(value)
            elif name.endswith(("_BUCKET", "_OBJECT_STORE")):
                buckets[value] = owners.get(module_info.name)
            area = _area_of(value)
            if area is not None:
                areas.add(area)
    return Catalog(frozenset(streams), buckets, frozenset(areas))


@dataclass
class Permissions:
    publish: list[str] = field(default_factory=list)
    publish_deny: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)

    def as_config(self) -> dict[str, object]:
        publish: dict[str, list[str]] = {"allow": sorted(set(self.publish))}
        if self.publish_deny:
            publish["deny"] = sorted(set(self.publish_deny))
        # allow_responses: a service may answer a request it received (control, micro
        # PING, a probe) without a publish permission on the requester's inbox
        return {
            "publish": publish,
            "subscribe": {"allow": sorted(set(self.subscribe))},
            "allow_responses": True,
        }


def _shared_areas(catalog: Catalog) -> list[str]:
    return [subject for area in sorted(catalog.areas) for subject in (area, f"{area}.>")]


def _jetstream_reader(catalog: Catalog) -> list[str]:
    """Read-side JetStream API: stream info, message gets, consumers and their acks.
    Creating a stream is allowed for the AOC streams only; a create never changes a
    stream that exists. Update, purge, delete and message delete are left out."""
    return [
        f"{JS}.INFO",
        f"{JS}.STREAM.NAMES",
        f"{JS}.STREAM.LIST",
        f"{JS}.STREAM.INFO.*",
        f"{JS}.STREAM.MSG.GET.*",
        f"{JS}.DIRECT.GET.>",
        f"{JS}.CONSUMER.CREATE.>",
        f"{JS}.CONSUMER.DURABLE.CREATE.>",
        f"{JS}.CONSUMER.INFO.>",
        f"{JS}.CONSUMER.NAMES.*",
        f"{JS}.CONSUMER.LIST.*",
        f"{JS}.CONSUMER.MSG.NEXT.>",
        "$JS.ACK.>",
        "$JS.FC.>",
        *(f"{JS}.STREAM.CREATE.{stream}" for stream in catalog.all_streams()),
    ]


def _bucket_writer(buckets: list[str]) -> list[str]:
    return [f"{prefix}.{bucket}.>" for bucket in buckets for prefix in ("$KV", "$O")]


def _discovery(service: str | None) -> tuple[list[str], list[str]]:
    """NATS micro (`$SRV`): anyone may ask; an engine answers for its own service only."""
    subscribe = ["$SRV.PING", "$SRV.INFO", "$SRV.STATS"]
    if service:
        subscribe += [f"$SRV.*.{service}", f"$SRV.*.{service}.*"]
    return ["$SRV.>"], subscribe


def _readers() -> list[str]:
    # reading what happens on the bus is no risk: the stream holds all of it anyway
    return [f"{subjects.EVT_PREFIX}.>", f"{subjects.HB_PREFIX}.>"]


def engine_permissions(slug: str, catalog: Catalog) -> Permissions:
    srv_publish, srv_subscribe = _discovery(f"aoc-{slug}")
    permissions = Permissions(
        publish=[
            subjects.evt(slug, ">"),
            subjects.hb(slug),
            subjects.hb(slug, "*"),  # a standby instance's heartbeat
            # its own rows of the shared buckets: handled command ids, and its lease
            f"$KV.{subjects.COMMAND_IDS_BUCKET}.{slug}.>",
            f"$KV.{subjects.LEASES_BUCKET}.{slug}",
            # a standby forwards commands to the active instance of its own engine
            subjects.instance(slug, ">"),
            *_bucket_writer(catalog.buckets_of(slug)),
            *_shared_areas(catalog),
            *srv_publish,
            *_jetstream_reader(catalog),
        ],
        subscribe=[
            f"{subjects.CTL_PREFIX}.{slug}.>",
            f"{subjects.CTL_PREFIX}.all.>",
            subjects.instance(slug, ">"),
            f"{inbox_prefix(slug)}.>",
            *_shared_areas(catalog),
            *srv_subscribe,
            *_readers(),
        ],
    )
    if slug == HEAL_CHECK:
        permissions.publish += [subjects.ctl("*", verb) for verb in HEAL_CHECK_VERBS]
        permissions.publish_deny += [subjects.ctl("all", ">")]
    return permissions


def gateway_permissions(catalog: Catalog) -> Permissions:
    srv_publish, srv_subscribe = _discovery(None)
    return Permissions(
        publish=[
            # exactly four tokens: the gateway cannot pose as a NATS operator user
            subjects.ctl("*", "*"),
            subjects.evt(GATEWAY, ">"),
            *_bucket_writer(list(catalog.buckets)),
            *_shared_areas(catalog),
            *srv_publish,
            *_jetstream_reader(catalog),
            # the gateway owns the stream configuration: it converges retention changes
            *(f"{JS}.STREAM.UPDATE.{stream}" for stream in catalog.all_streams()),
        ],
        subscribe=[
            f"{subjects.CTL_PREFIX}.>",  # it answers commands to unknown systems
            f"{inbox_prefix(GATEWAY)}.>",
            *_shared_areas(catalog),
            *srv_subscribe,
            *_readers(),
        ],
    )


def siem_permissions(catalog: Catalog) -> Permissions:
    """Least privilege for the SIEM service: read the streams, work its own durable
    consumers, publish its own alert events, write its own status bucket."""
    return Permissions(
        publish=[
            subjects.evt(SIEM, ">"),
            *_bucket_writer(catalog.buckets_of(SIEM)),
            f"$KV.{subjects.LEASES_BUCKET}.{SIEM}",  # its lease: one active instance
            *_jetstream_reader(catalog),
        ],
        subscribe=[f"{inbox_prefix(SIEM)}.>", *_readers()],
    )


def operator_permissions(user: str, catalog: Catalog) -> Permissions:
    srv_publish, _ = _discovery(None)
    return Permissions(
        publish=[
            subjects.ctl("*", f"*.{user}"),  # aoc.ctl.<system>.<verb>.<user>: attributable
            *_shared_areas(catalog),  # e.g. feed an alert or ask aoc.gateway.health
            *srv_publish,
            *_jetstream_reader(catalog),
        ],
        subscribe=["_INBOX.>", f"{inbox_prefix(user)}.>", *_readers()],  # _INBOX: the stock `nats` CLI
    )


def launcher_permissions() -> Permissions:
    """Least privilege: the crash record of a child (and the acks of those publishes),
    discovery pings, and JetStream's account info (is there a meta leader)."""
    srv_publish, _ = _discovery(None)
    return Permissions(
        publish=[subjects.evt("*", ProcessCrashed.TYPE), *srv_publish, f"{JS}.INFO"],
        subscribe=[f"{inbox_prefix(LAUNCHER)}.>"],
    )


def producer_permissions() -> Permissions:
    """Alerts in, in any format; the reply comes to its inbox (or the stock CLI's)."""
    return Permissions(
        publish=[soc.ALERT_INTAKE, soc.ALERT_FORMAT_INTAKE],
        subscribe=["_INBOX.>", f"{inbox_prefix(PRODUCER)}.>"],
    )


def admin_permissions() -> Permissions:
    return Permissions(
        publish=[">"],
        # maintenance, not operations: commands need an operator user (attributable), and
        # nobody forges an engine's events or heartbeats
        publish_deny=[f"{subjects.CTL_PREFIX}.>", f"{subjects.EVT_PREFIX}.>", f"{subjects.HB_PREFIX}.>"],
        subscribe=[">"],
    )


def all_permissions(operators: list[str], catalog: Catalog | None = None) -> dict[str, Permissions]:
    catalog = catalog or contract_catalog()
    clashes = {*SYSTEMS, GATEWAY, SIEM, ADMIN, LAUNCHER, PRODUCER}.intersection(operators)
    if clashes:
        raise ValueError(f"operator user names clash with service users: {sorted(clashes)}")
    table = {slug: engine_permissions(slug, catalog) for slug in SYSTEMS}
    table[GATEWAY] = gateway_permissions(catalog)
    table[SIEM] = siem_permissions(catalog)
    table.update({user: operator_permissions(user, catalog) for user in operators})
    table[LAUNCHER] = launcher_permissions()
    table[PRODUCER] = producer_permissions()
    table[ADMIN] = admin_permissions()
    return table
