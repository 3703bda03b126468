"""The SIEM service: what leaves AOC for the SOC's own tools.

It is not one of the seven engines (it has no lifecycle commands and no card on the
dashboard); ``aoc up`` supervises it beside them and compose runs it as one more
container. It does two independent things, so a bad sink never silences alerting and a
bad rules file never stops the export:

1. **SIEM export.** Every sink of ``AOC_SIEM_SINKS`` is a durable consumer over
   ``AOC_EVENTS`` delivered in order, at least once, through the egress guard
   (services/siem/delivery.py, transports.py, formats.py).
2. **Control-plane alerts.** The rules file (services/siem/rules.yaml by default) is
   evaluated over the whole stream, replayed at start so a restart fires nothing twice,
   and over the heartbeats for liveness (services/siem/alerts.py). Firings are
   ``alert_fired`` / ``alert_resolved`` events on ``AOC_EVENTS``: the sinks carry them
   like any other event.

Every ``STATUS_INTERVAL_S`` it writes its status (sinks, rules, open alerts, which
instance is active and its standbys) to the KV bucket ``aoc_siem``; the gateway reads it
for the dashboard, the API and /metrics, and says "down" when it grows old.

Instances: run as many as the engines (``aoc up`` runs ``AOC_INSTANCES``; compose's
cluster file two). Exactly one is active: the holder of the lease ``siem`` in
``aoc_leases`` (services/runtime/lease.py, the engines' lease). A standby writes nothing
but its presence key and polls the lease; it takes over when the lease expires (at once
after a clean shutdown), starting each sink from its durable consumer (re-sending the
range the old holder left unacknowledged) and replaying the stream for the rules, so a
takeover publishes no alert twice. A holder that cannot renew stops its sinks and rules
before the lease can expire (docs/siem.md, docs/decisions.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from datetime import UTC, datetime

import msgspec
import structlog
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError

from contracts import subjects
from contracts.events import Envelope, envelope_decoder
from contracts.settings import Settings, get_settings
from contracts.siem import (
    PRESENCE_PREFIX,
    SIEM,
    SIEM_STATUS_BUCKET,
    STATUS_INTERVAL_S,
    STATUS_KEY,
    STATUS_STALE_S,
    RuleInfo,
    SiemInstance,
    SiemStatus,
    SinkConfig,
    SinkConfigError,
    ensure_status_bucket,
    instance_decoder,
    parse_sinks,
    presence_key,
    status_decoder,
)
from services.runtime.bus import EventPublisher, connect, connect_options, streams_when_ready
from services.runtime.lease import Acquired, Lease, LeaseKeeper, Me
from services.runtime.logs import configure_logging
from services.runtime.loops import stop_task
from services.runtime.main import run_service
from services.shared.egress import AddressPolicy, Resolver, UrlGuard, system_resolver
from services.siem.alerts import AlertEngine
from services.siem.delivery import SinkRunner
from services.siem.rules import RulesError, load_rules
from services.siem.transports import transport_for

log = structlog.get_logger()


def utcnow() -> datetime:
    return datetime.now(UTC)


def egress_guard(settings: Settings, resolver: Resolver = system_resolver) -> UrlGuard:
    return UrlGuard(
        allowed_hosts=frozenset(settings.siem_allowed_hosts),
        policy=AddressPolicy.from_strings(settings.siem_allowed_networks),
        resolver=resolver,
    )


class AlertFollower:
    """Feeds the alert engine: the whole event stream (replay, then live) and the last
    heartbeat of every engine (then live); publishes what it derives, in order."""

    def __init__(self, nc: Client, engine: AlertEngine, publisher: EventPublisher) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.engine = engine
        self.publisher = publisher
        self.applied_seq = 0
        self.ready = asyncio.Event()
        self._replay_until = 0
        self._wake = asyncio.Event()
        self._subs: list = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        info = await self.js.stream_info(subjects.EVENTS_STREAM)
        self._replay_until = info.state.last_seq
        await self._follow_events(1)
        if self._replay_until == 0 or info.state.messages == 0:
            await self._replayed()
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="alerts-publish"),
            asyncio.create_task(self._tick_loop(), name="alerts-tick"),
            asyncio.create_task(self._follow_reconnects(), name="alerts-reconnect"),
        ]

    async def _follow_events(self, start_seq: int) -> None:
        sub = await self.js.subscribe(
            subjects.EVENTS_SUBJECTS,
            ordered_consumer=True,
            cb=self._on_event,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq),
        )
        self._subs.append(sub)

    async def _follow_heartbeats(self) -> None:
        sub = await self.js.subscribe(
            subjects.HEARTBEATS_SUBJECTS,
            ordered_consumer=True,
            cb=self._on_heartbeat,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT),
        )
        self._subs.append(sub)

    async def _on_event(self, msg) -> None:
        seq = msg.metadata.sequence.stream
        if seq <= self.applied_seq:
            return  # a resubscription overlapping what was applied
        try:
            event: Envelope = envelope_decoder.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("alerts.undecodable_event", seq=seq)
            event = None  # type: ignore[assignment]
        self.applied_seq = seq
        if event is not None:
            self.engine.on_event(seq, msg.metadata.timestamp, event)
        # caught up with the stream as it was at start (or with everything, should its
        # last event have been deleted since)
        if not self.ready.is_set() and (seq >= self._replay_until or msg.metadata.num_pending == 0):
            await self._replayed()
        self._wake.set()

    async def _replayed(self) -> None:
        # liveness after the replay: open unreachable alerts are judged against the last
        # heartbeats, and the clock is now
        self.ready.set()
        await self._follow_heartbeats()
        self.engine.finish_replay(utcnow())
        log.info("alerts.replayed", applied_seq=self.applied_seq, open=len(self.engine.open))
        self._wake.set()

    async def _on_heartbeat(self, msg) -> None:
        system = msg.subject.removeprefix(f"{subjects.HB_PREFIX}.")
        self.engine.on_heartbeat(system, msg.metadata.timestamp)
        self._wake.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for envelope in self.engine.take_outbox():
                try:
                    await self.publisher.publish(envelope)
                    log.info(
                        "alerts.published",
                        type=envelope.type,
                        id=envelope.id,
                        summary=envelope.summary.detail,
                    )
                except Exception as exc:  # the id is stable: the next start publishes it
                    log.error("alerts.publish_failed", id=envelope.id, error=type(exc).__name__)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.ready.is_set():
                self.engine.tick(utcnow())
                self._wake.set()

    async def _follow_reconnects(self) -> None:
        # a restarted nats-server forgets ordered consumers; follow again from where we are
        seen = self.nc.stats["reconnects"]
        while True:
            await asyncio.sleep(0.5)
            if self.nc.stats["reconnects"] == seen or not self.nc.is_connected:
                continue
            seen = self.nc.stats["reconnects"]
            try:
                await self._unsubscribe()
                await self._follow_events(self.applied_seq + 1)
                if self.ready.is_set():
                    await self._follow_heartbeats()
            except Exception:
                log.exception("alerts.resubscribe_failed")
                seen -= 1

    async def _unsubscribe(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def stop(self) -> None:
        # stop_task, not one cancel: a publish whose ack lands as the cancel does swallows it
        # (asyncio.wait_for on 3.11), and the loop would wait for its next wake-up forever
        for task in self._tasks:
            await stop_task(task)
        await self._unsubscribe()


ACTIVE, STANDBY, SUSPENDED = "active", "standby", "suspended"
LEASE_KEY = SIEM  # the SIEM service's key in aoc_leases (beside the engines' slugs)
PRESENCE_STALE_S = STATUS_STALE_S  # a standby not heard from for this long is not listed
PRESENCE_FORGET_S = 300.0  # the active deletes presence keys of processes gone this long


class SiemService:
    """One process of the SIEM service. Every process connects; only the holder of the
    lease ``siem`` in ``aoc_leases`` (services/runtime/lease.py, as the engines) runs the
    sinks and the alert rules and writes the status. The others are standbys: they write
    nothing but their presence key and poll the lease."""

    def __init__(self, settings: Settings, *, resolver: Resolver = system_resolver) -> None:
        self.settings = settings
        self.resolver = resolver
        self.boot_id = msgspec.json.encode(utcnow().timestamp()).decode()
        self.instance = settings.effective_instance_id
        self.role = STANDBY
        self.started = utcnow()
        self.sinks_error = ""
        self.rules_error = ""
        self.rules_file = ""
        self.sinks: list[SinkConfig] = []
        self.rules: list = []
        self.runners: list[SinkRunner] = []
        self.engine = AlertEngine([])
        self.follower: AlertFollower | None = None
        self.keeper: LeaseKeeper | None = None
        self.peers: dict[str, tuple[SiemInstance, int]] = {}  # presence keys seen: record, revision
        self._transition = asyncio.Lock()
        self._status_task: asyncio.Task[None] | None = None
        self._peers_task: asyncio.Task[None] | None = None
        self._watcher = None

    def load(self) -> tuple[list[SinkConfig], list]:
        sinks: list[SinkConfig] = []
        rules: list = []
        try:
            sinks = parse_sinks(self.settings.siem_sinks)
        except SinkConfigError as exc:
            self.sinks_error = str(exc)[:2000]
            log.error("siem.sinks_invalid", error=self.sinks_error)
        try:
            rules_file, path = load_rules(self.settings.siem_rules_file)
            rules = list(rules_file.rules)
            self.rules_file = str(path)
        except RulesError as exc:
            self.rules_error = str(exc)[:2000]
            self.rules_file = str(self.settings.siem_rules_file or "")
            log.error("siem.rules_invalid", error=self.rules_error)
        return sinks, rules

    @property
    def active(self) -> bool:
        return self.role == ACTIVE

    async def open(self, nc: Client | None = None) -> None:
        """Connect, and become the active instance if the lease is free (a single instance
        always is: ``open`` returns with the sinks and rules running); otherwise stay a
        standby that takes over when the lease runs out."""
        self.sinks, self.rules = self.load()
        self.engine = AlertEngine(self.rules)  # the rules' info, for a standby's log
        self.nc = nc or await connect(self.settings, name=f"aoc-{SIEM}")
        self.js = self.nc.jetstream()
        buckets = await streams_when_ready(self.js, self.settings)
        self.kv = await ensure_status_bucket(self.js, self.settings)
        self.publisher = EventPublisher(self.js, deadline=self.settings.publish_deadline)
        self.guard = egress_guard(self.settings, self.resolver)
        self.lease = Lease(buckets["leases"], LEASE_KEY, Me(self.instance, self.boot_id))
        self.keeper = LeaseKeeper(
            self.lease,
            self.settings.lease_ttl,
            on_acquired=self._activate,
            on_suspended=self._suspend,
            on_resumed=self._resume,
            on_lost=self._deposed,
            may_resume=self._may_resume,
        )
        self._watcher = await self.kv.watch(f"{PRESENCE_PREFIX}.*")
        self._peers_task = asyncio.create_task(self._follow_peers(), name="siem-peers")
        acquired = await self.lease.try_acquire()
        if acquired is not None:
            self.keeper.held_since_renewal()
            await self._activate(acquired)
        else:
            holder, _ = await self.lease.holder()
            log.info("siem.standby", instance=self.instance, active=holder.instance if holder else None)
        await self.write_status()
        self._status_task = asyncio.create_task(self._status_loop(), name="siem-status")
        self.keeper.start()
        log.info(
            "siem.started",
            instance=self.instance,
            role=self.role,
            sinks=[sink.name for sink in self.sinks],
            rules=[rule.name for rule in self.rules],
        )

    # --- the lease ------------------------------------------------------------------------

    def _lease_fresh(self) -> bool:
        return self.keeper is None or self.keeper.fresh()

    async def _activate(self, acquired: Acquired) -> None:
        """The lease is ours: start the sinks (each resumes from its durable consumer's
        acknowledged position, re-sending a range a dead holder left unacknowledged) and
        the rules (a fresh replay of the stream: what the previous holder published is
        seen, not published again)."""
        async with self._transition:
            try:
                self.runners = [
                    SinkRunner(self.js, sink, transport_for(sink, self.guard), lease_fresh=self._lease_fresh)
                    for sink in self.sinks
                ]
                for runner in self.runners:
                    runner.start()
                self.engine = AlertEngine(self.rules)
                self.follower = AlertFollower(self.nc, self.engine, self.publisher)
                await self.follower.start()
            except Exception:
                log.exception("siem.activation_failed", instance=self.instance)
                await self._stop_work()
                with contextlib.suppress(Exception):
                    await self.lease.release()  # let another instance (or a later poll) try
                return
            self.role = ACTIVE
        previous = acquired.previous.instance if acquired.previous else None
        log.info("siem.active", instance=self.instance, epoch=acquired.epoch, previous=previous)
        with contextlib.suppress(Exception):
            await self.write_status()

    async def _stop_work(self) -> None:
        """Stop the sinks and the rules at once (a batch in flight stays unacknowledged:
        the next holder sends it again)."""
        await asyncio.gather(*(runner.stop() for runner in self.runners), return_exceptions=True)
        if self.follower is not None:
            await self.follower.stop()

    async def _fence(self, role: str) -> None:
        async with self._transition:
            self.role = role  # the status loop writes no status from here on
            await self._stop_work()

    async def _suspend(self, reason: str) -> None:
        """The lease could not be renewed in time (no server): fence before it can expire."""
        await self._fence(SUSPENDED)
        log.error("siem.suspended", instance=self.instance, reason=reason, epoch=self.lease.epoch)

    async def _may_resume(self) -> bool:
        # all the state is rebuilt from the stream and the durable consumers on each
        # activation: holding the lease again is enough
        return True

    async def _resume(self) -> None:
        await self._activate(Acquired(self.lease.epoch, None, 0))

    async def _deposed(self, reason: str) -> None:
        """Another instance holds the lease: fence, and wait as a standby (nothing of this
        tenure is kept: a later activation starts afresh)."""
        await self._fence(STANDBY)
        log.error("siem.deposed", instance=self.instance, reason=reason)

    # --- status ---------------------------------------------------------------------------

    def status(self) -> SiemStatus:
        now = utcnow()
        standbys = sorted(
            name
            for name, (record, _) in self.peers.items()
            if name != self.instance
            and record.role != ACTIVE
            and (now - record.updated).total_seconds() <= PRESENCE_STALE_S
        )
        return SiemStatus(
            boot_id=self.boot_id,
            started=self.started,
            updated=now,
            sinks_error=self.sinks_error,
            rules_error=self.rules_error,
            rules_file=self.rules_file,
            rules_ready=self.follower is not None and self.follower.ready.is_set(),
            sinks=[runner.status for runner in self.runners],
            rules=[RuleInfo(**msgspec.structs.asdict(info)) for info in self.engine.info.values()],
            open_alerts=self.engine.open_alerts(),
            recent_alerts=list(self.engine.recent),
            instance=self.instance,
            epoch=self.lease.epoch,
            pid=self.lease.me.pid,
            host=self.lease.me.host,
            standbys=standbys,
        )

    async def write_status(self) -> None:
        """Every process says it is alive (its presence key); only the active one writes
        the status."""
        await self._write_presence()
        if not self.active:
            return
        await asyncio.gather(*(runner.refresh_lag() for runner in self.runners))
        if not self.active:  # fenced meanwhile
            return
        try:
            await self.kv.put(STATUS_KEY, msgspec.json.encode(self.status()))
        except Exception as exc:  # the next tick tries again
            log.warning("siem.status_not_written", error=type(exc).__name__)
        await self._forget_gone_peers()

    async def _write_presence(self) -> None:
        record = SiemInstance(
            instance=self.instance,
            boot_id=self.boot_id,
            role=self.role,
            pid=self.lease.me.pid,
            host=self.lease.me.host,
            updated=utcnow(),
        )
        try:
            await self.kv.put(presence_key(self.instance), msgspec.json.encode(record))
        except Exception as exc:
            log.warning("siem.presence_not_written", error=type(exc).__name__)

    async def _follow_peers(self) -> None:
        assert self._watcher is not None
        async for entry in self._watcher:
            if entry is None:  # the initial values are all in
                continue
            name = entry.key.removeprefix(f"{PRESENCE_PREFIX}.")
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                self.peers.pop(name, None)
                continue
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                self.peers[name] = (instance_decoder.decode(entry.value), entry.revision or 0)

    async def _forget_gone_peers(self) -> None:
        now = utcnow()
        for name, (record, revision) in list(self.peers.items()):
            if name != self.instance and (now - record.updated).total_seconds() > PRESENCE_FORGET_S:
                with contextlib.suppress(Exception):
                    await self.kv.delete(presence_key(name), last=revision)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            await self.write_status()

    async def close(self) -> None:
        """Process shutdown: stop the sinks and rules, publish what the rules derived last,
        write the last status, and hand the lease over at once."""
        if self.keeper is not None:
            await self.keeper.stop()
        for task in (self._status_task, self._peers_task):
            await stop_task(task)  # its KV writes could swallow a single cancel
        was_active = self.active
        async with self._transition:
            await self._stop_work()
        if was_active and self.follower is not None:
            # what the engine derived in its last moments goes out before we leave
            for envelope in self.engine.take_outbox():
                with contextlib.suppress(Exception):
                    await self.publisher.publish(envelope)
            with contextlib.suppress(Exception):
                await self.write_status()
        self.role = STANDBY
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()
        if hasattr(self, "kv"):
            with contextlib.suppress(Exception):
                await self.kv.delete(presence_key(self.instance))
        if hasattr(self, "lease"):
            with contextlib.suppress(Exception):
                await self.lease.release()
        with contextlib.suppress(Exception):
            await self.nc.drain()


def check(settings: Settings) -> int:
    """``python -m services.siem --check``: validate the sinks and rules, print problems."""
    ok = True
    try:
        sinks = parse_sinks(settings.siem_sinks)
        print(f"AOC_SIEM_SINKS: {len(sinks)} sink(s): " + ", ".join(f"{s.name} ({s.kind})" for s in sinks))
    except SinkConfigError as exc:
        ok = False
        print(f"AOC_SIEM_SINKS: {exc}", file=sys.stderr)
    try:
        rules, path = load_rules(settings.siem_rules_file)
        print(f"{path}: {len(rules.rules)} rule(s): " + ", ".join(rule.name for rule in rules.rules))
    except RulesError as exc:
        ok = False
        print(str(exc), file=sys.stderr)
    return 0 if ok else 1


async def health(settings: Settings) -> None:
    """Healthy = the active instance rewrote the status within STATUS_STALE_S (the service is
    alive and on the bus) and this process said it was alive within STATUS_STALE_S too,
    standby or not. "This process": the instance named by AOC_INSTANCE_ID (what `aoc up`
    gives each SIEM process, so two on one host are told apart); without it, the newest
    record from this host (a container: its own hostname). Raises with the reason otherwise."""
    import nats

    nc = await nats.connect(
        **connect_options(settings, SIEM), name="healthcheck-siem", connect_timeout=2.0, allow_reconnect=False
    )
    try:
        kv = await nc.jetstream().key_value(SIEM_STATUS_BUCKET)
        entry = await kv.get(STATUS_KEY)
        status = status_decoder.decode(entry.value or b"")
        age = (utcnow() - status.updated).total_seconds()
        if age > STATUS_STALE_S:
            raise RuntimeError(f"last status {age:.0f} s ago (more than {STATUS_STALE_S:g} s)")
        mine = await _own_presence(kv, settings.instance_id)
        if mine is not None:
            age = (utcnow() - mine.updated).total_seconds()
            if age > STATUS_STALE_S:
                raise RuntimeError(f"{mine.instance} ({mine.role}) last said it was alive {age:.0f} s ago")
    finally:
        await nc.close()


async def _own_presence(kv, instance_id: str | None) -> SiemInstance | None:
    """This process's presence record: the one of ``instance_id`` when set, else the newest
    of a SIEM process on this host; None before it has written one."""
    if instance_id:
        try:
            return instance_decoder.decode((await kv.get(presence_key(instance_id))).value or b"")
        except (KeyNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
            return None
    host = socket.gethostname()
    try:
        keys = await kv.keys()  # (its filters are substrings, and it warns about them)
    except Exception:  # no keys at all
        return None
    newest: SiemInstance | None = None
    for key in keys:
        if not key.startswith(f"{PRESENCE_PREFIX}."):
            continue
        with contextlib.suppress(Exception):
            record = instance_decoder.decode((await kv.get(key)).value or b"")
            if record.host == host and (newest is None or record.updated > newest.updated):
                newest = record
    return newest


async def serve(settings: Settings) -> None:
    service = SiemService(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.open()
    await stop.wait()
    log.info("siem.exiting")
    await service.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.siem", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="validate AOC_SIEM_SINKS and the rules file, then exit"
    )
    parser.add_argument(
        "--health", action="store_true", help="container probe: exit 0 when the service is alive"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.check:
        return check(settings)
    if args.health:
        try:
            asyncio.run(asyncio.wait_for(health(settings), 5.0))
        except Exception as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            print(f"unhealthy: siem: {type(exc).__name__}: {reason}", file=sys.stderr)
            return 1
        return 0
    configure_logging(SIEM)
    run_service(serve(settings))
    return 0


__all__ = ["SiemService", "egress_guard", "main"]
