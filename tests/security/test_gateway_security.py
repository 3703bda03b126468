"""The live gateway on a real nats-server: attributable audit, the correlation id from
HTTP to the engine's audit event, security headers, health, Prometheus metrics, token
management and the stream ticket."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from contracts.events import command_of
from contracts.settings import Settings
from tests.conftest import api_client, serve_gateway
from tests.security.conftest import Caller, bearer

API = "/api/v1/admin"
ROOT = Path(__file__).resolve().parents[2]


def is_audit_of(system: str, verb: str):
    return lambda e: command_of(e) is not None and e.system == system and command_of(e).verb == verb


async def test_the_actor_is_who_authenticated_and_the_request_id_follows_the_command(
    engines, tap, live_gateway: str, callers: dict[str, Caller]
):
    admin, operator = callers["admin"], callers["operator"]
    async with api_client(live_gateway, admin.headers) as http:
        # a client-sent actor header means nothing any more
        headers = {"X-AOC-Actor": "mallory", "X-Request-ID": "incident-7.stop-1"}
        stop = await http.post(f"{API}/emergency-stop/deploy", json={"reason": "drill 7"}, headers=headers)
    assert stop.status_code == 200 and stop.headers["x-request-id"] == "incident-7.stop-1"
    audit = await tap.wait_for(is_audit_of("deploy", "stop"))
    assert audit.actor == "admin" and audit.correlation_id == "incident-7.stop-1"
    assert command_of(audit).reason == "drill 7" and command_of(audit).origin == "http"
    lifecycle = await tap.wait_for(
        lambda e: e.type == "lifecycle_changed" and e.correlation_id == "incident-7.stop-1"
    )
    assert lifecycle.actor == "admin"

    async with api_client(live_gateway, operator.headers) as http:
        start = await http.post(f"{API}/start/deploy", headers={"X-AOC-Actor": "mallory"})
        assert start.status_code == 200
        generated = start.headers["x-request-id"]  # none sent: the gateway made one
    audit = await tap.wait_for(is_audit_of("deploy", "start"))
    assert audit.actor == "oscar" and audit.correlation_id == generated
    assert not tap.matching(lambda e: e.actor == "mallory")


async def test_security_headers_on_every_kind_of_response(engines, live_gateway: str, callers):
    async with (
        api_client(live_gateway, {}) as anonymous,
        api_client(live_gateway, callers["viewer"].headers) as viewer,
    ):
        responses = {
            "public health": await anonymous.get("/health"),
            "refused": await anonymous.get(f"{API}/dashboard"),
            "forbidden": await viewer.post(f"{API}/restart-all"),
            "api data": await viewer.get(f"{API}/dashboard"),
            "dashboard shell": await anonymous.get("/admin-ops"),
        }
    for kind, response in responses.items():
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], kind
        assert headers["x-content-type-options"] == "nosniff", kind
        assert headers["referrer-policy"] == "no-referrer", kind
        assert "camera=()" in headers["permissions-policy"], kind
        assert headers["x-frame-options"] == "DENY", kind
    assert responses["refused"].status_code == 401 and responses["forbidden"].status_code == 403
    assert responses["api data"].headers["cache-control"] == "no-store"


async def test_health_is_public_and_terse_and_the_details_need_a_token(engines, live_gateway: str, callers):
    async with (
        api_client(live_gateway, {}) as anonymous,
        api_client(live_gateway, callers["viewer"].headers) as viewer,
    ):
        health = await anonymous.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "up"}
        assert (await anonymous.get("/health/details")).status_code == 401
        for _ in range(50):  # every engine's first heartbeat
            details = (await viewer.get("/health/details")).json()
            if all(e["heartbeat_age_seconds"] is not None for e in details["engines"].values()):
                break
            await asyncio.sleep(0.1)
    assert details["nats"]["connected"] is True and details["stream"]["name"] == "AOC_EVENTS"
    assert details["projection"]["lag"] >= 0 and details["projection"]["replayed"] is True
    assert set(details["engines"]) == set(engines)
    assert all(0 <= e["heartbeat_age_seconds"] < 5 for e in details["engines"].values())


async def test_prometheus_metrics_parse_and_cover_engines_commands_and_http(
    engines, live_gateway: str, callers
):
    async with api_client(live_gateway, callers["admin"].headers) as http:
        await http.post(f"{API}/emergency-stop/soc-cycle")
        await http.post(f"{API}/start/soc-cycle")
        await asyncio.sleep(0.3)
        scrape = await http.get("/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(scrape.text)}
    assert {
        "aoc_engine_state",
        "aoc_engine_heartbeat_age_seconds",
        "aoc_commands",
        "aoc_events",
        "aoc_projection_lag_events",
        "aoc_stream_last_seq",
        "aoc_http_request_duration_seconds",
    } <= set(families)
    running = {
        s.labels["system"]
        for s in families["aoc_engine_state"].samples
        if s.labels["state"] == "running" and s.value == 1
    }
    assert running == set(engines)
    commands = {
        (s.labels["system"], s.labels["verb"], s.labels["outcome"]): s.value
        for s in families["aoc_commands"].samples
        if s.name == "aoc_commands_total"
    }
    assert (
        commands[("soc-cycle", "stop", "accepted")] == 1 and commands[("soc-cycle", "start", "accepted")] == 1
    )
    routes = {s.labels.get("route") for s in families["aoc_http_request_duration_seconds"].samples}
    assert f"{API}/emergency-stop/{{name}}" in routes  # templates, not raw paths: bounded labels

    # the Grafana dashboard charts series that exist
    samples = {sample.name for family in families.values() for sample in family.samples}
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    charted = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\baoc_[a-z_]+", target["expr"])
    }
    assert charted and charted <= samples | {"aoc_http_requests_denied_total"}, charted - samples


async def test_metrics_refuse_clients_outside_the_allowlist(settings: Settings, callers):
    remote_only = settings.model_copy(update={"metrics_allow": ["10.0.0.0/8"]})
    async with serve_gateway(remote_only) as url, api_client(url, callers["admin"].headers) as http:
        refused = await http.get("/metrics")  # from 127.0.0.1, even with an admin token
    assert refused.status_code == 403 and "AOC_METRICS_ALLOW" in refused.json()["detail"]


async def test_admins_manage_tokens_and_the_log_says_who(tap, live_gateway: str, callers):
    admin, operator = callers["admin"], callers["operator"]
    async with (
        api_client(live_gateway, admin.headers) as http,
        api_client(live_gateway, operator.headers) as op,
    ):
        assert (await op.post("/api/v1/auth/tokens", json={"name": "x", "role": "admin"})).status_code == 403
        assert (await op.get("/api/v1/auth/tokens")).status_code == 403
        made = await http.post("/api/v1/auth/tokens", json={"name": "tina", "role": "viewer"})
        assert made.status_code == 201 and made.json()["token"].startswith("aoc_")
        again = await http.post("/api/v1/auth/tokens", json={"name": "tina", "role": "admin"})
        assert again.status_code == 409
        reserved = await http.post("/api/v1/auth/tokens", json={"name": "soc-cycle", "role": "viewer"})
        assert reserved.status_code == 422
        listed = (await http.get("/api/v1/auth/tokens")).json()["tokens"]
        assert {"name": "tina", "role": "viewer"}.items() <= next(
            t for t in listed if t["name"] == "tina"
        ).items()
        assert all(set(t) == {"name", "role", "created", "created_by"} for t in listed)  # never a digest

        async with api_client(live_gateway, bearer(made.json()["token"])) as tina:
            assert (await tina.get(f"{API}/dashboard")).status_code == 200
            assert (await tina.post(f"{API}/trigger/deploy")).status_code == 403
            assert (await http.delete("/api/v1/auth/tokens/tina")).status_code == 204
            assert (await tina.get(f"{API}/dashboard")).status_code == 401
    created = await tap.wait_for(lambda e: e.summary.action == "token_created")
    revoked = await tap.wait_for(lambda e: e.summary.action == "token_revoked")
    assert created.actor == revoked.actor == "admin" and "tina" in created.summary.detail


async def test_a_stream_ticket_opens_the_live_stream_and_nothing_else(engines, settings: Settings, callers):
    brief = settings.model_copy(update={"stream_ticket_ttl_s": 1})
    async with serve_gateway(brief) as url, api_client(url, callers["viewer"].headers) as viewer:
        ticket = (await viewer.post("/api/v1/auth/stream-ticket")).json()
        async with api_client(url, {}) as browser:  # EventSource: no Authorization header
            async with browser.stream("GET", ticket["stream_url"]) as live:
                assert live.status_code == 200 and live.headers["content-type"].startswith(
                    "text/event-stream"
                )
            other = await browser.get(f"{API}/dashboard", params={"ticket": ticket["ticket"]})
            assert other.status_code == 401  # tickets open the stream only
            forged = await browser.get(f"{API}/stream", params={"ticket": ticket["ticket"] + "x"})
            assert forged.status_code == 401
            await asyncio.sleep(2.1)
            expired = await browser.get(ticket["stream_url"])
            assert expired.status_code == 401 and "expired" in expired.json()["detail"]
