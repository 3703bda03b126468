"""/api/v1/siem — what leaves AOC for the SOC's own tools: the SIEM sinks with their
health, and the control-plane alerts (open ones, recent transitions, the rules).

How the gateway knows: the SIEM service (services/siem) rewrites its status into the KV
bucket ``aoc_siem`` every couple of seconds. The gateway reads that entry, and asks the
server for each sink's durable consumer itself, so the lag stays true (and keeps
growing) when the service is down. A status older than ``STATUS_STALE_S`` means the
service is down, and every sink says so; no status at all means it never ran here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from fastapi import APIRouter, FastAPI
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contracts import subjects
from contracts.siem import (
    SIEM_STATUS_BUCKET,
    STATUS_KEY,
    STATUS_STALE_S,
    SiemStatus,
    ensure_status_bucket,
    status_decoder,
)
from gateway.deps import Gateway
from gateway.state import GatewayState

log = structlog.get_logger()

router = APIRouter(prefix="/api/v1/siem", tags=["siem"])

CACHE_S = 1.0


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


class SiemView:
    def __init__(self, gateway: GatewayState) -> None:
        self.gateway = gateway
        self._cached: tuple[float, dict[str, Any]] = (0.0, {})

    async def _status(self) -> tuple[SiemStatus | None, str]:
        try:
            kv = await self.gateway.js.key_value(SIEM_STATUS_BUCKET)
            entry = await kv.get(STATUS_KEY)
        except Exception as exc:  # no bucket / no key: the service never ran here
            return None, type(exc).__name__
        try:
            return status_decoder.decode(entry.value or b""), ""
        except msgspec.DecodeError:
            return None, "undecodable status"

    async def _lag(self, durable: str) -> int | None:
        try:
            info = await self.gateway.js.consumer_info(subjects.EVENTS_STREAM, durable)
        except Exception:
            return None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def snapshot(self) -> dict[str, Any]:
        fetched, cached = self._cached
        if cached and time.monotonic() - fetched < CACHE_S:
            return cached
        status, why = await self._status()
        now = datetime.now(UTC)
        if status is None:
            service = {"state": "not_running", "detail": f"the SIEM service has not reported ({why})"}
            body: dict[str, Any] = {
                "service": service,
                "sinks": [],
                "open_alerts": [],
                "recent_alerts": [],
                "rules": [],
            }
        else:
            age = (now - status.updated).total_seconds()
            up = age <= STATUS_STALE_S
            service = {
                "state": "up" if up else "down",
                "detail": "" if up else f"no status for {age:.0f} s (the SIEM service is down)",
                "started": _iso(status.started),
                "updated": _iso(status.updated),
                "age_s": round(age, 1),
                "boot_id": status.boot_id,
                "sinks_error": status.sinks_error,
                "rules_error": status.rules_error,
                "rules_file": status.rules_file,
                "rules_ready": status.rules_ready,
                # which instance is active (the lease holder) and the standbys it sees
                "instance": status.instance,
                "epoch": status.epoch,
                "standbys": list(status.standbys),
            }
            sinks = []
            for sink in status.sinks:
                lag = await self._lag(sink.durable)
                sinks.append(
                    {
                        **msgspec.to_builtins(sink),
                        "lag": lag if lag is not None else sink.lag,
                        "health": _health(sink.state, sink.enabled, up),
                    }
                )
            body = {
                "service": service,
                "sinks": sinks,
                "open_alerts": msgspec.to_builtins(status.open_alerts),
                "recent_alerts": msgspec.to_builtins(list(reversed(status.recent_alerts))),
                "rules": msgspec.to_builtins(status.rules),
            }
        body["timestamp"] = _iso(now)
        self._cached = (time.monotonic(), body)
        return body


def _health(state: str, enabled: bool, service_up: bool) -> str:
    """ok | degraded | refused | down | disabled: one word for the dashboard's badge."""
    if not enabled:
        return "disabled"
    if not service_up:
        return "down"
    if state == "refused":
        return "refused"
    if state in ("retrying", "starting"):
        return "degraded"
    return "ok"


async def open_view(gateway: GatewayState) -> SiemView:
    """The SIEM service's status as the gateway shows it (opened in the app's lifespan)."""
    try:  # the bucket may be made by whoever comes first
        await ensure_status_bucket(gateway.js, gateway.settings)
    except Exception as exc:
        log.warning("siem.bucket_unavailable", error=type(exc).__name__)
    return SiemView(gateway)


def view(gw: GatewayState) -> SiemView:
    if gw.siem is None:
        gw.siem = SiemView(gw)
    return gw.siem


@router.get("/sinks")
async def sinks(gw: Gateway) -> dict[str, Any]:
    """Every configured sink with its health, lag, last delivery and last error."""
    snapshot = await view(gw).snapshot()
    return {key: snapshot[key] for key in ("timestamp", "service", "sinks")}


@router.get("/alerts")
async def alerts(gw: Gateway) -> dict[str, Any]:
    """Open control-plane alerts, the latest transitions (newest first) and the rules."""
    snapshot = await view(gw).snapshot()
    return {key: snapshot[key] for key in ("timestamp", "service", "open_alerts", "recent_alerts", "rules")}


# --- /metrics -------------------------------------------------------------------------------


class SiemCollector(Collector):
    """Per-sink lag, deliveries, failures, last delivery and health; open alerts by rule.
    The snapshot is fetched by the /metrics handler before each scrape (async)."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        if not snapshot:
            return
        service = snapshot["service"]
        yield GaugeMetricFamily(
            "aoc_siem_service_up",
            "1 while the SIEM service reports its status",
            value=float(service["state"] == "up"),
        )
        lag = GaugeMetricFamily(
            "aoc_siem_sink_lag_events", "Events the sink's receiver has not accepted", labels=["sink", "kind"]
        )
        delivered = CounterMetricFamily(
            "aoc_siem_sink_delivered_events",
            "Events accepted by the receiver (this service's life)",
            labels=["sink", "kind"],
        )
        failures = CounterMetricFamily(
            "aoc_siem_sink_failures",
            "Failed delivery attempts (this service's life)",
            labels=["sink", "kind"],
        )
        last = GaugeMetricFamily(
            "aoc_siem_sink_last_delivery_timestamp_seconds",
            "When the receiver last accepted a batch",
            labels=["sink", "kind"],
        )
        last_error = GaugeMetricFamily(
            "aoc_siem_sink_last_error_timestamp_seconds",
            "When the last delivery attempt failed",
            labels=["sink", "kind"],
        )
        healthy = GaugeMetricFamily(
            "aoc_siem_sink_up", "1 while the sink delivers (or has nothing to send)", labels=["sink", "kind"]
        )
        for sink in snapshot["sinks"]:
            labels = [sink["name"], sink["kind"]]
            lag.add_metric(labels, float(sink["lag"] or 0))
            delivered.add_metric(labels, float(sink["delivered"]))
            failures.add_metric(labels, float(sink["failures"]))
            if sink.get("last_delivery"):
                last.add_metric(labels, datetime.fromisoformat(sink["last_delivery"]).timestamp())
            if sink.get("last_error_at"):
                last_error.add_metric(labels, datetime.fromisoformat(sink["last_error_at"]).timestamp())
            healthy.add_metric(labels, float(sink["health"] == "ok"))
        yield from (lag, delivered, failures, last, last_error, healthy)
        open_alerts = GaugeMetricFamily(
            "aoc_siem_alerts_open", "Open control-plane alerts by rule", labels=["rule", "severity"]
        )
        counts: dict[tuple[str, str], int] = {}
        for rule in snapshot["rules"]:
            counts[(rule["name"], rule["severity"])] = 0
        for alert in snapshot["open_alerts"]:
            key = (alert["rule"], alert["severity"])
            counts[key] = counts.get(key, 0) + 1
        for (rule, severity), count in sorted(counts.items()):
            open_alerts.add_metric([rule, severity], float(count))
        yield open_alerts


async def refresh_metrics(app: FastAPI, gw: GatewayState) -> None:
    """Called by GET /metrics before it renders: registers the collector on first use and
    gives it a fresh snapshot."""
    collector = getattr(app.state, "siem_collector", None)
    if collector is None:
        collector = app.state.siem_collector = SiemCollector()
        app.state.metrics_registry.register(collector)
    collector.snapshot = await view(gw).snapshot()
