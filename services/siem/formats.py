"""What each sink kind puts on the wire for a batch of events (docs/siem.md has examples).

- syslog: RFC 5424 messages; over TCP and TLS framed by octet counting (RFC 6587 §3.4.1,
  RFC 5425 §4.3), over UDP one message per datagram (RFC 5426). MSG is the event's JSON
  envelope after a UTF-8 BOM; the structured data element ``[aoc@32473 ...]`` carries
  the fields a SIEM filters on without parsing MSG.
- hec: Splunk HTTP Event Collector batch: event objects one after another, each with
  ``time``, ``host``, ``source``, ``sourcetype``, optional ``index``, indexed ``fields``
  and the envelope as ``event``.
- webhook: one JSON document per batch, HMAC-SHA256 signed over ``<timestamp>.<body>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from contracts.events import Envelope
from contracts.siem import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, SinkConfig

BOM = b"\xef\xbb\xbf"
NIL = "-"


@dataclass(frozen=True, slots=True)
class Record:
    """One event as read from the stream: its sequence, its raw JSON and the envelope."""

    seq: int
    raw: bytes
    event: Envelope


# --- syslog -------------------------------------------------------------------------------

# RFC 5424 §6.2.1 severities
EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFO, DEBUG = range(8)
ALERT_SEVERITY = {"critical": CRITICAL, "high": ERROR, "warning": WARNING, "info": INFO}
NOTICE_TYPES = frozenset({"command_handled", "lifecycle_changed", "kill_switch_engaged", "alert_resolved"})
_NOT_PRINTABLE = re.compile(r"[^!-~]")  # header fields are PRINTUSASCII (%d33-126)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SD_VALUE_MAX = 256


def syslog_severity(event: Envelope) -> int:
    if event.type == "alert_fired":
        try:
            level = msgspec.json.decode(event.data).get("severity", "")
        except (msgspec.DecodeError, AttributeError):
            level = ""
        return ALERT_SEVERITY.get(level, WARNING)
    if event.summary.result in ("failed", "rejected"):
        return WARNING
    return NOTICE if event.type in NOTICE_TYPES else INFO


def header_field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit``, or NILVALUE."""
    value = _NOT_PRINTABLE.sub("_", value)[:limit]
    return value or NIL


def sd_value(value: object) -> str:
    """An SD-PARAM value (RFC 5424 §6.3.3): '"', '\\' and ']' escaped; no control
    characters (a receiver's line handling must not be fooled); bounded."""
    text = _CONTROL.sub(" ", str(value))[:SD_VALUE_MAX]
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def timestamp(moment: datetime) -> str:
    """RFC 5424 TIMESTAMP: RFC 3339 in UTC with microseconds (TIME-SECFRAC ≤ 6 digits)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def local_hostname() -> str:
    return header_field(socket.gethostname() or "aoc", 255)


class SyslogFormatter:
    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self.hostname = header_field(config.hostname or local_hostname(), 255)
        self.app_name = header_field(config.app_name, 48)
        self.limit = config.max_message_bytes

    def message(self, record: Record) -> bytes:
        event = record.event
        pri = self.config.facility * 8 + syslog_severity(event)
        params = {
            "id": event.id,
            "seq": record.seq,
            "system": event.system,
            "type": event.type,
            "source": event.source,
            "actor": event.actor,
            "action": event.summary.action,
            "result": event.summary.result,
        }
        if event.correlation_id:
            params["correlation_id"] = event.correlation_id
        sd = " ".join(f'{name}="{sd_value(value)}"' for name, value in params.items())
        header = (
            f"<{pri}>1 {timestamp(event.time)} {self.hostname} {self.app_name} {NIL} "
            f"{header_field(event.type, 32)} [{self.config.sd_id} {sd}] "
        ).encode()
        body = record.raw
        if len(header) + len(BOM) + len(body) > self.limit:
            body = self._shortened(record)
        return header + BOM + body

    def _shortened(self, record: Record) -> bytes:
        """An event too big for one message: its identity and summary, marked, instead of
        a cut (cut JSON would not parse)."""
        event = record.event
        short = {
            "id": event.id,
            "type": event.type,
            "system": event.system,
            "time": timestamp(event.time),
            "actor": event.actor[:256],
            "summary": msgspec.to_builtins(event.summary),
            "truncated": True,
            "original_bytes": len(record.raw),
        }
        return msgspec.json.encode(short)[: max(0, self.limit - 600)]

    def octet_counted(self, record: Record) -> bytes:
        """RFC 6587 §3.4.1: MSG-LEN SP SYSLOG-MSG."""
        message = self.message(record)
        return b"%d " % len(message) + message


# --- Splunk HEC ---------------------------------------------------------------------------


class HecFormatter:
    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self.host = config.hostname or local_hostname()

    def body(self, records: list[Record]) -> bytes:
        parts = []
        for record in records:
            event = record.event
            meta: dict[str, object] = {
                "time": round(event.time.timestamp(), 6),
                "host": self.host,
                "source": self.config.source,
                "sourcetype": self.config.sourcetype,
                "fields": {
                    "aoc_seq": record.seq,
                    "aoc_system": event.system,
                    "aoc_type": event.type,
                    "aoc_result": event.summary.result,
                },
            }
            if self.config.index:
                meta["index"] = self.config.index
            encoded = msgspec.json.encode(meta)
            # the raw envelope goes in as it was stored: no decode/encode round trip
            parts.append(encoded[:-1] + b',"event":' + record.raw + b"}")
        return b"\n".join(parts)


# --- webhook ------------------------------------------------------------------------------


def delivery_id(sink: str, records: list[Record]) -> str:
    """Stable for a batch: a redelivery of the same events carries the same id."""
    return f"{sink}-{records[0].seq}-{records[-1].seq}"


def sign(secret: bytes, stamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookFormatter:
    def __init__(self, config: SinkConfig) -> None:
        self.config = config

    def body(self, records: list[Record]) -> bytes:
        head = msgspec.json.encode(
            {
                "sink": self.config.name,
                "delivery": delivery_id(self.config.name, records),
                "first_seq": records[0].seq,
                "last_seq": records[-1].seq,
                "count": len(records),
            }
        )
        events = b",".join(b'{"seq":%d,"event":' % record.seq + record.raw + b"}" for record in records)
        return head[:-1] + b',"events":[' + events + b"]}"

    def headers(self, secret: bytes, records: list[Record], body: bytes, now: datetime) -> dict[str, str]:
        stamp = str(int(now.timestamp()))
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, stamp, body),
            TIMESTAMP_HEADER: stamp,
            DELIVERY_HEADER: delivery_id(self.config.name, records),
        }
