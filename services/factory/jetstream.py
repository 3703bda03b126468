"""Two JetStream/asyncio helpers the three engines of the factory line share.

(They would sit well in services/runtime/; they live here until the runtime takes them.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import subjects


async def replay(
    js: JetStreamContext,
    subject: str,
    apply: Callable[[int, bytes], object],
    *,
    start_seq: int = 1,
    timeout: float = 60.0,
) -> int:
    """Feed every stored event on ``subject`` to ``apply(seq, data)``, in order, then stop.

    An ordered consumer with a callback (the fast read path, NATS-NOTES.md); done when
    a message says nothing is pending, or at once when the consumer has nothing to send.
    """
    done = asyncio.Event()
    applied = 0

    async def on_msg(msg: Any) -> None:
        nonlocal applied
        apply(msg.metadata.sequence.stream, msg.data)
        applied += 1
        if msg.metadata.num_pending == 0:
            done.set()

    sub = await js.subscribe(
        subject,
        stream=subjects.EVENTS_STREAM,
        ordered_consumer=True,
        cb=on_msg,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
        if start_seq > 1
        else ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        async with asyncio.timeout(timeout):
            while not done.is_set():
                info = await sub.consumer_info()
                if info.num_pending == 0 and info.delivered.consumer_seq <= applied:
                    break  # nothing (more) to deliver
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await done.wait()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return applied


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background loop and wait until it has ended.

    Cancel again until it does: on Python 3.11, ``asyncio.wait_for`` inside nats-py's
    ``fetch`` can swallow a cancellation and raise TimeoutError instead, which a fetch
    loop reads as "nothing yet" and carries on (the loops also check a stop flag)."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
