"""The threat advisories and the health of their feeds, mirrored from the KV buckets
``aoc_advisories`` and ``aoc_advisory_feeds`` (contracts/advisory.py) (pure).

A KV bucket is a stream with one subject per key (``$KV.<bucket>.<key>``); its sources
read the newest message of each (gateway/readmodels/feed.py ``KeyedSource``), and a
delete or purge is a message with no body. A bucket's state is its keys, not a history:
there is nothing to snapshot, and a restart reads the keys again.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog

from contracts.advisory import advisory_decoder, feed_state_decoder
from gateway.readmodels.base import Fed

log = structlog.get_logger()


class KvMirror:
    """One bucket's values by key."""

    def __init__(self, name: str, bucket: str, decoder: msgspec.json.Decoder) -> None:
        self.name = name
        self.bucket = bucket
        self.subject = f"$KV.{bucket}.>"
        self.stream = f"KV_{bucket}"
        self._prefix = len(f"$KV.{bucket}.")
        self.decoder = decoder
        self.values: dict[str, Any] = {}

    def apply(self, seq: int, subject: str, data: bytes) -> None:
        key = subject[self._prefix :]
        if not data:  # a delete or purge marker
            self.values.pop(key, None)
            return
        try:
            self.values[key] = self.decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("kv_mirror.undecodable", mirror=self.name, key=key[:200])


class AdvisoriesView(Fed):
    """Both mirrors; ``ready`` and ``lag`` from their sources."""

    name = "advisories"

    def __init__(self, advisories_bucket: str, feeds_bucket: str) -> None:
        super().__init__()
        self.advisories = KvMirror("advisories", advisories_bucket, advisory_decoder)
        self.feeds = KvMirror("advisory_feeds", feeds_bucket, feed_state_decoder)
