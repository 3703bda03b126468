"""What natscli does when it lists, inspects and pings NATS micro services, in nats-py.

natscli's ``doReqAsync`` (used by ``nats micro ls / info / stats``) publishes one request
and collects replies with an *adaptive* timeout: the first reply may take up to the
timeout, after that it stops 300 ms after the last reply. ``nats micro ping`` waits the
whole timeout. Each reply is validated against the ``io.nats.micro.v1`` schemas
(tests/cluster/micro_schemas.py) before it is shown.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jsonschema
from nats.aio.client import Client
from nats.aio.msg import Msg

from tests.cluster.micro_schemas import BY_VERB

GAP = 0.3  # natscli: stop collecting this long after the last reply


async def collect(
    nc: Client, subject: str, *, timeout: float = 5.0, adaptive: bool = True, expect: int | None = None
) -> list[dict]:
    """Replies to one request on ``subject``, collected as natscli does; ``expect`` = its
    ``waitFor`` (stop at that many replies, as `nats micro info` does with 1)."""
    replies: list[dict] = []
    last = asyncio.Event()
    arrived = time.monotonic()

    async def on_reply(msg: Msg) -> None:
        nonlocal arrived
        if msg.headers and msg.headers.get("Status") == "503":
            return  # no responders
        replies.append(json.loads(msg.data))
        arrived = time.monotonic()
        last.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_reply)
    await nc.publish(subject, b"{}", reply=inbox)  # natscli sends "{}"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if adaptive and replies and time.monotonic() - arrived >= GAP:
                break
            if expect is not None and len(replies) >= expect:
                break
            await asyncio.sleep(0.02)
    finally:
        await sub.unsubscribe()
    return replies


def schema_errors(verb: str, reply: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(BY_VERB[verb], format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(reply)]
