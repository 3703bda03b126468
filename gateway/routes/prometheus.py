"""GET /metrics — Prometheus exposition, for clients in AOC_METRICS_ALLOW only.

What it covers, all read from memory at scrape time (the projection, the last
heartbeats) except the stream state (one cached JetStream call):

- engines: state, heartbeat age, cycles and cycle errors, process memory and CPU;
- commands by system, verb and outcome, and events by system and type, counted from
  the projection as it grows (from the start of the retained stream, per gateway life);
- the stream and the read models: last sequence, applied sequence, lag, bytes; each read
  model's readiness and lag; snapshots written, failed, and whether this start used one;
- HTTP: latency histogram by method, route template and status; refusals by reason;
- SIEM: per-sink lag, deliveries, failures, last delivery and health; open alerts by rule
  (gateway/routes/siem.py, from the SIEM service's status and the sinks' consumers).

Every gateway app has its own registry (tests build many apps in one process).
deploy/grafana-dashboard.json charts these series.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contracts.systems import SYSTEMS
from gateway import views
from gateway.deps import Gateway
from gateway.readmodels.activity import ActivityRow
from gateway.routes import siem
from gateway.state import GatewayState

router = APIRouter(include_in_schema=False)

STATES = ("running", "stopped", "starting", "stopping", "unreachable")
KNOWN_SOURCES = frozenset({*SYSTEMS, "gateway"})
COMMAND_ACTION = "command_"  # the summary action of every command's audit record
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "aoc_http_request_duration_seconds",
            "HTTP request latency by method, route template and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.denied = PromCounter(
            "aoc_http_requests_denied",
            "HTTP requests refused by the access check, by reason",
            ["reason"],
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, str(status)).observe(seconds)

    def count_denied(self, reason: str) -> None:
        self.denied.labels(reason).inc()


class BusCollector(Collector):
    """The gateway's view of the bus as metric families, computed at scrape time."""

    def __init__(self, gateway: Callable[[], GatewayState | None]) -> None:
        self._gateway = gateway
        self.stream: dict[str, Any] = {}  # set by the handler before each scrape (async call)
        self.audit: dict[str, Any] = {}
        self._counted_seq = 0
        self._commands: Counter[tuple[str, str, str]] = Counter()
        self._events: Counter[tuple[str, str]] = Counter()

    def _count_new_rows(self, rows: list[ActivityRow]) -> None:
        start = bisect.bisect_right(rows, self._counted_seq, key=lambda row: row.seq)
        for row in rows[start:]:
            system = row.system if row.system in KNOWN_SOURCES else "other"
            self._events[(system, row.type)] += 1
            if row.action.startswith(COMMAND_ACTION):  # command_handled, or a command's lifecycle event
                self._commands[(system, row.action.removeprefix(COMMAND_ACTION), row.result)] += 1
        if rows:
            self._counted_seq = max(self._counted_seq, rows[-1].seq)

    def collect(self) -> Iterator[Metric]:
        gw = self._gateway()
        if gw is None:
            return
        models = gw.models
        feed = models.events
        self._count_new_rows(models.activity.rows)
        yield from self._engines(gw)

        commands = CounterMetricFamily(
            "aoc_commands",
            "Control commands handled, by system, verb and outcome",
            labels=["system", "verb", "outcome"],
        )
        for labels, count in sorted(self._commands.items()):
            commands.add_metric(list(labels), count)
        yield commands
        events = CounterMetricFamily(
            "aoc_events", "Events on AOC_EVENTS, by system and type", labels=["system", "type"]
        )
        for labels, count in sorted(self._events.items()):
            events.add_metric(list(labels), count)
        yield events

        last_seq = self.stream.get("last_seq", feed.last_seq)
        yield _gauge("aoc_stream_last_seq", "Last sequence of AOC_EVENTS", last_seq)
        yield _gauge("aoc_stream_messages", "Messages in AOC_EVENTS", self.stream.get("messages", 0))
        yield _gauge("aoc_stream_bytes", "Bytes in AOC_EVENTS", self.stream.get("bytes", 0))
        yield _gauge("aoc_projection_applied_seq", "Last stream sequence the gateway applied", feed.last_seq)
        lag = max(last_seq - feed.last_seq, feed.pending, 0)
        yield _gauge("aoc_projection_lag_events", "Events in the stream the gateway has not applied", lag)
        yield _gauge("aoc_projection_replayed", "1 once the gateway replayed the stream", feed.ready)
        yield from _read_models(gw)
        yield _gauge("aoc_nats_connected", "1 while the gateway is connected to NATS", gw.nc.is_connected)
        yield _gauge("aoc_sse_clients", "Open dashboard event streams", gw.live_connections)
        audit = self.audit
        yield _gauge("aoc_audit_bytes", "Bytes in AOC_AUDIT (the audit records)", audit.get("bytes", 0))
        yield _gauge("aoc_audit_max_bytes", "Byte cap of AOC_AUDIT", audit.get("max_bytes", 0))
        yield _gauge(
            "aoc_audit_fill_ratio",
            "Share of AOC_AUDIT's byte cap in use (it refuses new copies when full; alert from 0.8)",
            audit.get("fill_ratio", 0.0),
        )
        yield _gauge(
            "aoc_audit_source_lag", "Audit records AOC_AUDIT has yet to copy", audit.get("source_lag", 0)
        )
        drops = CounterMetricFamily(
            "aoc_nats_slow_consumer_drops",
            "Messages the gateway's subscriptions dropped because they fell behind (slow consumer)",
            labels=["subscription"],
        )
        # the guard subscriptions always have a series, so an alert can watch them from 0
        counts = {"aoc.ctl.*.*": 0, "aoc.ctl.*.*.*": 0, **gw.drops.by_subscription}
        for subscription, count in sorted(counts.items()):
            drops.add_metric([subscription], count)
        yield drops

    def _engines(self, gw: GatewayState) -> Iterator[Metric]:
        now = datetime.now(UTC)
        timeout = gw.settings.heartbeat_timeout
        state = GaugeMetricFamily(
            "aoc_engine_state", "1 for the state each engine is in", labels=["system", "state"]
        )
        age = GaugeMetricFamily(
            "aoc_engine_heartbeat_age_seconds", "Seconds since the last heartbeat", labels=["system"]
        )
        cycles = CounterMetricFamily("aoc_engine_cycles", "Cycles run (engine counters)", labels=["system"])
        errors = CounterMetricFamily(
            "aoc_engine_cycle_errors", "Cycles failed (engine counters)", labels=["system"]
        )
        memory = GaugeMetricFamily(
            "aoc_engine_memory_bytes", "Resident memory of the engine", labels=["system"]
        )
        cpu = GaugeMetricFamily("aoc_engine_cpu_percent", "CPU use of the engine process", labels=["system"])
        for slug in SYSTEMS:
            current = views.system_state(gw.models.systems, slug, now, timeout)
            for name in STATES:
                state.add_metric([slug, name], 1.0 if current == name else 0.0)
            seen = gw.models.systems.heartbeats.get(slug)
            if seen is None:
                continue
            age.add_metric([slug], (now - seen.received).total_seconds())
            cycles.add_metric([slug], seen.beat.status.total_runs)
            errors.add_metric([slug], seen.beat.status.error_count)
            memory.add_metric([slug], seen.beat.process.rss_mb * 1024 * 1024)
            cpu.add_metric([slug], seen.beat.process.cpu_percent)
        yield from (state, age, cycles, errors, memory, cpu)


def _read_models(gw: GatewayState) -> Iterator[Metric]:
    """Per read model and per source: ready and lag; the snapshots."""
    ready = GaugeMetricFamily(
        "aoc_readmodel_ready", "1 once a read model (view or source) has caught up", labels=["model", "kind"]
    )
    lag = GaugeMetricFamily(
        "aoc_readmodel_lag", "Messages its sources hold that it has not applied", labels=["model", "kind"]
    )
    models = gw.models
    for kind, found in (("view", models.all_views()), ("source", models.sources())):
        for model in found:
            ready.add_metric([model.name, kind], 1.0 if model.ready else 0.0)
            lag.add_metric([model.name, kind], float(model.lag))
    yield ready
    yield lag
    snapshots = models.snapshots
    yield CounterMetricFamily(
        "aoc_snapshots_written", "Read-model snapshots this gateway wrote", value=snapshots.written
    )
    yield CounterMetricFamily(
        "aoc_snapshots_failed", "Read-model snapshots that could not be written", value=snapshots.failures
    )
    yield _gauge(
        "aoc_snapshot_loaded", "1 when this start loaded a snapshot (0: full replay)", bool(models.loaded)
    )
    yield _gauge(
        "aoc_snapshot_seq",
        "Stream sequence of the last snapshot written or loaded",
        snapshots.last_written_seq,
    )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


@lru_cache(maxsize=8)
def _networks(allowed: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in allowed)


def client_allowed(host: str | None, allowed: list[str]) -> bool:
    """The direct peer only: X-Forwarded-For is not trusted (allowlist the proxy instead)."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in _networks(tuple(allowed)))


@router.get("/metrics")
async def metrics(request: Request, gw: Gateway) -> Response:
    if not client_allowed(request.client.host if request.client else None, gw.settings.metrics_allow):
        raise HTTPException(403, "this client may not scrape /metrics (AOC_METRICS_ALLOW)")
    collector: BusCollector = request.app.state.bus_collector
    collector.stream = await gw.stream_state()
    await siem.refresh_metrics(request.app, gw)  # the SIEM sinks and alerts (gateway/routes/siem.py)
    collector.audit = await gw.audit_state()
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
