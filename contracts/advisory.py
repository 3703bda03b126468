"""The advisory contract between `advisory-refresh` (producer) and the SOC's threat
hunting (consumer): synthesized advisories live in the KV bucket ``aoc_advisories``,
one key per advisory id, the value an ``Advisory`` as JSON. The producer owns the
rest of its contract here (feeds, events); the fields below are what consumers rely on."""

from __future__ import annotations

from datetime import datetime

import msgspec

ADVISORIES_BUCKET = "aoc_advisories"


class Ioc(msgspec.Struct, frozen=True):
    type: str  # ip | domain | url | sha256 | md5 | cve | process
    value: str


class Advisory(msgspec.Struct, kw_only=True):
    id: str  # stable: the CVE id when there is one (dedupe key)
    title: str
    priority: str  # critical | high | medium | low
    known_exploited: bool = False
    cvss: float | None = None
    cves: list[str] = []
    products: list[str] = []  # matched against the asset inventory
    recommended_action: str = ""
    iocs: list[Ioc] = []
    sources: list[str] = []
    published: datetime | None = None
    updated: datetime | None = None
