"""/api/v1/webhooks/alerts/{source} — alerts pushed by producers (a SIEM's webhook
action, a Wazuh integration, a cloud detector), authenticated by the HMAC signature of
their source rather than a bearer token (contracts/soc/webhooks.py has the scheme).

In this order, so nothing unverified is ever parsed or answered:
1. the source must be configured (404 otherwise, audited);
2. the body is read (the app's body limit holds: 413 above AOC_MAX_BODY_BYTES) and the
   signature checked in constant time (401 otherwise, audited); with a timestamp header,
   a stale timestamp is refused the same way;
3. a validation handshake (``?validationToken=``, signed over the token) is answered with
   the token, as text, only now;
4. a delivery seen before (same delivery id, kept in KV ``aoc_webhook_deliveries`` so a
   gateway restart does not forget it) is answered 200 ``duplicate`` and nothing is queued;
5. the records go through the same format mapping as ``POST /api/v1/soc/alerts``; the
   accepted delivery is remembered.

Refusals are audited as ``webhook_refused`` events of the gateway, each field bounded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import structlog
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts import soc
from contracts.events import Summary, utcnow
from contracts.settings import Settings
from contracts.soc import webhooks
from gateway.deps import CorrelationId, Gateway
from gateway.routes.soc import accept_alerts, audit_event, invalid
from gateway.security.policy import WEBHOOK_ALERTS
from gateway.state import GatewayState

log = structlog.get_logger()
router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
SIGNATURE_CHALLENGE = {"WWW-Authenticate": 'HMAC-SHA256 realm="aoc-webhooks"'}


@dataclass(frozen=True)
class Source:
    name: str
    secret: bytes
    config: webhooks.WebhookSource


@dataclass
class WebhookArea:
    sources: dict[str, Source]
    deliveries: KeyValue


def load_sources(settings: Settings) -> dict[str, Source]:
    """The configured sources with their secrets read (files included); a bad configuration
    stops the gateway at start with the reason, never a source silently missing."""
    if settings.webhook_sources_file is not None:
        text = settings.webhook_sources_file.read_text()
    elif settings.webhook_sources is not None:
        text = settings.webhook_sources.get_secret_value()
    else:
        return {}
    sources = {}
    for name, config in webhooks.parse_sources(text).items():
        if config.secret_file is not None:
            try:
                secret = Path(config.secret_file).read_bytes().strip()
            except OSError as exc:
                raise webhooks.WebhookConfigError(
                    f"webhook source {name!r}: cannot read its secret_file ({exc.strerror})"
                ) from None
        else:
            secret = (config.secret or "").encode()
        sources[name] = Source(name, webhooks.check_secret(name, secret), config)
    return sources


async def open_area(state: GatewayState) -> WebhookArea:
    """The webhook sources and the delivery ids seen (opened in the app's lifespan)."""
    sources = load_sources(state.settings)
    deliveries = await webhooks.ensure_deliveries(state.js, state.settings)
    if sources:
        log.info("webhooks.sources", sources=sorted(sources))
    return WebhookArea(sources, deliveries)


def area_of(gw: GatewayState) -> WebhookArea:
    if gw.webhooks is None:
        raise HTTPException(503, "webhook intake is not ready")
    return gw.webhooks


@router.post(
    "/alerts/{source}",
    status_code=202,
    summary="Alerts pushed by a configured source, signed with its HMAC-SHA256 secret",
    responses={200: {"description": "a validation handshake answered, or a redelivery"}},
)
async def receive_alerts(
    source: str, request: Request, gw: Gateway, correlation_id: CorrelationId
) -> Response:
    area = area_of(gw)
    client = (request.client.host if request.client else "unknown")[:64]
    found = area.sources.get(source)
    if found is None:
        await _refused(gw, source, "unknown_source", client, "", correlation_id)
        raise HTTPException(404, "no such webhook source")
    config = found.config
    body = await request.body()
    token = request.query_params.get("validationToken")
    timestamp = request.headers.get(config.timestamp_header) if config.timestamp_header else None
    delivery_id = _delivery_id(request.headers.get(config.delivery_header), body)
    payload = token.encode("utf-8") if token is not None else body
    if config.timestamp_header and not webhooks.fresh(timestamp, time.time(), config.tolerance_s):
        await _refused(gw, source, "stale_timestamp", client, delivery_id, correlation_id)
        raise HTTPException(401, "missing or stale signed timestamp", headers=SIGNATURE_CHALLENGE)
    if not webhooks.verify(found.secret, payload, request.headers.get(config.signature_header), timestamp):
        await _refused(gw, source, "bad_signature", client, delivery_id, correlation_id)
        raise HTTPException(401, "invalid signature", headers=SIGNATURE_CHALLENGE)
    # verified from here on
    if token is not None:
        if not 0 < len(token) <= webhooks.MAX_TOKEN_CHARS or not token.isprintable():
            raise HTTPException(
                400, f"validationToken must be 1-{webhooks.MAX_TOKEN_CHARS} printable characters"
            )
        return PlainTextResponse(token, status_code=200)
    key = webhooks.delivery_key(source, delivery_id)
    seen = await _seen(area.deliveries, key)
    if seen is not None:
        return JSONResponse({"duplicate": True, **msgspec.to_builtins(seen)}, status_code=200)
    actor = f"webhook:{source}"
    route = f"POST {WEBHOOK_ALERTS.replace('{source}', source)}"
    try:
        parsed = soc.parse_alerts(body, config.format)
    except soc.AlertDecodeError as exc:
        await audit_event(
            gw, *soc.refusal_audit(route, exc, body), actor=actor, correlation_id=correlation_id
        )
        return invalid(str(exc), exc.field, exc.error)
    response = await accept_alerts(gw, parsed, route=route, actor=actor, correlation_id=correlation_id)
    if response.status_code == 202:
        await _remember(area.deliveries, key, source, delivery_id, parsed)
    return response


def _delivery_id(header: str | None, body: bytes) -> str:
    if header and header.strip():
        return header.strip()[: webhooks.MAX_DELIVERY_ID_CHARS]
    return webhooks.body_delivery_id(body)


async def _seen(deliveries: KeyValue, key: str) -> webhooks.DeliveryRecord | None:
    try:
        entry = await deliveries.get(key)
    except KeyNotFoundError:
        return None
    except Exception as exc:
        # not knowing whether it is a redelivery: refuse for now, the producer retries
        raise HTTPException(503, f"the delivery log is unavailable: {type(exc).__name__}") from None
    if not entry.value:
        return None
    return msgspec.json.decode(entry.value, type=webhooks.DeliveryRecord)


async def _remember(
    deliveries: KeyValue, key: str, source: str, delivery_id: str, parsed: soc.ParsedAlerts
) -> None:
    """Mark the delivery as accepted. If this fails after the alerts were queued, a
    redelivery queues them again under the same Nats-Msg-Ids and alert ids: the queue's
    dedup window and triage's decided ids still keep them from being decided twice."""
    record = webhooks.DeliveryRecord(
        source=source,
        delivery_id=delivery_id,
        accepted=len(parsed.alerts),
        rejected=len(parsed.rejected),
        first_ids=[alert.id for alert in parsed.alerts[:20]],
        at=utcnow().isoformat(),
    )
    try:
        await deliveries.create(key, msgspec.json.encode(record))
    except KeyWrongLastSequenceError:
        pass  # the same delivery, accepted concurrently: one record is enough
    except Exception as exc:
        log.warning("webhooks.remember_failed", source=source, error=type(exc).__name__)


async def _refused(
    gw: GatewayState, source: str, reason: str, client: str, delivery_id: str, correlation_id: str
) -> None:
    name = source[:64]
    payload = webhooks.WebhookRefused(
        source=name, reason=reason, client=client, delivery_id=delivery_id[:128]
    )
    summary = Summary(
        action="webhook_refused", detail=f"webhook {name!r} from {client}: {reason}", result="rejected"
    )
    await audit_event(gw, payload, summary, actor="anonymous", correlation_id=correlation_id)
