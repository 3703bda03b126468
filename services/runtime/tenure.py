"""An instance's tenure: what it does as its role changes with the engine's lease.

- the lease is acquired: rebuild (counters, crash detection, ``Engine.setup``), say who
  took over, and come up as the durable desired state says (``activate``);
- the lease cannot be renewed: fence (every loop stopped, nothing written as the active
  instance) and wait to resume, if nobody else acted meanwhile (``suspend``, ``resume``);
- another instance holds it: fence and leave (``deposed``);
- all along, follow the durable desired state: a standby runs its shared (``everywhere``)
  loops by it, the active instance obeys a change it did not write.

The roles live here; ``EngineHost.role`` holds the current one.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from contracts import subjects
from contracts.events import Envelope, InstanceTookOver, LifecycleChanged, Summary, envelope_decoder, utcnow
from services.runtime import recovery
from services.runtime.bus import Superseded
from services.runtime.counters import resume_counters
from services.runtime.lease import Acquired
from services.runtime.lifecycle import State
from services.runtime.stream import Follower, last_message

if TYPE_CHECKING:
    from services.runtime.host import EngineHost

# an instance's role: standby until it holds the lease; activating while it rebuilds;
# suspended while it cannot renew the lease (fenced: nothing runs), until it resumes
ACTIVE, STANDBY, ACTIVATING, SUSPENDED = "active", "standby", "activating", "suspended"


class Tenure:
    def __init__(self, host: EngineHost) -> None:
        self.host = host
        self.follower: Follower | None = None
        self._fenced_epoch = 0

    async def begin(self) -> None:
        """At open: follow the desired state, and become the active instance if the lease is
        free; otherwise stay a standby."""
        host = self.host
        # every instance follows the durable desired state: a standby runs its shared
        # (``everywhere``) loops by it, the active one obeys a change it did not write
        await self.follow_desired_state()
        acquired = await host.lease.try_acquire()
        if acquired is not None:
            host.keeper.held_since_renewal()
            await self.activate(acquired)
        else:
            holder, _ = await host.lease.holder()
            host.log.info("engine.standby", active=holder.instance if holder else None)
            self.run_shared_loops()
            await host.heartbeats.send()

    async def activate(self, acquired: Acquired) -> None:
        """The lease is ours: rebuild, obey the durable desired state, say who took over."""
        host = self.host
        host.role = ACTIVATING
        try:
            async with host.transition:
                resumed = await resume_counters(host.js, host.slug)
                host.counters = resumed.counters
                recovered = recovery.recovery(
                    resumed.last_beat, resumed.beat_stored_at, boot_id=host.boot_id, now=utcnow()
                )
                if recovered is not None:  # the previous active process died without a word
                    recovered.total_runs, recovered.error_count = (
                        host.counters.total_runs,
                        host.counters.errors,
                    )
                    await host.publish(
                        recovered, recovery.recovery_summary(host.engine.info.label, recovered)
                    )
                    host.log.warning("engine.recovered", previous_boot_id=recovered.previous_boot_id)
                if not host.set_up:
                    await host.engine.setup()
                    host.set_up = True
                desired = await host.desired_state.load()
                if not host.keeper.fresh():
                    # the keeper does not renew while an activation runs: a rebuild that took
                    # that long renews before it writes as the active instance (LeaseLost:
                    # another instance holds the lease by now, and this one must not come up)
                    await host.lease.renew()
                    host.keeper.held_since_renewal()
        except BaseException:
            host.role = STANDBY
            with contextlib.suppress(Exception):
                await host.lease.release()  # let another instance try
            raise
        # who was active before: the instance that wrote the newest lifecycle event (a
        # standby that started after the holder died never saw its lease)
        last = host.desired_state.last_event
        if last is not None and last.instance and last.instance != host.instance:
            seen = (
                acquired.previous
                if acquired.previous and acquired.previous.instance == last.instance
                else None
            )
            await host.publish(
                InstanceTookOver(
                    instance=host.instance,
                    epoch=acquired.epoch,
                    previous_instance=last.instance,
                    previous_epoch=last.epoch,
                    previous_boot_id=seen.boot_id if seen else None,
                ),
                Summary(
                    action="instance_took_over",
                    detail=f"{host.instance} took over from {last.instance} "
                    f"(epoch {last.epoch} -> {acquired.epoch})",
                    result="success",
                ),
            )
        for attempt in range(3):
            try:
                await self._come_up(desired)
                break
            except Superseded:  # the previous holder's last write landed after we read: obey it
                if attempt == 2:
                    raise
                async with host.transition:
                    desired = await host.desired_state.load()
        host.role = ACTIVE  # only now: a status answered while it comes up says "activating"
        host.activated.set()
        host.log.info("engine.active", epoch=host.lease.epoch, desired=desired)

    async def _come_up(self, desired: State) -> None:
        """Bring a newly active instance to its durable desired state."""
        host = self.host
        if desired == State.RUNNING:
            await host.go(State.RUNNING, reason="process started", actor=host.slug)
            return
        # say so, so the dashboard shows an acknowledged stop rather than nothing
        async with host.transition:
            event = host.lifecycle_event(
                State.STOPPED, State.STOPPED, "restored desired state: stopped", None, None, None
            )
            await host.desired_state.store(event, host.publisher)
        await host.heartbeats.send()

    async def _fence(self, role: str) -> None:
        """Stop every loop and background task at once and write nothing more as the active
        instance: before another instance can take over."""
        host = self.host
        host.role = role
        host.activated.clear()
        await host.loops.stop()
        if host.lifecycle.state == State.RUNNING:
            host.lifecycle.move(State.STOPPING)
            with contextlib.suppress(Exception):
                await host.engine.on_stop()
            host.lifecycle.move(State.STOPPED)

    async def suspend(self, reason: str) -> None:
        """The lease could not be renewed (no server): fence, and wait to resume."""
        self._fenced_epoch = self.host.lease.epoch
        await self._fence(SUSPENDED)
        self.host.log.error("engine.suspended", reason=reason, epoch=self._fenced_epoch)

    async def nobody_else_acted(self) -> bool:
        """May a suspended instance whose lease ran out take it again and carry on? Only if
        no other instance became active meanwhile: each activation writes a lifecycle
        event, so the newest one must still be this instance's, at the fenced epoch."""
        host = self.host
        stored = await last_message(host.js, subjects.evt(host.slug, LifecycleChanged.TYPE))
        if stored is None:
            return True
        event = envelope_decoder.decode(stored.data)
        return event.instance == host.instance and event.epoch == self._fenced_epoch

    async def resume(self) -> None:
        """Back on the bus with the lease: carry on as the desired state says."""
        host = self.host
        host.role = ACTIVATING
        async with host.transition:
            desired = await host.desired_state.load()
        host.role = ACTIVE
        await host.go(desired, reason="resumed: the lease is held again", actor=host.slug, persist=False)
        host.activated.set()
        host.log.info("engine.resumed", epoch=host.lease.epoch, desired=desired)

    async def deposed(self, reason: str) -> None:
        """Another instance holds the lease: fence, and leave. This process's engine state is
        not rebuilt a second time: main.serve exits and the supervisor starts a fresh
        standby; in-process, the host stays passive."""
        host = self.host
        await self._fence(STANDBY)
        host.keeper.passive = True
        host.log.error("engine.deposed", reason=reason)
        host.deposed.set()

    # --- following the durable desired state ----------------------------------------------

    async def follow_desired_state(self) -> None:
        host = self.host
        self.follower = await Follower(
            host.nc,
            subjects.evt(host.slug, LifecycleChanged.TYPE),
            self._on_lifecycle_event,
            start_seq=host.desired_state.last_seq + 1,
            name=f"{host.slug}-desired",
        ).start()

    def run_shared_loops(self) -> None:
        """A standby runs its engine's ``everywhere`` loops while the desired state is running."""
        if self.host.desired == State.RUNNING:
            self.host.loops.start(everywhere_only=True)

    async def _on_lifecycle_event(self, seq: int, data: bytes, _at: Any) -> None:
        """Every instance follows the durable desired state. A standby runs its shared loops
        by it; the active instance obeys a lifecycle event it did not write (a standby
        recorded a command while this one did not answer)."""
        host = self.host
        event = envelope_decoder.decode(data)
        if host.role == STANDBY:
            if seq > host.desired_state.last_seq:
                host.desired_state.last_seq, host.desired_state.value = seq, State(event.payload().desired)
                if host.desired == State.RUNNING:
                    host.loops.start(everywhere_only=True)
                else:
                    host.spawn(host.loops.stop())
            return
        if host.role != ACTIVE:
            return  # coming up or fenced: it reads the desired state again when it goes on
        if (
            event.instance == host.instance and event.epoch == host.lease.epoch
        ) or seq <= host.desired_state.last_seq:
            return
        host.log.warning("engine.desired_changed_elsewhere", by=event.instance, seq=seq)
        host.spawn(self._obey(event))

    async def _obey(self, event: Envelope) -> None:
        host = self.host
        async with host.transition:
            target = await host.desired_state.load()
            reason = f"following the desired state recorded by {event.instance or event.source}"
            changed = await host.move(target, reason=reason, actor=event.actor, persist=False)
        if changed:
            host.heartbeats.soon()
