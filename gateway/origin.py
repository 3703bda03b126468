"""The origin a command is audited with, decided by the gateway from the connection:
``http`` for every caller of the HTTP API, ``mcp:<client>`` for `aoc mcp`'s calls
(contracts/origin.py)."""

from __future__ import annotations

from fastapi import Request

from contracts.origin import MCP_CLIENT_HEADER, mcp_origin


def request_origin(request: Request) -> str:
    client = request.headers.get(MCP_CLIENT_HEADER)
    return "http" if client is None else mcp_origin(client)
