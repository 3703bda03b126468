"""The object store where read models keep their snapshots (and its idempotent ensure).

A snapshot is one object per reader (the gateway's: ``gateway-readmodels``); the store
keeps only the newest version of each name. What is inside is the reader's business
(gateway/readmodels/snapshot.py); losing the store costs one full replay, never data.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

from contracts.settings import Settings

SNAPSHOTS_BUCKET = "aoc_snapshots"
GATEWAY_SNAPSHOT = "gateway-readmodels"


def snapshots_store(settings: Settings) -> ObjectStoreConfig:
    return ObjectStoreConfig(
        bucket=SNAPSHOTS_BUCKET,
        description="Read-model snapshots with their stream sequences (a cache: rebuilt by a full replay)",
        storage=StorageType.FILE,
        max_bytes=settings.snapshot_store_max_bytes,
        replicas=settings.stream_replicas,
    )


async def ensure_snapshots_store(js: JetStreamContext, settings: Settings) -> ObjectStore:
    try:
        return await js.object_store(SNAPSHOTS_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        try:
            return await js.create_object_store(SNAPSHOTS_BUCKET, config=snapshots_store(settings))
        except BadRequestError:  # created concurrently
            return await js.object_store(SNAPSHOTS_BUCKET)
