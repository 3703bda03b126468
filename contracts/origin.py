"""Where a command came from, as the audit log records it (``origin``): ``nats``, ``all``
(a broadcast subject), ``http``, ``cli``, or ``mcp:<client>`` — the MCP server (`aoc mcp`)
names the MCP client it relays for in the ``Aoc-Mcp-Client`` header, and the gateway
records ``mcp:<name>`` with the name reduced to at most 48 of ``a-z 0-9 . _ -``. The
header names a program, not a person: who acted is always the authenticated identity.
Engines accept such an origin only from the four-token subject only the gateway may use
(services/runtime/control.py)."""

from __future__ import annotations

import re

MCP_CLIENT_HEADER = "Aoc-Mcp-Client"
MAX_CLIENT_NAME = 48
MCP_ORIGIN = re.compile(rf"mcp:[a-z0-9._-]{{1,{MAX_CLIENT_NAME}}}")
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def mcp_client_name(raw: str) -> str:
    """A client's self-declared name, bounded and reduced to a safe charset."""
    name = _UNSAFE.sub("-", raw[: MAX_CLIENT_NAME * 4].strip().lower()).strip("-.")
    return name[:MAX_CLIENT_NAME].rstrip("-.") or "unknown"


def mcp_origin(raw_client: str) -> str:
    return f"mcp:{mcp_client_name(raw_client)}"
