"""The event catalog knows every event type the contracts define, decodes each through
``Envelope.payload()``, and upcasts an old payload to the current struct."""

from __future__ import annotations

import importlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest

from contracts import catalog
from contracts.events import Envelope, LifecycleChanged, Summary, new_event

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def test_every_type_declared_in_the_contracts_is_in_the_catalog():
    declared = set()
    for path in CONTRACTS.rglob("*.py"):
        declared |= set(re.findall(r'TYPE: ClassVar\[str\] = "([a-z_]+)"', path.read_text()))
    known = set(catalog.catalog())
    assert declared <= known, f"not in the catalog: {sorted(declared - known)}"
    assert len(known) >= 29


@pytest.mark.parametrize("name", sorted(catalog.catalog()))
def test_each_type_decodes_through_the_envelope(name):
    kind = catalog.event_type(name)
    assert kind is not None and name == kind.payload.TYPE  # type: ignore[attr-defined]
    # a payload whose required fields we cannot invent is still typed: decoding {} fails
    # with a validation error naming the type's fields, not with "unknown type"
    envelope = Envelope(
        id="e1",
        source="test",
        type=name,
        system="test",
        time=datetime.now(UTC),
        summary=Summary(action="x"),
        data=msgspec.Raw(b"{}"),
    )
    try:
        payload = envelope.payload()
    except msgspec.ValidationError:
        return
    assert isinstance(payload, kind.payload)


def test_an_unknown_type_decodes_to_a_dict():
    event = new_event(
        system="x",
        payload=LifecycleChanged(state="running", previous="stopped", desired="running"),
        summary=Summary(action="a"),
    )
    event.type = "from_the_future"
    assert event.payload() == {
        "state": "running",
        "previous": "stopped",
        "desired": "running",
        "reason": "",
        "command_id": None,
        "command": None,
    }


class ThingMoved(msgspec.Struct, kw_only=True):
    """A versioned test type: v1 had ``where``; v2 split it into ``city`` and ``street``."""

    TYPE: ClassVar[str] = "thing_moved"
    VERSION: ClassVar[int] = 2
    UPCASTERS: ClassVar[dict] = {
        1: lambda raw: {"city": raw["where"].split(",")[0], "street": raw["where"].split(",")[1].strip()}
    }
    city: str
    street: str


def test_an_old_payload_is_upcast_to_the_current_version(monkeypatch):
    module = importlib.import_module(__name__)
    monkeypatch.setattr(catalog, "EVENT_MODULES", (*catalog.EVENT_MODULES, module.__name__))
    catalog.catalog.cache_clear()
    try:
        current = new_event(
            system="x", payload=ThingMoved(city="Oslo", street="Storgata"), summary=Summary(action="a")
        )
        assert current.schema_version == 2 and current.payload() == ThingMoved(city="Oslo", street="Storgata")
        old = msgspec.structs.replace(
            current, schema_version=1, data=msgspec.Raw(b'{"where": "Oslo, Storgata"}')
        )
        assert old.payload() == ThingMoved(city="Oslo", street="Storgata")
    finally:
        catalog.catalog.cache_clear()
