"""The SOC's streams and how alerts are packed into queue messages."""

from __future__ import annotations

import hashlib

import msgspec
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from contracts.settings import Settings
from contracts.soc.alerts import Alert
from contracts.soc.subjects import ALERT_QUEUE, ALERTS_STREAM, FEEDBACK_QUEUE, FEEDBACK_STREAM
from contracts.streams import DAY, ensure_stream


def alerts_stream(settings: Settings) -> StreamConfig:
    # Work queue: a message is gone once triage acks it; the decision event is the record.
    return StreamConfig(
        name=ALERTS_STREAM,
        description="SOC alerts waiting for triage (work queue; validated alerts only)",
        subjects=[ALERT_QUEUE],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=7 * DAY,
        discard=DiscardPolicy.NEW,  # refuse new alerts rather than silently drop queued ones
        duplicate_window=settings.duplicate_window_s,
        num_replicas=settings.stream_replicas,
    )


def feedback_stream(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=FEEDBACK_STREAM,
        description="Analyst verdicts on SOC alerts: the labelled training set",
        subjects=[FEEDBACK_QUEUE],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=365 * DAY,
        discard=DiscardPolicy.OLD,
        duplicate_window=settings.duplicate_window_s,
        num_replicas=settings.stream_replicas,
    )


async def ensure_soc_streams(js: JetStreamContext, settings: Settings) -> None:
    await ensure_stream(js, alerts_stream(settings))
    await ensure_stream(js, feedback_stream(settings))


MAX_QUEUE_MESSAGE_BYTES = 256 * 1024  # well under the server's 1 MB max_payload


def alert_batch_msg_id(ids: list[str]) -> str:
    """Nats-Msg-Id of one queue message: a retried publish of the same batch is stored once."""
    if len(ids) == 1:
        return f"alert-{ids[0]}"
    return "alerts-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]


def encode_alerts(alerts: list[Alert]) -> bytes:
    return msgspec.json.encode(alerts[0] if len(alerts) == 1 else alerts)


def queue_messages(alerts: list[Alert]) -> list[tuple[str, bytes]]:
    """(Nats-Msg-Id, body) of the queue messages carrying ``alerts``: as few as fit under
    ``MAX_QUEUE_MESSAGE_BYTES`` each. Fewer, larger messages are what makes the queue
    fast on a server that fsyncs every write (docs/soc.md)."""
    messages: list[tuple[str, bytes]] = []
    parts: list[bytes] = []
    ids: list[str] = []
    size = 0
    for alert in alerts:
        encoded = msgspec.json.encode(alert)
        if parts and size + len(encoded) + 1 > MAX_QUEUE_MESSAGE_BYTES:
            messages.append(_queue_message(ids, parts))
            parts, ids, size = [], [], 0
        parts.append(encoded)
        ids.append(alert.id)
        size += len(encoded) + 1
    if parts:
        messages.append(_queue_message(ids, parts))
    return messages


def _queue_message(ids: list[str], parts: list[bytes]) -> tuple[str, bytes]:
    body = parts[0] if len(parts) == 1 else b"[" + b",".join(parts) + b"]"
    return alert_batch_msg_id(ids), body
