"""The rules natscli applies to NATS micro replies before it lists a service.

natscli (``nats micro ls / info / stats / ping``) parses every reply with jsm.go's
``api.ParseAndValidateMessage`` against the JSON schemas ``io.nats.micro.v1.*_response``
(github.com/nats-io/jsm.go, ``schemas/micro/v1/``); a reply that fails is dropped or makes
the command fail. These are the same rules, restated for ``jsonschema`` (draft 7). Where
schema versions differ, the stricter rule is kept: an endpoint's ``data`` must be an
object when present (older natscli refuses ``null``, see NATS-NOTES.md).
"""

from __future__ import annotations

from typing import Any

SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
NAME = {"type": "string", "pattern": r"^[a-zA-Z0-9_-]+$", "minLength": 1}
METADATA = {"oneOf": [{"type": "object", "additionalProperties": {"type": "string"}}, {"type": "null"}]}
INT64 = {"type": "integer", "minimum": -(2**63 - 1), "maximum": 2**63 - 1}


def _identity(kind: str, *required: str) -> dict[str, Any]:
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"io.nats.micro.v1.{kind}_response",
        "type": "object",
        "required": ["type", "name", "id", "version", *required],
        "properties": {
            "type": {"type": "string", "const": f"io.nats.micro.v1.{kind}_response"},
            "name": NAME,
            "id": {"type": "string", "minLength": 1},
            "version": {"type": "string", "pattern": SEMVER, "minLength": 5},
            "metadata": METADATA,
        },
    }


PING = _identity("ping")

INFO = _identity("info", "description")
INFO["properties"] |= {
    "description": {"type": "string"},
    "endpoints": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "subject"],
            "properties": {
                "name": NAME,
                "subject": {"type": "string", "minLength": 1},
                "metadata": METADATA,
                "queue_group": {"type": "string"},
            },
        },
    },
}

STATS = _identity("stats", "started", "endpoints")
STATS["properties"] |= {
    "started": {"type": "string", "format": "date-time"},
    "endpoints": {
        "type": "array",
        "items": {
            "type": "object",
            "required": [
                "name",
                "subject",
                "num_requests",
                "num_errors",
                "last_error",
                "processing_time",
                "average_processing_time",
            ],
            "properties": {
                "name": NAME,
                "subject": {"type": "string", "minLength": 1},
                "num_requests": INT64,
                "num_errors": INT64,
                "last_error": {"type": "string"},
                "processing_time": INT64,
                "average_processing_time": INT64,
                "queue_group": {"type": "string"},
                "data": {"type": "object"},
            },
        },
    },
}

BY_VERB = {"PING": PING, "INFO": INFO, "STATS": STATS}
