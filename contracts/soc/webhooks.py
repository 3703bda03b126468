"""Webhook ingestion of alerts (``POST /api/v1/webhooks/alerts/{source}``): the sources,
how a delivery is signed, and how a redelivery is recognised.

A source is configured with its own secret (``AOC_WEBHOOK_SOURCES``, docs/soc.md):

    {"wazuh-prod": {"secret_file": "/run/secrets/wazuh-webhook", "format": "wazuh"},
     "elastic":    {"secret": "<32+ random bytes>", "format": "ecs",
                    "signature_header": "X-Elastic-Signature", "delivery_header": "X-Elastic-Delivery"}}

Signature: ``<signature_header>: sha256=<hex>`` (a bare hex digest also counts), the
HMAC-SHA256 of the raw request body with the source's secret — GitHub's scheme. With a
``timestamp_header``, the signed message is ``<timestamp>.<body>`` and the timestamp (Unix
seconds) must be within ``tolerance_s`` of now: a captured request cannot be replayed later.
The validation handshake (``?validationToken=<token>``, Microsoft Graph style) is signed
the same way over the token instead of the body, and answered with the token only then.

A delivery is identified by its ``delivery_header`` (else the body's digest); the ids
already accepted are kept in KV ``aoc_webhook_deliveries`` for ``AOC_WEBHOOK_DELIVERY_TTL_HOURS``.

Pure: reading secret files is the gateway's (gateway/routes/webhooks.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Annotated, ClassVar, Literal

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from contracts.settings import Settings
from contracts.soc.subjects import WEBHOOK_DELIVERIES_BUCKET
from contracts.streams import ensure_bucket

SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
HEADER_NAME = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{1,64}$")]
MIN_SECRET_BYTES = 32  # as for the JWT key: an HMAC key shorter than its output is guessable
MAX_TOKEN_CHARS = 1024  # a validation token echoed back
MAX_DELIVERY_ID_CHARS = 200
WebhookFormat = Literal["aoc", "suricata-eve", "wazuh", "ecs", "ocsf"]


class WebhookSource(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    secret: str | None = None
    secret_file: str | None = None  # a Docker/Kubernetes secret; wins over nothing, never both
    format: WebhookFormat | None = None  # None: detected per record
    signature_header: HEADER_NAME = "X-AOC-Signature"
    delivery_header: HEADER_NAME = "X-AOC-Delivery"
    timestamp_header: HEADER_NAME | None = None
    tolerance_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 300.0


class WebhookConfigError(ValueError):
    pass


def parse_sources(text: str) -> dict[str, WebhookSource]:
    """The sources of a JSON object (``AOC_WEBHOOK_SOURCES`` or its file), validated."""
    try:
        sources = msgspec.json.decode(text, type=dict[str, WebhookSource])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise WebhookConfigError(f"webhook sources: {exc}") from None
    for name, source in sources.items():
        if not SOURCE_NAME.match(name):
            raise WebhookConfigError(
                f"webhook source {name[:64]!r}: a name is 1-64 of a-z, 0-9, _ and -, starting alphanumeric"
            )
        if (source.secret is None) == (source.secret_file is None):
            raise WebhookConfigError(f"webhook source {name!r}: give exactly one of secret, secret_file")
    return sources


def check_secret(name: str, secret: bytes) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise WebhookConfigError(
            f"webhook source {name!r}: the secret must be at least {MIN_SECRET_BYTES} bytes"
        )
    return secret


def signed_message(payload: bytes, timestamp: str | None = None) -> bytes:
    return payload if timestamp is None else timestamp.encode("ascii") + b"." + payload


def sign(secret: bytes, payload: bytes, timestamp: str | None = None) -> str:
    """The signature header value a producer sends: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret, signed_message(payload, timestamp), hashlib.sha256).hexdigest()


def verify(secret: bytes, payload: bytes, header: str | None, timestamp: str | None = None) -> bool:
    """Constant-time comparison of the header with the expected HMAC (``sha256=`` optional)."""
    if not header:
        return False
    offered = header.strip()
    offered = offered[7:] if offered[:7].lower() == "sha256=" else offered
    expected = hmac.new(secret, signed_message(payload, timestamp), hashlib.sha256).hexdigest()
    return hmac.compare_digest(offered.lower().encode("ascii", "replace"), expected.encode("ascii"))


def fresh(timestamp: str | None, now: float, tolerance_s: float) -> bool:
    """A signed timestamp within ``tolerance_s`` of now (Unix seconds, an integer)."""
    if timestamp is None or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    return abs(now - int(timestamp)) <= tolerance_s


def delivery_key(source: str, delivery_id: str) -> str:
    """The KV key of a delivery: the source and a digest of its id (ids are free text)."""
    return f"{source}.{hashlib.sha256(delivery_id.encode('utf-8', 'replace')).hexdigest()[:40]}"


def body_delivery_id(body: bytes) -> str:
    """A delivery without an id header is identified by its content."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


class DeliveryRecord(msgspec.Struct, kw_only=True):
    """What ``aoc_webhook_deliveries`` keeps of an accepted delivery."""

    source: str
    delivery_id: str
    accepted: int
    rejected: int
    first_ids: list[str]  # up to 20: enough to find the alerts again
    at: str


class WebhookRefused(msgspec.Struct, kw_only=True):
    """A webhook request refused before its body was looked at (audit, bounded)."""

    TYPE: ClassVar[str] = "webhook_refused"
    source: str  # as requested, at most 64 characters
    reason: str  # unknown_source | bad_signature | stale_timestamp | bad_token
    client: str
    delivery_id: str = ""


def deliveries_bucket(settings: Settings) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=WEBHOOK_DELIVERIES_BUCKET,
        description="Webhook deliveries already accepted: a redelivery is accepted once",
        history=1,
        ttl=settings.webhook_delivery_ttl_hours * 3600,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )


async def ensure_deliveries(js: JetStreamContext, settings: Settings) -> KeyValue:
    return await ensure_bucket(js, deliveries_bucket(settings))
