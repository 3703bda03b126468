"""Single-active instances: a lease per engine in a KV bucket whose max age is the lease
time (NATS-NOTES.md, "Leases, fencing and clusters"). No home-made consensus: the KV
bucket is a JetStream stream, replicated by RAFT in a cluster.

- ``kv.create(slug)`` acquires the lease while nobody holds it; the revision it got is
  the holder's **epoch** (its tenure), stamped on every event the holder writes: it
  stays the same while the holder renews, and a later tenure always has a higher one;
- ``kv.update(slug, last=revision)`` renews it; a holder that was replaced gets
  ``KeyWrongLastSequenceError`` (``LeaseLost``): it must stop at once;
- a holder that stops renewing loses the key after about the lease time; a standby
  polling ``create`` then gets it;
- a process restarted under the same instance id (the launcher's, compose's replica)
  takes its own predecessor's lease at once: instance ids are unique among live
  processes, so a lease held by "me" with another boot id is a dead process's;
- a clean shutdown deletes the key (with ``last=revision``), so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.events import utcnow
from services.runtime.loops import stop_task


class LeaseLost(Exception):
    """Another instance holds the lease now: this one must stop acting."""


class Holder(msgspec.Struct, kw_only=True):
    instance: str
    boot_id: str
    pid: int
    host: str
    since: str  # ISO time the holder acquired the lease


@dataclass(frozen=True, slots=True)
class Me:
    instance: str
    boot_id: str
    pid: int = os.getpid()
    host: str = socket.gethostname()


@dataclass(frozen=True, slots=True)
class Acquired:
    epoch: int
    previous: Holder | None  # the holder this one replaced (its own dead predecessor included)
    previous_epoch: int


class Lease:
    def __init__(self, kv: KeyValue, slug: str, me: Me) -> None:
        self._kv = kv
        self._key = slug
        self.me = me
        self.epoch = 0  # the revision this tenure began with; 0 when not held
        self.revision = 0  # the latest revision of the key (what the next renewal names)
        self._record = b""
        # the last holder seen (by a standby's polls): who an acquisition takes over from,
        # since an expired lease leaves no trace of its holder
        self.last_seen: tuple[Holder | None, int] = (None, 0)

    @property
    def held(self) -> bool:
        return self.epoch > 0

    async def try_acquire(self) -> Acquired | None:
        """Take the lease if it is free (or a dead predecessor of this instance holds it)."""
        record = msgspec.json.encode(
            Holder(
                instance=self.me.instance,
                boot_id=self.me.boot_id,
                pid=self.me.pid,
                host=self.me.host,
                since=utcnow().isoformat(),
            )
        )
        try:
            self.epoch = self.revision = await self._kv.create(self._key, record)
            previous, previous_epoch = self.last_seen
        except KeyWrongLastSequenceError:
            current, revision = await self.holder()
            if current is None or current.instance != self.me.instance or current.boot_id == self.me.boot_id:
                return None
            try:  # my own instance id with another boot: a process of mine that died
                self.epoch = self.revision = await self._kv.update(self._key, record, last=revision)
            except KeyWrongLastSequenceError:
                return None
            previous, previous_epoch = current, revision
        self._record = record
        return Acquired(self.epoch, previous, previous_epoch)

    async def renew(self) -> None:
        """Keep the lease; ``LeaseLost`` when another instance holds it now. Other errors
        (no server) are the caller's to weigh against the time left."""
        try:
            self.revision = await self._kv.update(self._key, self._record, last=self.revision)
            return
        except KeyWrongLastSequenceError:
            pass
        # an update whose reply was lost (timed out here, stored there) moved the revision
        # on: still this process's record, so the lease is still ours at that revision
        current, revision = await self.holder()
        if current is not None and current.boot_id == self.me.boot_id:
            self.revision = await self._kv.update(self._key, self._record, last=revision)
            return
        self.epoch = self.revision = 0
        raise LeaseLost(f"lease of {self._key} taken by another instance")

    async def release(self) -> None:
        """Give the lease up (clean shutdown): a standby takes over without waiting."""
        if not self.held:
            return
        revision, self.epoch, self.revision = self.revision, 0, 0
        try:
            await self._kv.delete(self._key, last=revision)
        except Exception:
            return  # taken meanwhile, or no server: it expires by itself

    async def holder(self) -> tuple[Holder | None, int]:
        """Who holds the lease now, and its epoch (None, 0 when nobody does)."""
        try:
            entry = await self._kv.get(self._key)
        except KeyNotFoundError:
            return None, 0
        if not entry.value:
            return None, 0
        current = msgspec.json.decode(entry.value, type=Holder), entry.revision or 0
        if current[0].boot_id != self.me.boot_id:
            self.last_seen = current
        return current


class LeaseKeeper:
    """Holds a lease for as long as it can, or waits for it as a standby.

    Active: renews every ``ttl / 3``. When the lease cannot be renewed for ``ttl * 2/3``
    (no server), the holder is *suspended* (``on_suspended``: it fences itself, loops
    first) well before another instance could take over; it resumes (``on_resumed``) if
    the lease turns out to be still its own, or free with nobody else having acted
    (``may_resume``). When another instance holds it, ``on_lost``: the holder must go.
    Standby: tries to take the lease every ``poll`` seconds and calls ``on_acquired``."""

    def __init__(
        self,
        lease: Lease,
        ttl: float,
        *,
        on_acquired: Callable[[Acquired], Awaitable[None]],
        on_suspended: Callable[[str], Awaitable[None]],
        on_resumed: Callable[[], Awaitable[None]],
        on_lost: Callable[[str], Awaitable[None]],
        may_resume: Callable[[], Awaitable[bool]],
        poll: float | None = None,
    ) -> None:
        self.lease = lease
        self.ttl = ttl
        self.poll = poll if poll is not None else min(0.25, ttl / 6)
        self._on_acquired = on_acquired
        self._on_suspended = on_suspended
        self._on_resumed = on_resumed
        self._on_lost = on_lost
        self._may_resume = may_resume
        self._renewed = time.monotonic()
        self.suspended = False
        self.passive = False  # a deposed in-process instance stops competing
        self._task: asyncio.Task[None] | None = None
        self._log = structlog.get_logger().bind(system=lease._key, instance=lease.me.instance)

    def held_since_renewal(self) -> None:
        self._renewed = time.monotonic()

    def fresh(self) -> bool:
        """Renewed within ``ttl * 2/3``: nobody else can hold the lease yet. A holder frozen
        past that (SIGSTOP, a VM pause) wakes up still "active", and its loops may run
        before the keeper's next renewal tells it otherwise: it writes nothing as the
        active instance until that renewal (or fences, if the lease is gone)."""
        return time.monotonic() - self._renewed <= self.ttl * 2 / 3

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.lease._key}")

    async def stop(self) -> None:
        await stop_task(self._task)  # a renewal (a KV request) can swallow a single cancel

    async def _run(self) -> None:
        while True:
            if self.suspended:
                await asyncio.sleep(self.poll)
                await self._try_resume()
            elif self.lease.held:
                await asyncio.sleep(self.ttl / 6)
                await self._keep()
            else:
                await asyncio.sleep(self.poll)
                if not self.passive:
                    await self._compete()

    async def _keep(self) -> None:
        if time.monotonic() - self._renewed >= self.ttl / 3:
            try:
                async with asyncio.timeout(self.ttl / 3):
                    await self.lease.renew()
                self._renewed = time.monotonic()
            except LeaseLost as exc:
                await self._call(self._on_lost, str(exc))
                return
            except Exception as exc:  # no server for now: weigh it against the time left
                self._log.warning("lease.renew_failed", error=type(exc).__name__)
        if time.monotonic() - self._renewed > self.ttl * 2 / 3:
            self.suspended = True
            await self._call(self._on_suspended, f"could not renew the lease within {self.ttl * 2 / 3:.1f} s")

    async def _try_resume(self) -> None:
        try:
            async with asyncio.timeout(self.ttl / 3):
                try:
                    await self.lease.renew()
                except LeaseLost:
                    holder, _ = await self.lease.holder()
                    if holder is not None:
                        await self._lose("another instance took the lease while this one was cut off")
                        return
                    if await self.lease.try_acquire() is None:
                        return  # someone was quicker; the next tick tells who
                # whichever way the lease is ours again, carry on only if no other instance
                # acted meanwhile (a replica that was cut off too may have answered stale)
                if not await self._may_resume():
                    await self._lose("another instance acted while this one was cut off")
                    return
        except Exception:
            return  # still no server
        self.suspended = False
        self._renewed = time.monotonic()
        self._log.info("lease.resumed", epoch=self.lease.epoch)
        try:
            await self._on_resumed()
        except Exception as exc:  # could not come back as the active one: leave; a fresh standby starts
            self._log.exception("lease.resume_failed")
            await self._lose(f"could not resume: {type(exc).__name__}")

    async def _lose(self, reason: str) -> None:
        self.suspended = False
        self.lease.epoch = self.lease.revision = 0
        await self._call(self._on_lost, reason)

    async def _compete(self) -> None:
        try:
            acquired = await self.lease.try_acquire()
            if acquired is None:
                await self.lease.holder()  # remember who holds it, for the takeover record
                return
        except Exception as exc:
            self._log.warning("lease.acquire_failed", error=type(exc).__name__)
            return
        self._renewed = time.monotonic()
        await self._call(self._on_acquired, acquired)

    async def _call(self, callback: Callable[..., Awaitable[None]], *args: object) -> None:
        try:
            await callback(*args)
        except Exception:
            self._log.exception("lease.callback_failed", callback=getattr(callback, "__name__", "?"))
