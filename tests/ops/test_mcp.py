"""`aoc mcp` with the MCP SDK's own client: a real `aoc mcp` subprocess on stdio, a real
gateway (uvicorn, free port) and the seven engines on a real nats-server.

Every read tool is called; a mutating tool is refused for a viewer token and applied
for an operator token, audited with the operator as actor and the MCP client's name as
origin; the kill switch asks for a confirmation (elicitation, or confirm: true)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import msgspec
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import ElicitResult, Implementation, TextContent

from contracts.events import CommandHandled, command_of
from contracts.systems import SYSTEMS
from services.ml.generator import generate
from tests.conftest import api_client, serve_gateway
from tests.ops.conftest import Tokens

ROOT = Path(__file__).resolve().parents[2]
CLIENT = Implementation(name="Test Assistant", version="1.0")
ORIGIN = "mcp:test-assistant"  # what the gateway makes of that name
READ_TOOLS = {
    "status",
    "system_detail",
    "activity_search",
    "audit_replay",
    "soc_alerts",
    "soc_explain",
    "advisories",
    "job_status",
}
WRITE_TOOLS = {"trigger", "stop", "start", "restart"}


@pytest.fixture
async def gateway(engines, settings):
    async with serve_gateway(settings) as url:
        yield url


def aoc_mcp(url: str, token: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "services.launcher", "mcp"],
        env={"AOC_GATEWAY_URL": url, "AOC_TOKEN": token},
        cwd=str(ROOT),
    )


def text(result) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


def data(result) -> dict:
    assert not result.is_error, text(result)
    return result.structured_content


async def until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_read_tools_and_a_refused_change_for_a_viewer(gateway, api_headers, tokens: Tokens, tap):
    async with api_client(gateway, api_headers) as admin:
        # something for every read tool to find: an audited command, alerts, advisories
        await admin.post("/api/v1/admin/trigger/deploy", json={"reason": "before the assistant looks"})
        alerts = [msgspec.to_builtins(item.alert) for item in generate(12, seed=71)]
        assert (await admin.post("/api/v1/soc/alerts", json=alerts)).status_code == 202

        async def triaged():
            return (await admin.get("/api/v1/soc/alerts", params={"limit": 100})).json()["count"] == 12

        async def advised():
            return (await admin.get("/api/v1/advisories")).json()["total"] > 0

        await until(triaged)
        await until(advised)

    async with Client(aoc_mcp(gateway, tokens.viewer), client_info=CLIENT) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == READ_TOOLS | WRITE_TOOLS
        schemas = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
        assert "reason" in schemas["stop"]["required"] and "reason" in schemas["trigger"]["required"]

        status = data(await client.call_tool("status", {}))
        assert set(status["systems"]) == set(SYSTEMS) and status["systems_total"] == 7
        assert status["systems"]["deploy"]["state"] == "running"

        detail = data(await client.call_tool("system_detail", {"system": "soc-cycle"}))
        assert detail["name"] == "soc-cycle" and detail["loops"]

        first = data(await client.call_tool("activity_search", {"limit": 3}))
        assert first["count"] == 3 and first["next_cursor"]
        older = data(await client.call_tool("activity_search", {"limit": 3, "cursor": first["next_cursor"]}))
        assert max(e["seq"] for e in older["events"]) < min(e["seq"] for e in first["events"])
        deploys = data(await client.call_tool("activity_search", {"system": "deploy", "result": "accepted"}))
        assert deploys["events"] and all(e["system"] == "deploy" for e in deploys["events"])

        audit = data(await client.call_tool("audit_replay", {"since": "1h"}))
        reasons = [r["detail"] for r in audit["records"]]
        assert audit["complete"] and any("before the assistant looks" in r for r in reasons)
        assert all(
            r["action"].startswith("command_") or r["type"] == "entry_annotated" for r in audit["records"]
        )
        seqs = [r["seq"] for r in audit["records"]]
        assert seqs == sorted(seqs)  # a replay: oldest first

        found = data(await client.call_tool("soc_alerts", {"limit": 5}))
        assert found["count"] == 5 and found["next_cursor"]
        explained = data(await client.call_tool("soc_explain", {"alert_id": found["alerts"][0]["id"]}))
        assert explained["reasons"] and explained["decision"] in ("auto_resolve", "escalate", "contain")
        assert explained["model_version"] and explained["scores"]
        missing = await client.call_tool("soc_explain", {"alert_id": "no-such-alert"})
        assert missing.is_error and "404" in text(missing)

        intel = data(await client.call_tool("advisories", {"limit": 3}))
        assert intel["total"] > 0 and len(intel["advisories"]) <= 3

        no_job = await client.call_tool("job_status", {"run_id": "0" * 32})
        assert no_job.is_error and "no job" in text(no_job)

        log = await client.read_resource("aoc://activity-log")
        assert json.loads(log.contents[0].text)["events"]
        health = json.loads((await client.read_resource("aoc://stream-health")).contents[0].text)
        assert health["stream"]["name"] == "AOC_EVENTS" and set(health["engines"]) == set(SYSTEMS)

        # a viewer may read, not act: the gateway refuses and nothing is audited as done
        refused = await client.call_tool("trigger", {"system": "deploy", "reason": "viewer tries"})
        assert refused.is_error and "403" in text(refused) and "needs operator" in text(refused)
        no_reason = await client.call_tool("trigger", {"system": "deploy", "reason": ""})
        assert no_reason.is_error
    assert not tap.matching(lambda e: e.actor == "vera" and e.type == CommandHandled.TYPE)


async def test_operator_change_is_applied_and_audited_with_the_client_name(gateway, tokens: Tokens, tap):
    # the classic handshake: the client's name comes from its initialize request
    async with Client(aoc_mcp(gateway, tokens.operator), client_info=CLIENT, mode="legacy") as client:
        assert client.protocol_version != "2026-07-28"
        reply = data(await client.call_tool("trigger", {"system": "deploy", "reason": "assistant asked"}))
        assert reply["ok"] is True and reply["system"] == "deploy"
        restarted = data(await client.call_tool("restart", {"system": "integrity-scan", "reason": "stuck?"}))
        assert restarted["ok"] and restarted["state"] == "running"
        # an operator may not use the kill switch: the gateway's policy, not the MCP server's
        refused = await client.call_tool("stop", {"system": "all", "reason": "panic", "confirm": True})
        assert refused.is_error and "needs admin" in text(refused)

    audit = await tap.wait_for(
        lambda e: e.type == CommandHandled.TYPE and e.actor == "oscar" and e.payload().verb == "trigger"
    )
    payload = audit.payload()
    assert (payload.origin, payload.target, payload.reason) == (ORIGIN, "deploy", "assistant asked")
    assert payload.outcome == "accepted" and f"trigger from {ORIGIN}" in audit.summary.detail
    restart = await tap.wait_for(  # a change: audited by its lifecycle event (one write)
        lambda e: command_of(e) is not None and e.actor == "oscar" and command_of(e).verb == "restart"
    )
    assert command_of(restart).origin == ORIGIN


async def test_kill_switch_asks_first(gateway, api_headers, tap):
    async def board() -> dict:
        async with httpx.AsyncClient(base_url=gateway, headers=api_headers, timeout=10) as http:
            return (await http.get("/api/v1/admin/dashboard")).json()

    # a client that cannot be asked must say confirm: true
    async with Client(aoc_mcp(gateway, api_headers["Authorization"][7:]), client_info=CLIENT) as client:
        refused = await client.call_tool("stop", {"system": "all", "reason": "drill"})
        assert refused.is_error and "confirm: true" in text(refused)
    assert (await board())["systems_running"] == 7

    asked: list[str] = []

    async def decline(context, params):
        asked.append(params.message)
        return ElicitResult(action="decline")

    async with Client(
        aoc_mcp(gateway, api_headers["Authorization"][7:]), client_info=CLIENT, elicitation_callback=decline
    ) as client:
        declined = await client.call_tool("stop", {"system": "all", "reason": "drill"})
        assert declined.is_error and "not confirmed" in text(declined)
    assert asked and "Kill switch" in asked[0] and "drill" in asked[0]
    assert (await board())["systems_running"] == 7

    async def accept(context, params):
        return ElicitResult(action="accept", content={"confirm": True})

    async with Client(
        aoc_mcp(gateway, api_headers["Authorization"][7:]), client_info=CLIENT, elicitation_callback=accept
    ) as client:
        stopped = data(await client.call_tool("stop", {"system": "all", "reason": "drill"}))
        assert stopped["ok"] and stopped["succeeded"] == 7
        assert (await board())["systems_running"] == 0
        started = data(await client.call_tool("start", {"system": "all", "reason": "drill over"}))
        assert started["ok"] and started["succeeded"] == 7
    stops = tap.matching(lambda e: command_of(e) is not None and command_of(e).verb == "stop")
    assert len(stops) == 7 and {command_of(e).origin for e in stops} == {ORIGIN}


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Claude Desktop", "claude-desktop"),
        ("cursor/1.2 (mac)", "cursor-1.2-mac"),
        ("  ", "unknown"),
        ("<script>alert(1)</script>", "script-alert-1-script"),
        ("Ünïcødé ✓ client", "n-c-d-client"),
        ("x" * 5000, "x" * 48),
        ("nats:operator\nforged: yes", "nats-operator-forged-yes"),
    ],
)
def test_client_names_are_bounded_and_sanitised(raw, name):
    from contracts.origin import mcp_client_name

    assert mcp_client_name(raw) == name
    assert len(mcp_client_name(raw)) <= 48
