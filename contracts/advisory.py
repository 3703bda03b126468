"""The advisory contract between `advisory-refresh` (producer) and the SOC's threat
hunting (consumer): synthesized advisories live in the KV bucket ``aoc_advisories``,
one key per advisory id, the value an ``Advisory`` as JSON. The producer owns the
rest of its contract here (feeds, events); the fields below are what consumers rely on.

- ``aoc_advisories``: key = advisory id (the CVE id when there is one), value ``Advisory``.
  A consumer that wants changes as they happen watches the bucket.
- ``aoc_advisory_feeds``: key = feed name, value ``FeedState`` (health, HTTP validators,
  watermark). heal-check reads it for advisory freshness; the gateway for
  ``GET /api/v1/advisories/feeds``.
- Events on ``aoc.evt.advisory-refresh.<type>``: ``advisory_published`` (a new or changed
  advisory) and ``feed_health_changed`` (a feed started or stopped failing).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from contracts.settings import Settings
from contracts.streams import ensure_bucket

ADVISORIES_BUCKET = "aoc_advisories"
FEEDS_BUCKET = "aoc_advisory_feeds"

PRIORITIES = ("critical", "high", "medium", "low")  # most urgent first
FEED_FORMATS = ("cisa_kev", "nvd_cve", "stix", "rss")  # rss covers RSS 2.0, RSS 1.0 and Atom


class Ioc(msgspec.Struct, frozen=True):
    type: str  # ip | domain | url | sha256 | md5 | cve | process
    value: str


class FeedItem(msgspec.Struct, kw_only=True):
    """One feed entry, normalized by advisory-refresh's parsers. An advisory keeps the
    items it was synthesized from as its evidence, so it can be re-derived (new asset
    inventory, a feed revising a score) and an analyst can see why it is ranked so."""

    key: str  # unique within its feed
    format: str = ""  # the feed format that produced it (one of FEED_FORMATS)
    title: str
    cves: list[str] = []
    description: str = ""
    published: datetime | None = None
    updated: datetime | None = None  # drives the feed's watermark
    cvss: float | None = None
    known_exploited: bool = False
    vendor: str = ""
    product: str = ""
    cpes: list[tuple[str, str]] = []  # (vendor, product) from CPE 2.3 names
    kev_due_date: str | None = None
    kev_required_action: str = ""
    ransomware_use: bool = False
    iocs: list[Ioc] = []
    threat_actors: list[str] = []
    references: list[str] = []
    text: str = ""  # free text an inventory may match product names in (RSS)


class Advisory(msgspec.Struct, kw_only=True):
    id: str  # stable: the CVE id when there is one (dedupe key)
    title: str
    priority: str  # critical | high | medium | low
    known_exploited: bool = False
    cvss: float | None = None
    cves: list[str] = []
    products: list[str] = []  # affected products ("Vendor Product"), matched against the asset inventory
    recommended_action: str = ""
    iocs: list[Ioc] = []
    sources: list[str] = []  # names of the feeds that mentioned it
    published: datetime | None = None
    updated: datetime | None = None
    # --- added by issue #5; consumers may ignore them --------------------------------
    affected_assets: list[str] = []  # inventory asset ids running an affected product
    description: str = ""
    references: list[str] = []
    kev_due_date: str | None = None  # CISA's remediation due date (YYYY-MM-DD)
    kev_required_action: str = ""
    ransomware_use: bool = False  # CISA: known to be used in ransomware campaigns
    threat_actors: list[str] = []  # campaigns / intrusion sets / malware named by intel feeds
    first_seen: datetime | None = None  # when advisory-refresh first wrote it
    evidence: dict[str, FeedItem] = {}  # "<feed>:<item key>" -> the item it came from


class FeedState(msgspec.Struct, kw_only=True):
    """One feed's health and what makes its next refresh incremental."""

    name: str
    format: str
    source: str  # the URL or file path, as configured
    schedule_seconds: float
    status: str = "pending"  # pending | ok | not_modified | failing
    last_fetch: datetime | None = None  # last attempt, successful or not
    last_success: datetime | None = None  # last fetch that got the feed (200 or 304)
    last_error: str | None = None
    consecutive_failures: int = 0
    item_count: int = 0  # items in the feed at its last successful parse
    new_items: int = 0  # items at or past the watermark in the last refresh
    # incremental refresh
    etag: str | None = None
    last_modified: str | None = None
    content_sha256: str | None = None  # file feeds (and servers with no validators)
    watermark: datetime | None = None  # newest item time processed


class AdvisoryPublished(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "advisory_published"
    advisory_id: str
    change: str  # new | updated
    priority: str
    previous_priority: str | None = None
    known_exploited: bool = False
    cvss: float | None = None
    affected_assets: list[str] = []
    sources: list[str] = []


class FeedHealthChanged(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "feed_health_changed"
    feed: str
    status: str
    previous: str
    error: str | None = None


def advisories_bucket(settings: Settings) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=ADVISORIES_BUCKET,
        description="Synthesized threat advisories (advisory-refresh), key = advisory id",
        history=5,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )


def feeds_bucket(settings: Settings) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=FEEDS_BUCKET,
        description="Threat-intel feed health and incremental-refresh state, key = feed name",
        history=1,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )


async def ensure_advisory_buckets(js: JetStreamContext, settings: Settings) -> tuple[KeyValue, KeyValue]:
    """Both buckets, created with these configs by whoever comes first (engine, gateway, SOC)."""
    advisories = await ensure_bucket(js, advisories_bucket(settings))
    feeds = await ensure_bucket(js, feeds_bucket(settings))
    return advisories, feeds


advisory_decoder = msgspec.json.Decoder(Advisory)
feed_state_decoder = msgspec.json.Decoder(FeedState)
