"""Where the factory line meets: the three engines' slugs, the input work queue, the
request/reply subjects of the factory and the gateway, and the headers a submission
may carry. ``ensure_factory_streams`` is the one idempotent I/O a contract may do."""

from __future__ import annotations

import re

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from contracts.settings import Settings
from contracts.streams import DAY, ensure_stream

FACTORY = "frontend-factory"
INTEGRITY = "integrity-scan"
DEPLOY = "deploy"

INPUT_STREAM = "AOC_FACTORY_INPUT"
INPUT_SUBJECTS = "aoc.in.factory.>"
SUBMIT_SUBJECT = "aoc.in.factory.requirements"
INTAKE_CONSUMER = "frontend-factory-intake"

# core NATS request/reply, answered by the factory engine (never inside a stream)
REQUEST_PREFIX = "aoc.factory"
REQUEST_VERBS = ("generate", "deploy", "cancel", "preview")
# answered by the gateway: the API routes it serves (the integrity scan's inventory)
GATEWAY_ROUTES = "aoc.gateway.routes"

DEPLOY_CONSUMER = "deploy-watch"

# headers a submission may carry (the gateway sets them; `nats pub` may)
REQUIREMENT_ID_HEADER = "Aoc-Requirement-Id"
ACTOR_HEADER = "Aoc-Actor"
ORIGIN_HEADER = "Aoc-Origin"
CORRELATION_HEADER = "X-Correlation-ID"

REQUIREMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def request_subject(verb: str) -> str:
    return f"{REQUEST_PREFIX}.{verb}"


def input_stream(settings: Settings) -> StreamConfig:
    # A work queue: a submission is removed once the factory acked it (its record is
    # then the requirement_submitted event). While the factory is stopped, submissions
    # wait here, durably.
    return StreamConfig(
        name=INPUT_STREAM,
        description="Page requirements waiting for the frontend factory",
        subjects=[INPUT_SUBJECTS],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=7 * DAY,
        max_msgs=100_000,
        max_msg_size=256 * 1024,
        discard=DiscardPolicy.NEW,  # refuse new input rather than drop queued input
        duplicate_window=settings.duplicate_window_s,
        num_replicas=settings.stream_replicas,
    )


async def ensure_factory_streams(js: JetStreamContext, settings: Settings) -> None:
    await ensure_stream(js, input_stream(settings))
