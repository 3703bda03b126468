"""Read a slice of a stream once, fast: an ordered consumer with a callback (the
quickest read path, NATS-NOTES.md), stopped as soon as it has caught up.

Used by ml-retrain (analyst verdicts for training; its own evaluations) and by
soc-cycle (its own decisions, to rebuild state at start)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

REPLAY_TIMEOUT = 120.0


async def replay(
    js: JetStreamContext,
    subject: str,
    on_msg: Callable[[int, bytes, datetime], None],
    *,
    start_seq: int | None = None,
    start_time: datetime | None = None,
    until_seq: int | None = None,
    timeout: float = REPLAY_TIMEOUT,
) -> int:
    """Call ``on_msg(stream_seq, data, stored_at)`` for every message on ``subject``
    from ``start_seq`` / ``start_time`` (default: the start) up to ``until_seq`` (default:
    what is there now). Returns the number of messages read."""
    if start_seq is not None and until_seq is not None and start_seq > until_seq:
        return 0
    if start_seq is not None and start_seq > 1:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
    elif start_time is not None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start_time)
    else:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    done = asyncio.Event()
    count = 0

    async def on_message(msg: Msg) -> None:
        nonlocal count
        if done.is_set():
            return
        meta = msg.metadata
        seq = meta.sequence.stream
        if until_seq is not None and seq > until_seq:
            done.set()
            return
        on_msg(seq, msg.data, meta.timestamp)
        count += 1
        if meta.num_pending == 0 or (until_seq is not None and seq >= until_seq):
            done.set()

    sub = await js.subscribe(subject, ordered_consumer=True, cb=on_message, config=config)
    try:
        info = await sub.consumer_info()
        if info.num_pending == 0 and (info.delivered is None or not info.delivered.consumer_seq):
            return 0  # nothing on this subject in range
        async with asyncio.timeout(timeout):
            await done.wait()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return count
