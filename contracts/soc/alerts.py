"""An alert in AOC's own shape, validated strictly (a typo is an error, not a dropped
field), and its summary as carried in decision events. Products' own formats are mapped
onto it by contracts/soc/formats."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgspec

from contracts.events import new_id, utcnow

MAX_BATCH = 1000  # alerts per intake message / HTTP request
MAX_RAW_BYTES = 16_384  # the `raw` original event, encoded

SEVERITIES = ("informational", "low", "medium", "high", "critical")
Severity = Literal["informational", "low", "medium", "high", "critical"]
DecisionKind = Literal["auto_resolve", "escalate", "contain"]
Verdict = Literal["true_positive", "false_positive", "benign"]

# ids travel as Nats-Msg-Id headers and KV-ish keys: keep them to safe characters
AlertId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
ShortName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Technique = Annotated[str, msgspec.Meta(pattern=r"^T\d{4}(\.\d{3})?$")]
Cve = Annotated[str, msgspec.Meta(pattern=r"^CVE-\d{4}-\d{4,7}$")]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[A-Fa-f0-9]{64}$")]
Domain = Annotated[str, msgspec.Meta(pattern=r"^(?=.{1,253}$)[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$")]
Note = Annotated[str, msgspec.Meta(max_length=2000)]


def _ip(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    normalised = normalised_ip(value)
    if normalised is None:
        raise ValueError(f"{field}: {value!r} is not an IPv4 or IPv6 address")
    return normalised


@lru_cache(maxsize=65_536)
def normalised_ip(value: str) -> str | None:
    # the same addresses recur in alert after alert: parse each once; a canonical IPv4
    # address (the usual case) is checked by the C library, anything else by ipaddress
    with contextlib.suppress(OSError):
        if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value)) == value:
            return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class Process(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    name: ShortName
    command_line: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    pid: Annotated[int, msgspec.Meta(ge=0)] | None = None
    parent: Annotated[str, msgspec.Meta(max_length=128)] = ""
    sha256: Sha256 | None = None


class Alert(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One security alert as producers send it (docs/soc.md maps ECS and OCSF onto it)."""

    id: AlertId = msgspec.field(default_factory=new_id)
    time: datetime = msgspec.field(default_factory=utcnow)
    source: ShortName  # the detecting product: crowdstrike, suricata, okta, ...
    title: Name  # the rule name
    severity: Severity
    rule_id: Annotated[str, msgspec.Meta(max_length=128)] = ""
    description: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    host: Annotated[str, msgspec.Meta(max_length=255)] = ""
    user: Annotated[str, msgspec.Meta(max_length=255)] = ""
    src_ip: str | None = None
    dst_ip: str | None = None
    domain: Domain | None = None
    process: Process | None = None
    techniques: Annotated[list[Technique], msgspec.Meta(max_length=20)] = []
    cves: Annotated[list[Cve], msgspec.Meta(max_length=20)] = []
    count: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 1  # events folded into this alert
    raw: dict[str, Any] = {}

    def __post_init__(self) -> None:
        # msgspec reports these with the path of the alert; the message names the field
        self.src_ip = _ip("src_ip", self.src_ip)
        self.dst_ip = _ip("dst_ip", self.dst_ip)
        if self.time.tzinfo is None:
            self.time = self.time.replace(tzinfo=UTC)
        if self.raw and len(msgspec.json.encode(self.raw)) > MAX_RAW_BYTES:
            raise ValueError(f"raw: the original event is larger than {MAX_RAW_BYTES} bytes")


class AlertSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The alert without its `raw` original, as carried in decision events."""

    id: str
    time: datetime
    source: str
    title: str
    severity: str
    rule_id: str = ""
    host: str = ""
    user: str = ""
    src_ip: str | None = None
    dst_ip: str | None = None
    domain: str | None = None
    process: Process | None = None
    techniques: list[str] = []
    cves: list[str] = []
    count: int = 1

    def as_alert(self) -> Alert:
        return msgspec.convert(msgspec.to_builtins(self), Alert)


def summarize(alert: Alert) -> AlertSummary:
    # field by field: 0.3 µs against 1.6 through asdict, once per decided alert
    # (tests/soc/test_soc_units.py checks that no field of the summary is left out)
    return AlertSummary(
        id=alert.id,
        time=alert.time,
        source=alert.source,
        title=alert.title,
        severity=alert.severity,
        rule_id=alert.rule_id,
        host=alert.host,
        user=alert.user,
        src_ip=alert.src_ip,
        dst_ip=alert.dst_ip,
        domain=alert.domain,
        process=alert.process,
        techniques=alert.techniques,
        cves=alert.cves,
        count=alert.count,
    )


class RejectedRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One record of a product-format batch that did not become an alert."""

    index: int  # position in the body (array element or NDJSON line, from 0)
    error: str  # not_an_alert | invalid_record | unknown_format | malformed_json | not_an_object
    message: str
    field: str | None = None  # in the product's record, e.g. alert.signature


class IntakeReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    accepted: int = 0
    ids: list[str] = []
    # invalid_alert | invalid_feedback | unknown_alert | too_many | malformed | unknown_format | unavailable
    error: str | None = None
    message: str = ""
    field: str | None = None  # the JSON path of the offending field, e.g. $[3].src_ip
    format: str | None = None  # aoc | suricata-eve | wazuh | ecs | ocsf | mixed
    rejected: list[RejectedRecord] = []  # product formats: the records refused, each with its reason


class AlertDecodeError(ValueError):
    """A body refused as a whole. ``error``: invalid_alert | malformed | too_many | unknown_format."""

    def __init__(self, message: str, field: str | None, error: str = "invalid_alert") -> None:
        super().__init__(message)
        self.field = field
        self.error = error


_alerts_decoder = msgspec.json.Decoder(Alert | list[Alert])


def decode_alerts(body: bytes, *, max_batch: int = MAX_BATCH) -> list[Alert]:
    """One alert or a JSON array of alerts, strictly validated. Raises AlertDecodeError
    whose message and ``field`` name the first problem (``$[3].src_ip``)."""
    if not body.strip():
        raise AlertDecodeError("empty body: expected an alert object or an array of alerts", None)
    try:
        decoded = _alerts_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise AlertDecodeError(f"invalid alert: {exc}", error_path(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise AlertDecodeError(f"malformed JSON: {exc}", None, "malformed") from None
    alerts = decoded if isinstance(decoded, list) else [decoded]
    if not alerts:
        raise AlertDecodeError("empty batch: expected at least one alert", "$")
    if len(alerts) > max_batch:
        raise AlertDecodeError(f"too many alerts in one batch: {len(alerts)} > {max_batch}", "$", "too_many")
    return alerts


def error_path(message: str) -> str | None:
    """`Expected int - at `$[2].count`` -> `$[2].count`; a __post_init__ error names its
    field first (`src_ip: ... - at `$[0]``) -> `$[0].src_ip`; unknown fields too."""
    path = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else "$"
    head = message.split(" - at `", 1)[0]
    if "unknown field `" in head:
        return f"{path}.{head.split('unknown field `', 1)[1].split('`', 1)[0]}"
    prefix = head.split(":", 1)[0]
    if prefix.isidentifier() and prefix in Alert.__struct_fields__:
        return f"{path}.{prefix}"
    return path
