"""What leaves AOC for the SOC's own tools: SIEM sinks and control-plane alerts.

The SIEM service (``python -m services.siem``, not one of the seven engines) follows
``AOC_EVENTS`` with one durable consumer per sink and evaluates alert rules over the
same stream. This module is its contract with everyone else:

- sink configuration (``AOC_SIEM_SINKS``: a JSON list), validated with clear errors;
- the events it publishes on ``aoc.evt.siem.<type>`` (``alert_fired``,
  ``alert_resolved``) and the one the gateway publishes when the kill switch is used
  (``kill_switch_engaged``);
- the KV bucket ``aoc_siem`` where it writes its status (sinks, rules, open alerts) every
  few seconds, which the gateway reads for the dashboard, the API and ``/metrics``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from contracts.settings import Settings

SIEM = "siem"  # the service's name: its NATS user, its events' source and <system> token
SIEM_STATUS_BUCKET = "aoc_siem"
STATUS_KEY = "status"
STATUS_INTERVAL_S = 2.0  # how often the service rewrites its status
STATUS_STALE_S = 10.0  # older than this: the service is down (the gateway says so)

SINK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
SINK_KINDS = ("syslog", "hec", "webhook")
SYSLOG_TRANSPORTS = ("tcp", "tls", "udp")
SIGNATURE_HEADER = "X-AOC-Signature"  # sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">
TIMESTAMP_HEADER = "X-AOC-Timestamp"
DELIVERY_HEADER = "X-AOC-Delivery"  # the same for a redelivered batch: receivers dedup on it


def durable_name(sink: str) -> str:
    """The durable consumer of a sink on AOC_EVENTS."""
    return f"siem-{sink}"


# --- sink configuration -----------------------------------------------------------------


class SinkConfigError(ValueError):
    """AOC_SIEM_SINKS is not valid; the message names each bad entry and field."""


class SinkConfig(BaseModel):
    """One sink. Fields beyond ``name``/``kind``/``url`` have defaults; unknown fields are
    refused (a typo must not silently turn off TLS verification)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=SINK_NAME.pattern)
    kind: Literal["syslog", "hec", "webhook"]
    url: str = Field(max_length=2000)
    enabled: bool = True
    # where a new sink starts: "new" = events from its creation on, "all" = the retained stream
    start: Literal["new", "all"] = "new"
    filter: str = Field("aoc.evt.>", pattern=r"^aoc\.evt(\.[A-Za-z0-9_*>-]+)*$")
    batch: int = Field(200, ge=1, le=5000)
    timeout_s: float = Field(10.0, gt=0, le=120)
    retry_initial_s: float = Field(0.5, gt=0, le=60)
    retry_max_s: float = Field(30.0, gt=0, le=600)
    # TLS (syslog tls://, hec/webhook https://)
    ca_file: str | None = None
    cert_file: str | None = None  # client certificate (mutual TLS)
    key_file: str | None = None
    verify: bool = True
    allow_http: bool = False  # hec/webhook over plain http: only when said so
    # syslog
    facility: int = Field(13, ge=0, le=23)  # 13 = log audit (RFC 5424 §6.2.1)
    hostname: str | None = Field(None, pattern=r"^[!-~]{1,255}$")
    app_name: str = Field("aoc", pattern=r"^[!-~]{1,48}$")
    sd_id: str = Field("aoc@32473", pattern=r"^[!#-<>-\\^-~]{1,32}$")  # no = ] " or space
    max_message_bytes: int = Field(8192, ge=480, le=1_048_576)
    # hec
    token: SecretStr | None = None
    token_file: str | None = None
    index: str | None = Field(None, max_length=200)
    source: str = Field("aoc", max_length=200)
    sourcetype: str = Field("aoc:event", max_length=200)
    # webhook
    secret: SecretStr | None = None
    secret_file: str | None = None

    @model_validator(mode="after")
    def _per_kind(self) -> SinkConfig:
        parts = urlsplit(self.url)
        scheme = parts.scheme.lower()
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are not allowed (use token/secret fields)")
        if not parts.hostname:
            raise ValueError(f"url {self.url!r} has no host")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"url {self.url!r} has an invalid port") from None
        if self.kind == "syslog":
            if scheme not in SYSLOG_TRANSPORTS:
                raise ValueError("a syslog url is tcp://host:port, tls://host:port or udp://host:port")
            if parts.path not in ("", "/") or parts.query:
                raise ValueError("a syslog url has no path or query")
        else:
            allowed = ("https", "http") if self.allow_http else ("https",)
            if scheme not in allowed:
                raise ValueError(f"a {self.kind} url must be https:// (http:// needs allow_http: true)")
        if self.kind == "hec" and (self.token is None) == (self.token_file is None):
            raise ValueError("a hec sink needs exactly one of token or token_file")
        if self.kind == "webhook" and (self.secret is None) == (self.secret_file is None):
            raise ValueError("a webhook sink needs exactly one of secret or secret_file")
        if self.kind != "hec" and (self.token is not None or self.token_file is not None):
            raise ValueError("token/token_file are for hec sinks")
        if self.kind != "webhook" and (self.secret is not None or self.secret_file is not None):
            raise ValueError("secret/secret_file are for webhook sinks")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be at least retry_initial_s")
        return self

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        defaults = {"tcp": 601, "tls": 6514, "udp": 514, "https": 443, "http": 80}
        return parts.port or defaults[parts.scheme.lower()]

    @property
    def shown_url(self) -> str:
        """The URL without its query (which may carry a key): what the dashboard shows."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _describe(label: str, error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{label}.{where}: {message}" if where else f"{label}: {message}"


def parse_sinks(text: str | None, *, variable: str = "AOC_SIEM_SINKS") -> list[SinkConfig]:
    """The sinks of ``AOC_SIEM_SINKS``: a JSON list of objects. Raises SinkConfigError
    naming every bad entry (by index and name) and field, never echoing a secret."""
    if text is None or not text.strip():
        return []
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SinkConfigError(
            f"{variable} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(raw, list):
        raise SinkConfigError(f"{variable} must be a JSON list of sink objects, not {type(raw).__name__}")
    sinks: list[SinkConfig] = []
    problems: list[str] = []
    for index, entry in enumerate(raw):
        label = f"{variable}[{index}]"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label += f" ({entry['name'][:32]!r})"
        if not isinstance(entry, dict):
            problems.append(f"{label}: must be an object with name, kind and url")
            continue
        try:
            sinks.append(SinkConfig.model_validate(entry))
        except ValidationError as exc:
            problems += [_describe(label, error) for error in exc.errors(include_input=False)]
    names = [sink.name for sink in sinks]
    for name in sorted({name for name in names if names.count(name) > 1}):
        problems.append(f"{variable}: sink name {name!r} is used more than once")
    if problems:
        raise SinkConfigError("; ".join(problems))
    return sinks


# --- events -------------------------------------------------------------------------------


class AlertFired(msgspec.Struct, kw_only=True):
    """A control-plane alert rule fired. The event id is derived from the rule, the target
    and what triggered it, so a restarted service that re-derives it publishes it once."""

    TYPE: ClassVar[str] = "alert_fired"
    rule: str  # the rule's name in the rules file
    kind: str  # the built-in it is (kill-switch-used, engine-unreachable, ...)
    target: str  # what it is about: an engine slug, "all", an actor
    severity: str  # info | warning | high | critical
    title: str
    detail: str = ""
    fired_at: datetime
    trigger_event_id: str = ""
    trigger_seq: int = 0  # stream sequence of the event that made it fire (0: the clock did)
    facts: dict[str, Any] = {}


class AlertResolved(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "alert_resolved"
    rule: str
    kind: str
    target: str
    alert_id: str  # the id of the alert_fired event this closes
    resolved_at: datetime
    fired_at: datetime
    duration_s: float
    reason: str = ""


class KillSwitchEngaged(msgspec.Struct, kw_only=True):
    """The gateway's emergency-stop-all ran: one event per engagement (the per-engine
    command_handled records follow from the engines)."""

    TYPE: ClassVar[str] = "kill_switch_engaged"
    reason: str = ""
    succeeded: int
    failed: int
    outcomes: dict[str, int] = {}  # outcome/error -> how many systems
    systems: dict[str, str] = {}  # system -> its outcome


SIEM_PAYLOAD_TYPES: dict[str, type[msgspec.Struct]] = {
    cls.TYPE: cls for cls in (AlertFired, AlertResolved, KillSwitchEngaged)
}

ALERT_SEVERITIES = ("info", "warning", "high", "critical")


# --- status (KV) -------------------------------------------------------------------------


class SinkStatus(msgspec.Struct, kw_only=True):
    name: str
    kind: str
    url: str  # shown_url: no query
    durable: str
    enabled: bool = True
    # starting | delivering | idle | retrying | refused | disabled
    state: str = "starting"
    delivered: int = 0  # events accepted by the receiver, this service's lifetime
    batches: int = 0
    failures: int = 0  # failed delivery attempts, this service's lifetime
    consecutive_failures: int = 0
    last_delivery: datetime | None = None
    last_delivered_seq: int = 0
    last_error: str = ""
    last_error_at: datetime | None = None
    lag: int = 0  # events in the stream the receiver has not accepted yet
    next_retry_s: float = 0.0


class RuleInfo(msgspec.Struct, kw_only=True):
    name: str
    kind: str
    severity: str
    enabled: bool = True
    fired: int = 0  # since this service started


class OpenAlert(msgspec.Struct, kw_only=True):
    id: str
    rule: str
    kind: str
    target: str
    severity: str
    title: str
    detail: str = ""
    fired_at: datetime


class AlertTransition(msgspec.Struct, kw_only=True):
    id: str
    type: str  # alert_fired | alert_resolved
    rule: str
    target: str
    severity: str = ""
    title: str = ""
    time: datetime


class SiemStatus(msgspec.Struct, kw_only=True):
    boot_id: str
    started: datetime
    updated: datetime
    interval_s: float = STATUS_INTERVAL_S
    sinks_error: str = ""  # AOC_SIEM_SINKS did not validate: no sink runs
    rules_error: str = ""  # the rules file did not validate: no rule runs
    rules_file: str = ""
    rules_ready: bool = False  # rule state rebuilt from the stream
    sinks: list[SinkStatus] = []
    rules: list[RuleInfo] = []
    open_alerts: list[OpenAlert] = []
    recent_alerts: list[AlertTransition] = []
    # which instance wrote this (only the active one does: the holder of the lease SIEM in
    # aoc_leases, at this epoch), and the standbys it saw (their presence keys, fresh)
    instance: str = ""
    epoch: int = 0
    pid: int = 0
    host: str = ""
    standbys: list[str] = []


status_decoder = msgspec.json.Decoder(SiemStatus)

PRESENCE_PREFIX = "instance"  # key instance.<instance id> in aoc_siem: one per live process


def presence_key(instance: str) -> str:
    return f"{PRESENCE_PREFIX}.{instance}"


class SiemInstance(msgspec.Struct, kw_only=True):
    """What every SIEM process (active or standby) writes under ``presence_key`` every
    ``STATUS_INTERVAL_S``: it is alive, and in which role."""

    instance: str
    boot_id: str
    role: str  # active | standby | suspended
    pid: int
    host: str
    updated: datetime


instance_decoder = msgspec.json.Decoder(SiemInstance)


def status_bucket(settings: Settings) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=SIEM_STATUS_BUCKET,
        description="The SIEM service's status: sinks, rules, open alerts (rewritten every few seconds)",
        history=1,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )


async def ensure_status_bucket(js: JetStreamContext, settings: Settings) -> KeyValue:
    from contracts.streams import ensure_bucket

    return await ensure_bucket(js, status_bucket(settings))
