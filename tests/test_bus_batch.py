"""WriteBatch: writes sent back to back, stored in order, confirmed together; a write
whose ack never comes is sent again and stored once (Nats-Msg-Id)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from nats.js.errors import BadRequestError, NoStreamResponseError

from contracts.events import LifecycleChanged, Summary, envelope_decoder, new_event
from contracts.settings import Settings
from contracts.streams import command_ids_bucket, ensure_all, events_stream
from services.runtime.bus import AckInbox, EventPublisher, WriteBatch


def lifecycle(n: int):
    return new_event(
        system="deploy",
        payload=LifecycleChanged(state="stopped", previous="running", desired="stopped", reason=f"r{n}"),
        summary=Summary(action="engine_stopped", detail=f"step {n}", result="success"),
        source="deploy",
        actor="tester",
    )


async def test_a_batch_is_stored_in_the_order_sent_kv_put_included(nc, settings: Settings):
    js = nc.jetstream()
    buckets = await ensure_all(js, settings)
    publisher = EventPublisher(js)
    batch = publisher.batch()
    events = [lifecycle(n) for n in range(5)]
    await batch.send(f"$KV.{command_ids_bucket(settings).bucket}.deploy.c1", b'{"handled":true}')
    for event in events:
        await batch.publish(event)
    acks = await batch.confirmed()

    assert len(acks) == 6
    stream = events_stream(settings).name
    seqs = [ack.seq for ack in acks[1:]]
    assert all(ack.stream == stream for ack in acks[1:]) and seqs == sorted(seqs)
    stored = [envelope_decoder.decode((await js.get_msg(stream, seq)).data).id for seq in seqs]
    assert stored == [event.id for event in events]
    assert [event.id for event, _ in publisher.published] == stored
    entry = await buckets["commands"].get("deploy.c1")
    assert msgspec.json.decode(entry.value) == {"handled": True}
    assert await batch.confirmed() == []  # confirmed writes are not confirmed twice


class AcksLost(AckInbox):
    """Writes that reach the stream but whose acks never come back: what a dropped reply
    looks like to the batch."""

    async def send(self, subject, payload, headers=None):
        await self._nc.jetstream().publish(subject, payload, headers=headers)
        return "lost", asyncio.get_running_loop().create_future()  # never resolved


async def test_a_lost_ack_is_sent_again_and_stored_once(nc, settings: Settings):
    js = nc.jetstream()
    await ensure_all(js, settings)
    batch = WriteBatch(js, AcksLost(nc), deadline=5.0)
    batch.ACK_WAIT = 0.2
    event = lifecycle(1)
    await batch.publish(event)
    (ack,) = await batch.confirmed()

    assert ack.duplicate  # the resend found the first copy by its Nats-Msg-Id
    info = await js.stream_info(events_stream(settings).name)
    copies = [
        seq
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
        if envelope_decoder.decode((await js.get_msg(info.config.name, seq)).data).id == event.id
    ]
    assert copies == [ack.seq]


async def test_the_ack_inbox_tells_stored_duplicate_refused_and_no_stream(nc, settings: Settings):
    js = nc.jetstream()
    await ensure_all(js, settings)
    inbox = AckInbox(nc)
    subject = "aoc.evt.deploy.lifecycle_changed"
    payload = msgspec.json.encode(lifecycle(1))
    _, first = await inbox.send(subject, payload, {"Nats-Msg-Id": "ack-inbox-1"})
    _, again = await inbox.send(subject, payload, {"Nats-Msg-Id": "ack-inbox-1"})
    # a fenced write against a sequence long gone: the stream refuses it, with its code
    _, stale = await inbox.send(subject, payload, {"Nats-Expected-Last-Subject-Sequence": "0"})
    _, nowhere = await inbox.send("no.stream.here", b"{}", None)
    stored, duplicate = await first, await again
    assert stored.stream == events_stream(settings).name and stored.seq > 0 and not stored.duplicate
    assert (duplicate.seq, duplicate.duplicate) == (stored.seq, True)
    with pytest.raises(BadRequestError) as refused:
        await stale
    assert refused.value.err_code == 10071
    with pytest.raises(NoStreamResponseError):
        await nowhere
