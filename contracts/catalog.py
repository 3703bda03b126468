"""The event catalog: every event type on AOC_EVENTS, with its payload struct and version.

A payload struct declares ``TYPE`` (the past-tense type name) and may declare
``VERSION`` (default 1) and ``UPCASTERS`` (``{old_version: function(dict) -> dict}``,
each lifting a payload one version up). ``Envelope.payload()`` decodes any event
through ``decode_payload``: an event written by older code is upcast step by step to
the current struct, so readers only ever see the newest shape. An event type that is
not in the catalog (written by newer code) decodes to a plain dict.

The catalog is collected from every module of the ``contracts`` package, so a new event
type is in it as soon as its struct is defined there.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec


def contract_modules() -> tuple[str, ...]:
    """Every module of the contracts package (subpackages included)."""
    import contracts

    names = [info.name for info in pkgutil.walk_packages(contracts.__path__, prefix="contracts.")]
    return tuple(name for name in names if name not in ("contracts.catalog", "contracts.settings_doc"))


# extra modules (tests add theirs); the contracts package is always searched
EVENT_MODULES: tuple[str, ...] = ()

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    payload: type[msgspec.Struct]
    version: int
    upcasters: dict[int, Upcaster]
    module: str

    def decode(self, data: bytes, version: int) -> msgspec.Struct:
        if version >= self.version or not self.upcasters:
            return msgspec.json.decode(data, type=self.payload)
        raw = msgspec.json.decode(data)
        for step in range(version, self.version):
            upcast = self.upcasters.get(step)
            if upcast is not None:
                raw = upcast(raw)
        return msgspec.convert(raw, self.payload)


def payload_classes(module: Any) -> list[type[msgspec.Struct]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and isinstance(value.__dict__.get("TYPE"), str)
    ]


@cache
def catalog() -> dict[str, EventType]:
    found: dict[str, EventType] = {}
    for module_name in (*contract_modules(), *EVENT_MODULES):
        module = importlib.import_module(module_name)
        for cls in payload_classes(module):
            name = cls.TYPE  # type: ignore[attr-defined]
            if cls.__module__ != module.__name__:
                continue  # re-exported from another contract module: counted there
            if name in found and found[name].payload is not cls:
                raise RuntimeError(
                    f"event type {name!r} is defined twice: {found[name].module}, {module_name}"
                )
            found[name] = EventType(
                name=name,
                payload=cls,
                version=getattr(cls, "VERSION", 1),
                upcasters=dict(getattr(cls, "UPCASTERS", {})),
                module=module_name,
            )
    return found


def event_type(name: str) -> EventType | None:
    return catalog().get(name)


def version_of(payload: msgspec.Struct) -> int:
    return getattr(type(payload), "VERSION", 1)


def decode_payload(name: str, data: bytes, version: int) -> Any:
    """The typed payload of an event, upcast to the current version; a dict for a type
    this code does not know."""
    kind = event_type(name)
    if kind is None:
        return msgspec.json.decode(data)
    return kind.decode(data, version)
