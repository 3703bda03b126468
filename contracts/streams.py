"""Stream and KV definitions and their idempotent ``ensure``. Every service that needs
one calls ``ensure_all`` at start with the same definitions, so there is exactly one
config no matter who creates it first."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from contracts import subjects
from contracts.settings import Settings

DAY = 86_400.0


def events_stream(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=subjects.EVENTS_STREAM,
        description="AOC events: lifecycle, activity, command audit (the source of truth)",
        subjects=[subjects.EVENTS_SUBJECTS],
        storage=StorageType.FILE,
        max_age=settings.retention_days * DAY,
        max_bytes=settings.stream_max_bytes,
        discard=DiscardPolicy.OLD,
        duplicate_window=settings.duplicate_window_s,
        allow_direct=True,
        deny_purge=True,
        num_replicas=settings.stream_replicas,
    )


def audit_stream(settings: Settings) -> StreamConfig:
    """AOC_AUDIT: a copy of every audit record of AOC_EVENTS, made by the server.

    AOC_EVENTS drops its oldest events when it is full (``discard: old``): load could push
    admin stop/start records out before their retention. This stream keeps them for the
    retention age: it *sources* only the audit subjects, has its own byte cap and
    ``discard: new`` (when full it refuses new copies rather than drop old records; the
    gateway alerts well before that, docs/security.md). AOC_EVENTS stays the one ordered
    log the gateway reads; ``aoc audit replay`` reads the copies of whatever AOC_EVENTS
    evicted. Each copy carries ``Nats-Stream-Source: AOC_EVENTS <seq> ...``."""
    wildcard = "{{wildcard(1)}}"
    transforms = [
        SubjectTransform(src=subjects.evt("*", kind), dest=subjects.evt(wildcard, kind))
        for kind in subjects.AUDIT_EVENT_TYPES
    ]
    transforms.append(
        SubjectTransform(src=subjects.GATEWAY_AUDIT_SUBJECT, dest=subjects.GATEWAY_AUDIT_SUBJECT)
    )
    return StreamConfig(
        name=subjects.AUDIT_STREAM,
        description="AOC audit records (sourced from AOC_EVENTS), kept for the retention age",
        subjects=[],
        sources=[StreamSource(name=subjects.EVENTS_STREAM, subject_transforms=transforms)],
        storage=StorageType.FILE,
        max_age=settings.retention_days * DAY,
        max_bytes=settings.audit_max_bytes,
        discard=DiscardPolicy.NEW,
        allow_direct=True,
        deny_purge=True,
        num_replicas=settings.stream_replicas,
    )


def heartbeats_stream(settings: Settings) -> StreamConfig:
    # Only the latest heartbeat per engine matters: a restarted gateway reads one per
    # subject and knows every engine's last snapshot and when it was sent.
    return StreamConfig(
        name=subjects.HEARTBEATS_STREAM,
        description="AOC engine heartbeats, last one per engine",
        subjects=[subjects.HEARTBEATS_SUBJECTS],
        storage=StorageType.FILE,
        max_msgs_per_subject=1,
        max_age=DAY,
        discard=DiscardPolicy.OLD,
        allow_direct=True,
        num_replicas=settings.stream_replicas,
    )


def command_ids_bucket(settings: Settings) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=subjects.COMMAND_IDS_BUCKET,
        description="Command ids already handled, per engine (dedup)",
        history=1,
        ttl=settings.duplicate_window_s,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )


def leases_bucket(settings: Settings) -> KeyValueConfig:
    # the bucket's max age is the lease time: a holder that stops renewing loses its key
    return KeyValueConfig(
        bucket=subjects.LEASES_BUCKET,
        description="Which instance of each engine is active (lease with TTL; revision = epoch)",
        history=1,
        ttl=settings.lease_ttl,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
        # reads from the leader only: a replica that was cut off answers with a stale holder
        direct=False,
    )


ASK_CACHE_TTL_S = 3600.0


def ask_cache_bucket(settings: Settings) -> KeyValueConfig:
    # the gateway creates it on first use, and only when AOC_AI_FEATURES_ENABLED is on
    return KeyValueConfig(
        bucket=subjects.ASK_CACHE_BUCKET,
        description="Answers of the natural-language ask endpoint (cache; rebuilt on a miss)",
        history=1,
        ttl=ASK_CACHE_TTL_S,
        max_bytes=64 * 1024 * 1024,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )


STREAM_NAME_IN_USE = 10058  # JetStream: "stream name already in use with a different configuration"


async def ensure_stream(js: JetStreamContext, config: StreamConfig, *, converge: bool = False) -> None:
    """Create the stream if it is missing. One that exists with another config (retention
    changed; a server that normalised a sourced stream's config) is converged on ours only
    by its owner (``converge``: the gateway, which alone may update streams); everyone else
    uses it as it is."""
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if converge:
            await js.update_stream(config)
        elif exc.err_code != STREAM_NAME_IN_USE:
            raise


async def ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    try:
        return await js.key_value(config.bucket)
    except (BucketNotFoundError, NotFoundError):
        try:
            return await js.create_key_value(config)
        except BadRequestError:
            # created concurrently by another service
            return await js.key_value(config.bucket)


async def ensure_all(
    js: JetStreamContext, settings: Settings, *, converge: bool = False
) -> dict[str, KeyValue]:
    await asyncio.gather(
        ensure_stream(js, events_stream(settings), converge=converge),
        ensure_stream(js, heartbeats_stream(settings), converge=converge),
    )
    # it sources AOC_EVENTS: created after it
    await ensure_stream(js, audit_stream(settings), converge=converge)
    # (the desired state was a KV bucket before it became the newest lifecycle event)
    commands, leases = await asyncio.gather(
        ensure_bucket(js, command_ids_bucket(settings)), ensure_bucket(js, leases_bucket(settings))
    )
    return {"commands": commands, "leases": leases}
