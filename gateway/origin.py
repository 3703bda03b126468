"""The origin a command is audited with, decided by the gateway from the connection.

``http`` for every caller of the HTTP API, except a program that says it relays for an
MCP client (`aoc mcp` sends ``Aoc-Mcp-Client: <the name from the MCP initialize
request>``): then ``mcp:<name>``, the name reduced to at most 48 of ``a-z 0-9 . _ -``.
The header names a program, not a person: who acted is always the authenticated token's
identity (the actor); the origin only says through which client, like a User-Agent.
"""

from __future__ import annotations

import re

from fastapi import Request

MCP_CLIENT_HEADER = "Aoc-Mcp-Client"
MAX_CLIENT_NAME = 48
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def mcp_client_name(raw: str) -> str:
    """A client's self-declared name, bounded and reduced to a safe charset."""
    name = _UNSAFE.sub("-", raw[: MAX_CLIENT_NAME * 4].strip().lower()).strip("-.")
    return name[:MAX_CLIENT_NAME].rstrip("-.") or "unknown"


def request_origin(request: Request) -> str:
    client = request.headers.get(MCP_CLIENT_HEADER)
    return "http" if client is None else f"mcp:{mcp_client_name(client)}"
