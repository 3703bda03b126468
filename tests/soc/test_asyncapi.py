"""docs/asyncapi.json is generated from the FastStream subscribers the SOC runs
(scripts/asyncapi.py) and must be current; its references resolve and its payloads are
the contracts'."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from contracts import soc

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.json"


def test_the_checked_in_document_is_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "asyncapi.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr + "\nregenerate it: .venv/bin/python scripts/asyncapi.py"


def _refs(node, found):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.append(value)
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)
    return found


def _resolve(document, ref: str):
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_document_describes_the_intake_with_the_contract_payloads():
    document = json.loads(DOCUMENT.read_text())
    assert document["asyncapi"] == "3.0.0"
    for ref in _refs(document, []):
        _resolve(document, ref)  # KeyError if a reference points nowhere
    addresses = {channel["address"]: name for name, channel in document["channels"].items()}
    assert set(addresses) == {soc.ALERT_INTAKE, soc.ALERT_FORMAT_INTAKE, soc.FEEDBACK_INTAKE}
    for name in addresses.values():
        channel = document["channels"][name]
        assert channel["bindings"]["nats"]["queue"] == "aoc-soc-intake"
        operation = document["operations"][name]
        assert operation["action"] == "receive" and operation["reply"]["messages"]
        reply = _resolve(document, operation["reply"]["messages"][0]["$ref"])
        assert reply["payload"] == {"$ref": "#/components/schemas/IntakeReply"}
    schemas = document["components"]["schemas"]
    assert set(schemas["Alert"]["properties"]) == set(soc.Alert.__struct_fields__)
    assert {"rejected", "format", "accepted"} <= set(schemas["IntakeReply"]["properties"])
    assert "EmptyPayload" not in schemas
