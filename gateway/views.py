"""The dashboard and the metrics, from the systems view (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts.events import ProcessMetrics
from contracts.systems import SYSTEMS
from gateway.isotime import iso
from gateway.readmodels.systems import SystemsView

__all__ = ["dashboard", "iso", "last_crash", "metrics", "nats_pool", "system_state", "system_view"]

SETTLES = {"stopping": "stopped", "starting": "running"}  # a transient state -> where it ends


def system_state(projection: SystemsView, slug: str, now: datetime, heartbeat_timeout: float) -> str:
    beat = projection.heartbeats.get(slug)
    if beat is None or (now - beat.received).total_seconds() > heartbeat_timeout:
        return "unreachable"
    life = projection.lifecycle.get(slug)
    said = beat.beat.status.state
    # the later of the two says what the engine is now; both come from the engine's clock.
    # A beat sent mid-transition ("stopping") may be later than the settled event it
    # leads to ("stopped"): the settled state wins then.
    if life is not None and (
        datetime.fromisoformat(life.time) >= beat.beat.time or SETTLES.get(said) == life.state
    ):
        return life.state
    return said


CRASH_NOTICE_S = 600.0  # how long a card says "restarted N s ago after a crash"


def last_crash(projection: SystemsView, slug: str, now: datetime) -> dict[str, Any] | None:
    crash = projection.crashes.get(slug)
    if crash is None:
        return None
    age = (now - datetime.fromisoformat(crash.time)).total_seconds()
    if age > CRASH_NOTICE_S:
        return None
    age = round(max(age, 0.0), 1)
    return {"type": crash.type, "time": crash.time, "age_seconds": age, "detail": crash.detail}


def system_view(
    projection: SystemsView, slug: str, now: datetime, heartbeat_timeout: float
) -> dict[str, Any]:
    info = SYSTEMS[slug]
    state = system_state(projection, slug, now, heartbeat_timeout)
    view: dict[str, Any] = {
        "name": slug,
        "label": info.label,
        "running": state == "running",
        "state": state,
        "schedule": info.schedule,
        "last_run": None,
        "error_count": 0,
        "success_rate": 100.0,
        "last_heartbeat": None,
        "heartbeat_age_seconds": None,
    }
    view.update(dict.fromkeys(info.extras))
    beat = projection.heartbeats.get(slug)
    life = projection.lifecycle.get(slug)
    if beat is not None:
        status = beat.beat.status
        view.update(status.extras)
        view.update(
            last_run=iso(status.last_run),
            error_count=status.error_count,
            success_rate=status.success_rate,
            total_runs=status.total_runs,
            last_heartbeat=iso(beat.received),
            heartbeat_age_seconds=round((now - beat.received).total_seconds(), 1),
        )
    view["desired"] = life.desired if life else (beat.beat.status.desired if beat else None)
    instances = projection.instances_of(slug, now, heartbeat_timeout)
    view["instances"] = len(instances)  # live instances of the engine (the lease: one is active)
    view["instances_active"] = sum(instance["role"] == "active" for instance in instances)
    view["last_crash"] = last_crash(projection, slug, now)
    return view


def dashboard(
    projection: SystemsView, *, heartbeat_timeout: float, view_status: dict[str, Any]
) -> dict[str, Any]:
    now = datetime.now(UTC)
    systems = {slug: system_view(projection, slug, now, heartbeat_timeout) for slug in SYSTEMS}
    return {
        "timestamp": iso(now),
        "emergency_mode": any(not system["running"] for system in systems.values()),
        "systems": systems,
        "systems_running": sum(system["running"] for system in systems.values()),
        "systems_total": len(systems),
        "view": view_status,
    }


def process_dict(metrics: ProcessMetrics) -> dict[str, Any]:
    return {
        "pid": metrics.pid,
        "uptime_seconds": metrics.uptime_seconds,
        "memory_mb": metrics.rss_mb,
        "memory_percent": metrics.memory_percent,
        "cpu_percent": metrics.cpu_percent,
        "threads": metrics.threads,
    }


def nats_pool(nc: Any) -> dict[str, Any]:
    """The spec's ``db_pool``, filled with what plays a pool's role here: the gateway's
    NATS connection (``size``: connections held and up) and the request/reply exchanges
    in flight on it (control commands, JetStream acks). A DB pool checks a connection out
    per query; NATS multiplexes, so requests beyond one per connection are ``overflow``,
    with SQLAlchemy's identity checked_out = size - checked_in + overflow
    (docs/decisions.md)."""
    connections = [nc] if nc is not None else []
    size = sum(1 for connection in connections if connection.is_connected)
    # nats-py keeps one future per request awaiting its reply (the muxed inbox's map)
    in_flight = sum(len(getattr(connection, "_resp_map", None) or {}) for connection in connections)
    return {
        "size": size,
        "checked_in": max(size - in_flight, 0),
        "checked_out": in_flight,
        "overflow": max(in_flight - size, 0),
        "kind": "nats",
        "reconnects": sum(connection.stats["reconnects"] for connection in connections),
        "pending_bytes": sum(connection.pending_data_size for connection in connections),
    }


def metrics(
    projection: SystemsView,
    *,
    gateway: ProcessMetrics,
    heartbeat_timeout: float,
    live_connections: int,
    jetstream: dict[str, Any],
    db_pool: dict[str, Any] | None = None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    services: dict[str, Any] = {"gateway": {**process_dict(gateway), "reachable": True}}
    for slug in SYSTEMS:
        beat = projection.heartbeats.get(slug)
        reachable = system_state(projection, slug, now, heartbeat_timeout) != "unreachable"
        services[slug] = {**process_dict(beat.beat.process), "reachable": reachable} if beat else None
    # one entry per live process: engines run in-process in tests and may share a pid
    live = list({svc["pid"]: svc for svc in services.values() if svc and svc["reachable"]}.values())
    running = sum(system_state(projection, slug, now, heartbeat_timeout) == "running" for slug in SYSTEMS)
    return {
        "timestamp": iso(now),
        # the gateway's own uptime; per-service uptimes are under "services"
        "uptime_seconds": gateway.uptime_seconds,
        # totals over every AOC process that is alive (gateway + reachable engines)
        "memory_mb": round(sum(svc["memory_mb"] for svc in live), 1),
        "memory_percent": round(sum(svc["memory_percent"] for svc in live), 2),
        "cpu_percent": round(sum(svc["cpu_percent"] for svc in live), 1),
        "threads": sum(svc["threads"] for svc in live),
        "active_ws_connections": live_connections,  # SSE streams: the spec's WS count
        "active_sse_connections": live_connections,
        "db_pool": db_pool,  # no database: the NATS connection and its requests (nats_pool)
        "jetstream": jetstream,
        "autonomous_systems_total": len(SYSTEMS),
        "autonomous_systems_running": running,
        "services": services,
    }


def to_jsonable(value: Any) -> Any:
    return msgspec.to_builtins(value)
