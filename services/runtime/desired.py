"""The durable desired state of an engine (running | stopped): the newest
``lifecycle_changed`` event of that engine. The event is the state: a command's state
change, its desired state and its audit are one write, and an engine an operator
stopped reads "stopped" back after a crash.

Every lifecycle write is fenced: it is stored only if the newest lifecycle event is
still the one this instance last saw (``Nats-Expected-Last-Subject-Sequence``), so two
writers can never interleave their changes unnoticed; the one that lost is told
(``Superseded``) and must read the state again."""

from __future__ import annotations

from nats.js import JetStreamContext

from contracts import subjects
from contracts.events import Envelope, LifecycleChanged, envelope_decoder
from services.runtime.bus import EventPublisher
from services.runtime.lifecycle import State
from services.runtime.stream import last_message


class DesiredState:
    def __init__(self, js: JetStreamContext, slug: str, *, autostart: bool) -> None:
        self._js = js
        self._subject = subjects.evt(slug, LifecycleChanged.TYPE)
        self._autostart = autostart
        self.value = State.RUNNING
        self.last_seq = 0  # stream sequence of the newest lifecycle event seen (0: none)
        self.last: LifecycleChanged | None = None
        self.last_event: Envelope | None = None  # its envelope: which instance wrote it, at which epoch

    async def load(self) -> State:
        stored = await last_message(self._js, self._subject)
        if stored is None:
            self.last, self.last_seq, self.last_event = None, 0, None
            self.value = State.RUNNING if self._autostart else State.STOPPED
            return self.value
        self.last_event = envelope_decoder.decode(stored.data)
        self.last = self.last_event.payload()
        self.last_seq = stored.seq
        self.value = State(self.last.desired)
        return self.value

    async def store(self, event: Envelope, publisher: EventPublisher) -> None:
        """Store a lifecycle event, fenced on the last one seen; raises ``Superseded``."""
        ack = await publisher.publish(event, after_seq=self.last_seq)
        self.last_seq = ack.seq


async def desired_of(js: JetStreamContext, slug: str, *, autostart: bool = True) -> State:
    """The desired state of any engine, as its newest lifecycle event says (heal-check)."""
    return await DesiredState(js, slug, autostart=autostart).load()
