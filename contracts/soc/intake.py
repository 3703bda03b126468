"""One intake body -> the alerts to queue and the records refused, whatever path it came
by (``POST /api/v1/soc/alerts``, ``aoc.in.soc.alerts[.<format>]``, a webhook push).

A body is one JSON object, a JSON array, or NDJSON (one object per line); an
Elasticsearch search response (``hits.hits``) counts as the array of its hits.

- AOC's own shape (``format=aoc``, or detected when no record is in a product format):
  strict and all-or-nothing, as before — a typo is an error that names the field
  (``$[3].src_ip``) and nothing is queued.
- A product's format (named, or detected per record): every record is mapped on its
  own; the good ones are accepted and each bad one is reported with its index and
  reason (``RejectedRecord``). Extra product fields are fine; that is the point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.events import Summary
from contracts.soc.alerts import MAX_BATCH, Alert, AlertDecodeError, RejectedRecord, decode_alerts
from contracts.soc.events import MAX_AUDITED_RECORDS, AlertRejected
from contracts.soc.formats import FORMATS, NATIVE, RecordError, detect, looks_native, to_alert

MAX_REASON = 300  # characters of a rejected record's reason, in replies and audit events
MIXED = "mixed"


@dataclass
class ParsedAlerts:
    format: str  # aoc | suricata-eve | wazuh | ecs | ocsf | mixed
    alerts: list[Alert]
    rejected: list[RejectedRecord] = field(default_factory=list)


@dataclass(frozen=True)
class _BadLine:
    message: str


def parse_alerts(body: bytes, fmt: str | None = None, *, max_batch: int = MAX_BATCH) -> ParsedAlerts:
    """Raises AlertDecodeError when the body as a whole is refused: empty, not JSON, too
    many records, an unknown ``fmt``, or AOC's own shape with an error."""
    if fmt is not None and fmt not in FORMATS:
        raise AlertDecodeError(
            f"unknown format {fmt[:40]!r}: expected one of {', '.join(FORMATS)}", "format", "unknown_format"
        )
    if not body.strip():
        raise AlertDecodeError("empty body: expected an alert object, an array or NDJSON", None)
    native_error: AlertDecodeError | None = None
    if fmt in (None, NATIVE):
        try:  # the fast path: AOC's own shape, decoded and validated in one pass
            return ParsedAlerts(NATIVE, decode_alerts(body, max_batch=max_batch))
        except AlertDecodeError as exc:
            native_error = exc
    records = _records(body)
    if records is None:
        raise native_error or AlertDecodeError("malformed JSON: neither a JSON document nor NDJSON", None)
    if len(records) > max_batch:
        raise AlertDecodeError(f"too many alerts in one batch: {len(records)} > {max_batch}", "$", "too_many")
    if not records:
        raise AlertDecodeError("empty batch: expected at least one alert", "$")
    if fmt == NATIVE or (fmt is None and not any(detect(record) for record in records)):
        return ParsedAlerts(NATIVE, _native(records, native_error))
    return _products(records, fmt)


def _records(body: bytes) -> list[Any] | None:
    """The body's records, or None when it is neither JSON nor NDJSON. An NDJSON line
    that does not parse becomes a _BadLine (reported; the other lines still count)."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        lines = [line for line in body.splitlines() if line.strip()]
        if len(lines) < 2:
            return None
        records: list[Any] = []
        for line in lines:
            try:
                records.append(msgspec.json.decode(line))
            except msgspec.DecodeError as exc:
                records.append(_BadLine(f"malformed JSON line: {exc}"[:MAX_REASON]))
        if all(isinstance(record, _BadLine) for record in records):
            return None
        return records
    if isinstance(document, list):
        return document
    hits = document.get("hits") if isinstance(document, dict) else None
    if isinstance(hits, dict) and isinstance(hits.get("hits"), list):
        return hits["hits"]  # an Elasticsearch search response
    return [document]


def _native(records: list[Any], native_error: AlertDecodeError | None) -> list[Alert]:
    """AOC's own shape: all or nothing, the first error names its record and field."""
    if native_error is not None and not (len(records) > 1 and native_error.error == "malformed"):
        raise native_error  # one document (object or array): its error as decoded
    alerts = []
    for index, record in enumerate(records):
        if isinstance(record, _BadLine):
            raise AlertDecodeError(f"line {index}: {record.message}", f"$[{index}]")
        try:
            alerts.append(to_alert(NATIVE, record))
        except RecordError as exc:
            path = f"$[{index}].{exc.field}" if exc.field else f"$[{index}]"
            raise AlertDecodeError(f"{exc} (record {index})", path, "invalid_alert") from None
    return alerts


def _products(records: list[Any], fmt: str | None) -> ParsedAlerts:
    alerts: list[Alert] = []
    rejected: list[RejectedRecord] = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        if isinstance(record, _BadLine):
            rejected.append(RejectedRecord(index=index, error="malformed_json", message=record.message))
            continue
        record_format = fmt or detect(record) or (NATIVE if looks_native(record) else None)
        if record_format is None:
            rejected.append(
                RejectedRecord(
                    index=index,
                    error="unknown_format",
                    message=f"not a record of a supported format ({', '.join(FORMATS)})",
                )
            )
            continue
        try:
            alerts.append(to_alert(record_format, record))
        except RecordError as exc:
            rejected.append(
                RejectedRecord(index=index, error=exc.error, message=str(exc)[:MAX_REASON], field=exc.field)
            )
            continue
        seen.add(record_format)
    return ParsedAlerts(fmt or _name(seen), alerts, rejected)


def _name(formats: set[str]) -> str:
    if len(formats) == 1:
        return next(iter(formats))
    return MIXED if formats else "unknown"


def rejection_audit(subject: str, parsed: ParsedAlerts) -> tuple[AlertRejected, Summary] | None:
    """The audit event of a batch's refused records (None when every record was good)."""
    if not parsed.rejected:
        return None
    first = parsed.rejected[0]
    message = f"{len(parsed.rejected)} of {len(parsed.rejected) + len(parsed.alerts)} records refused"
    payload = AlertRejected(
        subject=subject,
        error=first.error,
        message=f"{message}; first: record {first.index}: {first.message}"[:MAX_REASON],
        field=first.field,
        format=parsed.format,
        records=parsed.rejected[:MAX_AUDITED_RECORDS],
        rejected_count=len(parsed.rejected),
        accepted=len(parsed.alerts),
    )
    return payload, Summary(
        action="alert_rejected", detail=f"{subject}: {payload.message}", result="rejected"
    )


def refusal_audit(subject: str, error: AlertDecodeError, body: bytes) -> tuple[AlertRejected, Summary]:
    """The audit event of a body refused as a whole (its excerpt bounded)."""
    payload = AlertRejected(
        subject=subject,
        error=error.error,
        message=str(error)[:1000],
        field=error.field,
        body_excerpt=body[:200].decode("utf-8", "replace"),
    )
    return payload, Summary(action="alert_rejected", detail=f"{subject}: {error}"[:1000], result="rejected")
