"""`aoc mcp`: the control plane as a Model Context Protocol server on stdio, for
assistants (Claude Desktop, Cursor, any MCP client).

It is one more client of the gateway's HTTP API, like the `aoc` CLI: every call carries
``AOC_TOKEN`` as a bearer token, so the gateway authenticates it, applies the token's
role and audits what it does. Nothing here talks to NATS or decides who may do what.

- Read tools: the dashboard, one system's detail, activity search (filters, cursor),
  the audit records of a time window, SOC alerts and the explanation of one decision,
  threat advisories, and a job's status.
- Mutating tools (trigger, stop, start, restart; one engine or ``all``) take a required
  ``reason``; the gateway needs an operator token for trigger/start/restart and an admin
  one for stop and the ``all`` forms, as on the web. Each request names the MCP client
  (from its initialize request) in the ``Aoc-Mcp-Client`` header, and the gateway
  audits the command with origin ``mcp:<client name>`` (gateway/origin.py).
- The kill switch (``stop`` of ``all``) asks for confirmation: by elicitation when the
  client can be asked, else the call must carry ``confirm: true``.
- Resources: ``aoc://activity-log`` (the newest entries) and ``aoc://stream-health``.

stdout carries the protocol: everything else (logs) goes to stderr.
"""

# no `from __future__ import annotations`: the SDK reads the tools' annotations at runtime,
# and some of them name closures (the kill-switch resolver)

import json
import os
import sys
from contextvars import ContextVar
from typing import Annotated, Any, Literal

import httpx
from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from contracts.origin import MCP_CLIENT_HEADER
from contracts.settings import Settings
from contracts.systems import ALL, SYSTEMS

ADMIN = "/api/v1/admin"
HTTP_TIMEOUT_S = 30.0  # a bulk command waits for seven engines
MAX_AUDIT_ROWS = 5000
INSTRUCTIONS = (
    "AOC, the Admin Operations Center: seven autonomous security engines (integrity-scan, deploy, "
    "soc-cycle, heal-check, ml-retrain, advisory-refresh, frontend-factory). Read their state with "
    "`status` and `system_detail`, the log with `activity_search` and `audit_replay`, SOC work with "
    "`soc_alerts` and `soc_explain`, threat intel with `advisories`. Changing anything needs a "
    "reason, which is recorded in the audit log with your client's name."
)

SystemName = Literal[tuple(SYSTEMS)]  # type: ignore[valid-type]
Target = Literal[(ALL, *SYSTEMS)]  # type: ignore[valid-type]
Reason = Annotated[
    str, Field(min_length=1, max_length=1000, description="why: recorded in the audit log with the command")
]
Limit = Annotated[int, Field(ge=1, le=500, description="at most this many rows")]
Cursor = Annotated[int | None, Field(ge=1, description="next_cursor of the previous page (older rows)")]
When = Annotated[
    str | None,
    Field(max_length=40, description="ISO 8601 (2030-05-01T12:00:00Z) or relative: 30m, 2h, 7d ago"),
]

# verb -> (endpoint for one system, endpoint for all); trigger has no bulk endpoint
ENDPOINTS = {
    "trigger": ("trigger/{system}", None),
    "stop": ("emergency-stop/{system}", "emergency-stop-all"),
    "start": ("start/{system}", "start-all"),
    "restart": ("restart/{system}", "restart-all"),
}


class GatewayCallFailed(Exception):
    """The gateway refused or failed a call; the message says why (sent to the model)."""


def is_audit_record(entry: dict[str, Any]) -> bool:
    """A command (its audit is a command_handled event, or the lifecycle event a change
    wrote: both have a ``command_*`` action) or an operator's annotation."""
    return str(entry.get("action", "")).startswith("command_") or entry.get("type") == "entry_annotated"


# the bearer token of the MCP request being served over HTTP (`/mcp` on the gateway sets
# it per request; the SDK runs the request's handlers in tasks that inherit it)
CALLER_TOKEN: ContextVar[str | None] = ContextVar("aoc_mcp_caller_token", default=None)


class GatewayApi:
    """The gateway's HTTP API, as one bearer token (``token``: `aoc mcp` on stdio) or as
    the caller of each MCP request (``token=None``: `/mcp` on the gateway, every call
    carrying the bearer token its MCP request came with)."""

    def __init__(
        self, base_url: str, token: str | None, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.as_caller = token is None
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={} if token is None else {"Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT_S,
            transport=transport,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        client: str | None = None,
        accept: tuple[int, ...] = (),
    ) -> Any:
        headers = {MCP_CLIENT_HEADER: client} if client else {}
        if self.as_caller and (caller := CALLER_TOKEN.get()):
            headers["Authorization"] = f"Bearer {caller}"  # none: the gateway answers 401, as to anyone
        query = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            response = await self._http.request(method, path, params=query, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise GatewayCallFailed(
                f"cannot reach the gateway at {self.base_url}: {type(exc).__name__}"
            ) from None
        try:
            payload = response.json()
        except ValueError:
            payload = {"detail": response.text.strip()[:500] or response.reason_phrase}
        if response.status_code >= 400 and response.status_code not in accept:
            detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
            raise GatewayCallFailed(
                f"gateway refused {method} {path} (HTTP {response.status_code}): {detail}"
            )
        return payload


def client_name(ctx: Any) -> str:
    """The MCP client's own name, from its initialize request (or the request envelope)."""
    try:
        params = ctx.session.client_params
    except Exception:
        return "unknown"
    info = getattr(params, "client_info", None)
    return (getattr(info, "name", None) or "unknown")[:200]


def _when(value: str | None) -> str | None:
    if value is None:
        return None
    from services.launcher.audit import parse_when

    try:
        return parse_when(value).isoformat().replace("+00:00", "Z")
    except ValueError as exc:
        raise GatewayCallFailed(str(exc)) from None


class Confirmation(BaseModel):
    confirm: bool = Field(description="Stop every engine now (the kill switch)?")


def build_server(api: GatewayApi) -> MCPServer:
    """The MCP server: every tool is one or a few calls to the gateway's API."""
    server = MCPServer("aoc", instructions=INSTRUCTIONS, version="0.1.0")
    reading = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await api.call(*args, **kwargs)
        except GatewayCallFailed as exc:
            raise ToolError(str(exc)) from None

    # --- reads ------------------------------------------------------------------------

    @server.tool(annotations=reading)
    async def status() -> dict[str, Any]:
        """Every engine's state (running / stopped / unreachable), last run, errors and
        success rate; whether the kill switch is on; whether the gateway's view is current."""
        board = await call("GET", f"{ADMIN}/dashboard")
        systems = {
            slug: {
                key: info.get(key)
                for key in (
                    "label",
                    "state",
                    "desired",
                    "last_run",
                    "error_count",
                    "success_rate",
                    "last_heartbeat",
                )
            }
            for slug, info in board.get("systems", {}).items()
        }
        return {
            "timestamp": board.get("timestamp"),
            "emergency_mode": board.get("emergency_mode"),
            "systems_running": board.get("systems_running"),
            "systems_total": board.get("systems_total"),
            "systems": systems,
            "view": board.get("view"),
        }

    @server.tool(annotations=reading)
    async def system_detail(system: SystemName) -> dict[str, Any]:
        """One engine in depth: its loops, counters, engine-specific fields, process metrics."""
        return await call("GET", f"{ADMIN}/system/{system}/detail")

    @server.tool(annotations=reading)
    async def activity_search(
        system: Annotated[
            str | None, Field(max_length=64, description="e.g. soc-cycle, deploy, gateway")
        ] = None,
        result: Annotated[
            str | None, Field(max_length=32, description="success, failed, accepted, rejected ...")
        ] = None,
        actor: Annotated[str | None, Field(max_length=128)] = None,
        text: Annotated[
            str | None, Field(max_length=200, description="words in the action or detail")
        ] = None,
        tag: Annotated[
            str | None, Field(max_length=32, description="only entries an operator tagged so")
        ] = None,
        since: When = None,
        until: When = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """The activity log, newest first: every engine event, command and its audit. Page
        with `cursor` = `next_cursor`."""
        page = await call(
            "GET",
            f"{ADMIN}/activity-log",
            params={
                "system": system,
                "result": result,
                "actor": actor,
                "q": text,
                "tag": tag,
                "since": _when(since),
                "until": _when(until),
                "limit": limit,
                "before": cursor,
            },
        )
        return {"events": page["events"], "count": page["count"], "next_cursor": page.get("next_before")}

    @server.tool(annotations=reading)
    async def audit_replay(
        since: Annotated[str, Field(max_length=40, description="start: ISO 8601 or relative (1h, 2d)")],
        until: When = None,
        system: Annotated[str | None, Field(max_length=64)] = None,
        actor: Annotated[str | None, Field(max_length=128)] = None,
        max_rows: Annotated[int, Field(ge=1, le=MAX_AUDIT_ROWS)] = 1000,
    ) -> dict[str, Any]:
        """The audit records (every command: who, what, target, reason, outcome; every
        annotation) of a time window, oldest first, from the gateway's log."""
        params = {
            "since": _when(since),
            "until": _when(until),
            "system": system,
            "actor": actor,
            "limit": 1000,
        }
        found: list[dict[str, Any]] = []
        before = None
        oldest = None
        while len(found) < max_rows:
            page = await call("GET", f"{ADMIN}/activity-log", params={**params, "before": before})
            oldest = page.get("oldest_seq_in_memory")
            found += [e for e in page["events"] if is_audit_record(e)]
            before = page.get("next_before")
            if before is None:
                break
        found = found[:max_rows]
        return {
            "records": list(reversed(found)),
            "count": len(found),
            "complete": before is None,
            "oldest_seq_in_memory": oldest,
            "note": "for events older than the gateway holds in memory, `aoc audit replay` reads the stream",
        }

    @server.tool(annotations=reading)
    async def soc_alerts(
        status: Literal["auto_resolved", "escalated", "escalated_to_human", "contained", "reviewed"]
        | None = None,
        decision: Literal["auto_resolve", "escalate", "contain"] | None = None,
        severity: Literal["informational", "low", "medium", "high", "critical"] | None = None,
        host: Annotated[str | None, Field(max_length=255)] = None,
        user: Annotated[str | None, Field(max_length=255)] = None,
        technique: Annotated[
            str | None, Field(max_length=16, description="MITRE ATT&CK id or prefix, e.g. T1110")
        ] = None,
        text: Annotated[str | None, Field(max_length=200)] = None,
        since: When = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """Triaged SOC alerts, newest first, with their decision and scores."""
        page = await call(
            "GET",
            "/api/v1/soc/alerts",
            params={
                "status": status,
                "decision": decision,
                "severity": severity,
                "host": host,
                "user": user,
                "technique": technique,
                "q": text,
                "since": _when(since),
                "limit": limit,
                "before": cursor,
            },
        )
        return {"alerts": page["alerts"], "count": page["count"], "next_cursor": page.get("next_before")}

    @server.tool(annotations=reading)
    async def soc_explain(alert_id: Annotated[str, Field(min_length=1, max_length=128)]) -> dict[str, Any]:
        """Why the SOC decided what it did about one alert: the decision, the model's
        scores and version, the reasons, any playbook run and analyst verdict."""
        alert = await call("GET", f"/api/v1/soc/alerts/{alert_id}")
        return {
            "alert_id": alert.get("id"),
            "title": alert.get("title"),
            "decision": alert.get("decision"),
            "status": alert.get("status"),
            "reasons": alert.get("reasons"),
            "scores": alert.get("scores"),
            "model_version": alert.get("model_version"),
            "decided_at": alert.get("decided_at"),
            "playbook": alert.get("playbook"),
            "feedback": alert.get("feedback"),
            "findings": alert.get("findings"),
            "alert": alert,
        }

    @server.tool(annotations=reading)
    async def advisories(
        priority: Literal["critical", "high", "medium", "low"] | None = None,
        known_exploited: bool | None = None,
        cve: Annotated[str | None, Field(max_length=30)] = None,
        product: Annotated[str | None, Field(max_length=200)] = None,
        text: Annotated[str | None, Field(max_length=200)] = None,
        min_cvss: Annotated[float | None, Field(ge=0, le=10)] = None,
        limit: Limit = 20,
    ) -> dict[str, Any]:
        """Threat advisories, most urgent first (known-exploited and high CVSS lead)."""
        page = await call(
            "GET",
            "/api/v1/advisories",
            params={
                "priority": priority,
                "known_exploited": known_exploited,
                "cve": cve,
                "product": product,
                "q": text,
                "min_cvss": min_cvss,
                "limit": limit,
            },
        )
        return {key: page.get(key) for key in ("advisories", "total", "count", "counts_by_priority")}

    @server.tool(annotations=reading)
    async def job_status(run_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_=-]{1,100}$")]) -> dict[str, Any]:
        """A triggered run that outlasted its reply: running, succeeded or failed, with its result."""
        return await call("GET", f"/api/v1/jobs/{run_id}")

    # --- changes ----------------------------------------------------------------------

    async def command(verb: str, system: str, reason: str, ctx: Context) -> dict[str, Any]:
        single, bulk = ENDPOINTS[verb]
        who = client_name(ctx)
        body = {"reason": reason}
        if system != ALL:
            return await call("POST", f"{ADMIN}/{single.format(system=system)}", body=body, client=who)
        if bulk is not None:
            return await call("POST", f"{ADMIN}/{bulk}", body=body, client=who)
        results = {}
        for slug in SYSTEMS:  # trigger all: one engine after the other, like `aoc trigger all`
            try:
                results[slug] = await api.call("POST", f"{ADMIN}/trigger/{slug}", body=body, client=who)
            except GatewayCallFailed as exc:
                results[slug] = {"ok": False, "message": str(exc)}
        return {"action": "trigger", "ok": all(r.get("ok") for r in results.values()), "results": results}

    def can_ask(ctx: Context) -> bool:
        capabilities = ctx.client_capabilities
        return capabilities is not None and capabilities.elicitation is not None

    async def confirm_kill_switch(
        system: str, reason: str, confirm: bool, ctx: Context
    ) -> Confirmation | Elicit[Confirmation]:
        if system != ALL or confirm:
            return Confirmation(confirm=True)
        if can_ask(ctx):  # the question is built from the arguments only: asked once per call
            return Elicit(
                f"Kill switch: stop all {len(SYSTEMS)} engines now? Reason: {reason[:200]}", Confirmation
            )
        return Confirmation(confirm=False)

    writing = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
    stopping = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

    @server.tool(annotations=writing)
    async def trigger(system: Target, reason: Reason, ctx: Context) -> dict[str, Any]:
        """Run one cycle of an engine now (or of every engine: `all`). Work longer than the
        reply budget answers `started` with a run id: follow it with `job_status`."""
        return await command("trigger", system, reason, ctx)

    @server.tool(annotations=stopping)
    async def stop(
        system: Target,
        reason: Reason,
        ctx: Context,
        confirmation: Annotated[ElicitationResult[Confirmation], Resolve(confirm_kill_switch)],
        confirm: Annotated[
            bool, Field(description="for `all` (the kill switch), when the client cannot be asked")
        ] = False,
    ) -> dict[str, Any]:
        """Stop an engine; it stays stopped across restarts until started. `all` is the
        kill switch: every engine stops, after a confirmation."""
        confirmed = isinstance(confirmation, AcceptedElicitation) and confirmation.data.confirm
        if system == ALL and not confirmed:
            if not can_ask(ctx):
                raise ToolError(
                    "the kill switch needs a confirmation and this client cannot be asked: "
                    "call stop again with confirm: true. Nothing was stopped."
                )
            raise ToolError(f"kill switch not confirmed ({confirmation.action}): nothing was stopped")
        return await command("stop", system, reason, ctx)

    @server.tool(annotations=writing)
    async def start(system: Target, reason: Reason, ctx: Context) -> dict[str, Any]:
        """Start an engine (or every engine: `all`, which lifts a kill switch)."""
        return await command("start", system, reason, ctx)

    @server.tool(annotations=writing)
    async def restart(system: Target, reason: Reason, ctx: Context) -> dict[str, Any]:
        """Restart an engine (or every engine: `all`)."""
        return await command("restart", system, reason, ctx)

    # --- resources --------------------------------------------------------------------

    @server.resource("aoc://activity-log", name="activity-log", mime_type="application/json")
    async def activity_log() -> str:
        """The newest 100 activity entries (engine events, commands and their audit)."""
        page = await api.call("GET", f"{ADMIN}/activity-log", params={"limit": 100})
        return json.dumps({"events": page["events"], "last_seq": page.get("last_seq")})

    @server.resource("aoc://stream-health", name="stream-health", mime_type="application/json")
    async def stream_health() -> str:
        """NATS, the AOC_EVENTS stream, the gateway's projection lag and every engine's heartbeat."""
        return json.dumps(await api.call("GET", "/health/details", accept=(503,)))

    return server


def serve_stdio() -> int:
    """`aoc mcp`: serve until the client closes stdin."""
    import anyio
    import structlog

    from services.launcher.cli import gateway_url

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is the protocol
    token = os.environ.get("AOC_TOKEN", "").strip()
    if not token:
        print(
            "aoc mcp: set AOC_TOKEN to an API token (a viewer token reads; operator/admin ones act). "
            "It is not taken from the local admin token file: an assistant gets only the access you give it.",
            file=sys.stderr,
        )
        return 1
    api = GatewayApi(gateway_url(Settings()), token)
    server = build_server(api)

    async def run() -> None:
        try:
            await server.run_stdio_async()
        finally:
            await api.close()

    anyio.run(run)
    return 0
