"""MCP over Streamable HTTP at `/mcp` on the gateway, with the MCP SDK's own client: a
real gateway (uvicorn, free port) and the seven engines on a real nats-server.

The tools act as the caller of each HTTP request: a viewer's token reads and is refused
a change, an operator's change is applied, audited with the MCP client's name as origin
and metered against the operator's rate limit, while the `/mcp` requests themselves
(reads included) are not."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from contracts.events import CommandHandled
from contracts.systems import SYSTEMS
from tests.conftest import serve_gateway
from tests.ops.conftest import Tokens
from tests.ops.test_mcp import CLIENT, ORIGIN, READ_TOOLS, WRITE_TOOLS, data, text


@asynccontextmanager
async def mcp_over_http(url: str, token: str):
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), client_info=CLIENT) as client,
    ):
        yield client


async def test_tools_over_http_read_as_the_caller_and_refuse_a_viewers_change(
    engines, settings, tokens: Tokens, tap
):
    async with serve_gateway(settings) as url, mcp_over_http(url, tokens.viewer) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == READ_TOOLS | WRITE_TOOLS

        status = data(await client.call_tool("status", {}))
        assert set(status["systems"]) == set(SYSTEMS) and status["systems_running"] == 7
        found = data(await client.call_tool("activity_search", {"system": "deploy", "limit": 2}))
        assert found["events"] and all(e["system"] == "deploy" for e in found["events"])
        # resources too read as the caller
        health = json.loads((await client.read_resource("aoc://stream-health")).contents[0].text)
        assert health["stream"]["name"] == "AOC_EVENTS"

        refused = await client.call_tool("trigger", {"system": "deploy", "reason": "viewer tries"})
        assert refused.is_error and "403" in text(refused) and "needs operator" in text(refused)
        # a stateless request cannot be asked back: the kill switch needs confirm: true
        unconfirmed = await client.call_tool("stop", {"system": "all", "reason": "drill"})
        assert unconfirmed.is_error and "confirm: true" in text(unconfirmed)
    assert not tap.matching(lambda e: e.actor == "vera" and e.type == CommandHandled.TYPE)


async def test_a_change_over_http_is_applied_audited_and_metered_as_the_operators(
    engines, settings, tokens: Tokens, tap
):
    # two changes a minute at most: the reads and the /mcp requests must not use them up
    limited = settings.model_copy(update={"rate_limit_burst": 2, "rate_limit_per_minute": 1.0})
    async with serve_gateway(limited) as url, mcp_over_http(url, tokens.operator) as client:
        for _ in range(5):
            assert data(await client.call_tool("status", {}))["systems_total"] == 7
        first = data(await client.call_tool("trigger", {"system": "deploy", "reason": "assistant asked"}))
        assert first["ok"] is True and first["system"] == "deploy"
        second = data(await client.call_tool("restart", {"system": "integrity-scan", "reason": "stuck?"}))
        assert second["ok"] and second["state"] == "running"
        third = await client.call_tool("trigger", {"system": "deploy", "reason": "once more"})
        assert third.is_error and "429" in text(third) and "too many changes from oscar" in text(third)
        assert data(await client.call_tool("status", {}))["systems_running"] == 7  # reads still answer

    audit = await tap.wait_for(
        lambda e: e.type == CommandHandled.TYPE and e.actor == "oscar" and e.payload().verb == "trigger"
    )
    payload = audit.payload()
    assert (payload.origin, payload.target, payload.reason) == (ORIGIN, "deploy", "assistant asked")
    assert not tap.matching(
        lambda e: e.type == CommandHandled.TYPE and e.actor == "oscar" and e.payload().reason == "once more"
    )


async def test_mcp_over_http_refuses_a_caller_without_a_token_and_bad_input_with_a_4xx(
    engines, settings, tokens: Tokens
):
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        anonymous = await http.post("/mcp", json=message, headers=accept)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
        wrong = await http.post("/mcp", json=message, headers={**accept, "Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        viewer = {**accept, **Tokens.header(tokens.viewer)}
        for body in (b"{not json", b"[]", b'{"jsonrpc": "1.0"}'):
            bad = await http.post("/mcp", content=body, headers=viewer)
            assert 400 <= bad.status_code < 500, (body, bad.status_code, bad.text)
            for name in ("content-security-policy", "x-content-type-options", "x-frame-options"):
                assert name in bad.headers, name
            assert bad.headers["cache-control"] == "no-store"
        too_big = await http.post("/mcp", content=b"x" * (settings.max_body_bytes + 1), headers=viewer)
        assert too_big.status_code == 413
