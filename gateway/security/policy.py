"""Who may call what: the minimum role per (HTTP method, route path template).

One table for the whole API, so route modules added by anyone are covered without
touching them. A route that is not listed gets the default: reads (GET, HEAD) need
viewer, anything else needs admin — a new mutating endpoint is closed until someone
decides who may use it.
"""

from __future__ import annotations

from typing import Final

from contracts.identity import Role

PUBLIC: Final = None  # no credentials needed
Access = Role | None

READ_METHODS = frozenset({"GET", "HEAD"})
SAFE_METHODS = READ_METHODS | {"OPTIONS"}

ADMIN_API = "/api/v1/admin"
FACTORY_API = "/api/v1/factory"
AUTH_API = "/api/v1/auth"
SOC_API = "/api/v1/soc"
ASK_API = "/api/v1/ask"
WEBHOOK_ALERTS = "/api/v1/webhooks/alerts/{source}"
STREAM = f"{ADMIN_API}/stream"
MCP = "/mcp"

RULES: dict[tuple[str, str], Access] = {
    # liveness for load balancers and `aoc up`: says up or down, nothing else
    ("GET", "/health"): PUBLIC,
    # Prometheus scrapers: guarded by the client-IP allowlist (AOC_METRICS_ALLOW) instead
    ("GET", "/metrics"): PUBLIC,
    # the dashboard shell: static HTML/JS/CSS; every byte of data it shows needs a token
    ("GET", "/"): PUBLIC,  # a redirect to /admin-ops
    ("GET", "/admin-ops"): PUBLIC,
    ("GET", "/admin-ops/factory"): PUBLIC,
    ("GET", "/static"): PUBLIC,  # the mount and everything under it
    # OpenAPI, only routed when AOC_DOCS=1 (an explicit choice to publish the API's shape)
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    # operators run the engines
    ("POST", f"{ADMIN_API}/trigger/{{system_name}}"): Role.OPERATOR,
    ("POST", f"{ADMIN_API}/start/{{name}}"): Role.OPERATOR,
    ("POST", f"{ADMIN_API}/restart/{{name}}"): Role.OPERATOR,
    ("POST", f"{FACTORY_API}/requirements"): Role.OPERATOR,
    ("POST", f"{FACTORY_API}/requirements/{{req_id}}/generate"): Role.OPERATOR,
    ("POST", f"{FACTORY_API}/generate-preview"): Role.OPERATOR,
    # tagging and commenting the log is triage work, audited as its own event
    ("POST", f"{ADMIN_API}/activity-log/{{entry_id}}/annotations"): Role.OPERATOR,
    # a question is a read (POST only for its body); answers show what a viewer may see
    ("POST", ASK_API): Role.VIEWER,
    # MCP over HTTP: every message is a POST; each tool calls the API's own route as the
    # caller, which checks the role and meters the change there (UNMETERED_ROUTES)
    ("POST", MCP): Role.VIEWER,
    ("DELETE", MCP): Role.VIEWER,
    # admins stop things and ship things (also the default for any other mutation)
    ("POST", f"{ADMIN_API}/emergency-stop/{{name}}"): Role.ADMIN,
    ("POST", f"{ADMIN_API}/emergency-stop-all"): Role.ADMIN,
    ("POST", f"{ADMIN_API}/start-all"): Role.ADMIN,  # undoes a kill switch: as strong as one
    ("POST", f"{ADMIN_API}/restart-all"): Role.ADMIN,
    ("POST", f"{FACTORY_API}/requirements/{{req_id}}/deploy"): Role.ADMIN,
    ("DELETE", f"{FACTORY_API}/requirements/{{req_id}}"): Role.ADMIN,
    # producers that push alerts authenticate by the HMAC signature of their source, which
    # the route checks itself before it parses anything (gateway/routes/webhooks.py); the
    # access check meters them per client address instead (SIGNED_ROUTES)
    ("POST", WEBHOOK_ALERTS): PUBLIC,
    # authentication itself
    # alert intake and analysts' verdicts are day-to-day SOC work, not administration
    ("POST", f"{SOC_API}/alerts"): Role.OPERATOR,
    ("POST", f"{SOC_API}/alerts/{{alert_id}}/feedback"): Role.OPERATOR,
    ("POST", f"{SOC_API}/feedback"): Role.OPERATOR,
    ("POST", f"{AUTH_API}/stream-ticket"): Role.VIEWER,  # a viewer may open the live stream
    ("GET", f"{AUTH_API}/tokens"): Role.ADMIN,  # a read, but of who holds access
    ("POST", f"{AUTH_API}/tokens"): Role.ADMIN,
    ("DELETE", f"{AUTH_API}/tokens/{{name}}"): Role.ADMIN,
}

# EventSource cannot send headers: these routes also accept a short-lived signed
# ?ticket= (POST /api/v1/auth/stream-ticket), which no other route accepts.
TICKET_ROUTES = frozenset({("GET", STREAM)})


# Routes with no bearer token that verify a per-source HMAC signature themselves; the
# access check rate-limits them per client address (AOC_WEBHOOK_RATE_LIMIT_*).
SIGNED_ROUTES = frozenset({("POST", WEBHOOK_ALERTS)})


# Non-GET routes that are not changes themselves: the access check does not meter them
# as one. `/mcp` carries reads and changes alike; a change it makes is a call to the
# API's own route, metered there under the caller's identity.
UNMETERED_ROUTES = frozenset({("POST", MCP), ("DELETE", MCP)})


def lookup_method(method: str) -> str:
    return "GET" if method == "HEAD" else method


def required_access(method: str, template: str | None) -> Access:
    """The minimum role for ``method`` on the route ``template`` (None: no route matched)."""
    method = lookup_method(method)
    if template is not None and (method, template) in RULES:
        return RULES[(method, template)]
    return Role.VIEWER if method in READ_METHODS else Role.ADMIN


def accepts_ticket(method: str, template: str | None) -> bool:
    return (lookup_method(method), template) in TICKET_ROUTES


def metered(method: str, template: str | None) -> bool:
    """Does this request count against the caller's rate limit of changes?"""
    return method not in SAFE_METHODS and (lookup_method(method), template) not in UNMETERED_ROUTES


def signed_route(method: str, template: str | None) -> bool:
    return (lookup_method(method), template) in SIGNED_ROUTES


def strictest(accesses: list[Access]) -> Access:
    """Of several requirements, the one that lets the fewest callers in."""
    roles = [access for access in accesses if access is not PUBLIC]
    return max(roles) if roles else PUBLIC
