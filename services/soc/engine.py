"""Autonomous SOC Engine — `soc-cycle`.

The story:
- Alerts wait in the work queue ``AOC_ALERTS``: from the gateway, or from the raw NATS
  intake this process answers (services/soc/intake.py: FastStream subscribers, in AOC's
  shape or a product's format, working even while the engine is stopped).
- **triage** pulls them in batches, scores each batch with the three models (one call
  per model), decides auto_resolve / escalate / contain (services/soc/policy.py) and
  publishes the decisions with their scores and reasons; only then are the queue
  messages acked, so a crash can redeliver but never lose an alert, and the decided
  ids (rebuilt from the events at start) make sure none is decided twice.
  Triage runs on **every instance**, standbys too (one durable pull consumer shares the
  queue). Each follows the others' events, so all know every decision; before deciding
  a redelivered message (its first taker died before acking) an instance catches up
  with the newest decision in the stream, so what the dead one stored is not decided
  again. Each counts its own share of the counters (``Totals.by_instance``).
The lease holder alone does the rest:
- **escalation** (10 s): escalations nobody answered within their severity's SLA go to
  a human — the engine's error count.
- **soar**: every confirmed threat (a contain decision, or an analyst's true-positive
  verdict) runs the first matching declarative playbook — e.g. a block rule.
- **hunting** (5 min): recent alerts against the IOCs of the current advisories.
- New model versions are hot-reloaded on ``model_published`` (and checked against the
  registry pointer every escalation pass); a refused version leaves the last good one
  in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from datetime import timedelta
from typing import Any

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import BucketNotFoundError, NoKeysError, NotFoundError

from contracts import ml, soc, subjects
from contracts.advisory import ADVISORIES_BUCKET, Advisory
from contracts.events import Summary, envelope_decoder, utcnow
from contracts.subjects import EVENTS_STREAM
from services.runtime import CycleOutcome, Engine, Loop, StopRequested, heap
from services.runtime.bus import barrier
from services.shared.triage.bundle import ModelBundle
from services.shared.triage.registry import ModelRefused, RegistryReader
from services.soc import hunting, playbooks
from services.soc.config import SocConfig
from services.soc.intake import ACTOR as INTAKE_ACTOR
from services.soc.intake import IntakeHandlers, intake_broker, warm_up
from services.soc.state import SocState
from services.soc.triage import StagedEvent, decide_batch, fresh_alerts

log = structlog.get_logger()

INTAKE_PUBLISH_DEADLINE = 5.0  # a producer is waiting for the intake's reply
THREAD_THRESHOLD = 200  # alerts: score bigger batches in a worker thread, keep the loop free
PLAYBOOK_RUNS_PER_BATCH = 200  # stored together; a fence takes effect between two batches
CATCH_UP_S = 5.0  # how long a redelivery waits for the others' decisions to reach this instance
_advisory_decoder = msgspec.json.Decoder(Advisory)


class SocEngine(Engine):
    slug = soc.SOC_SYSTEM

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.config = SocConfig()
        self.thresholds = self.config.thresholds()
        self.playbooks = playbooks.load_playbooks(self.config.playbooks_dir)
        self.state = SocState(self.config.max_alerts_in_memory)
        self.bundle: ModelBundle | None = None
        self.pointer: ml.ModelPointer | None = None
        self.queue_depth: int | None = None
        self.peers: Any = None  # the Follower of every instance's SOC events
        self.last_hunt: dict[str, Any] = {}
        self._reload_lock = asyncio.Lock()
        self._refused: set[tuple] = set()  # pointers already refused: not retried every pass
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subs: list[Any] = []

    def loops(self) -> list[Loop]:
        return [
            # every instance, standbys too: the queue is shared, so triage scales out
            Loop("triage", self.interval("triage", 0.05), self._triage, everywhere=True),
            # primary: `trigger` answers with statistics and must not wait behind a triage pull
            Loop("escalation", self.interval("escalation", 10), self._escalate, primary=True),
            Loop("soar", self.interval("soar", 5), self._run_playbooks),
            Loop("hunting", self.interval("hunting", 300), self._hunt),
        ]

    # --- start ---------------------------------------------------------------------------

    async def setup_shared(self) -> None:
        """Every instance: the state (rebuilt, then following every instance's events),
        the shared queue, the intake (a queue group), the verdicts and the models."""
        await self.ctx.declare(soc.ensure_soc_streams)
        self.registry = await self.ctx.declare(RegistryReader.declared)
        self.state.instance = self.ctx.instance
        with heap.bulk_load():
            rebuilt = await self._rebuild()
        self.peers = await self.ctx.follower(
            subjects.evt(self.slug, "*"), self._on_peer_event, start_seq=rebuilt + 1, name="soc-peers"
        ).start()
        self.queue = await self.ctx.pull(
            soc.ALERT_QUEUE,
            durable=soc.TRIAGE_CONSUMER,
            stream=soc.ALERTS_STREAM,
            config=ConsumerConfig(ack_wait=self.config.ack_wait, max_ack_pending=100_000),
        )
        # the intake: FastStream subscribers on their own connection, for the whole process
        self.intake = IntakeHandlers(self._store_input, self._audit_input, self._lookup)
        self.broker = intake_broker(self.settings, self.intake)
        await self.broker.start()
        await warm_up()
        await barrier(self.broker.connection)  # subscribed at the server before open() returns
        since = utcnow() - timedelta(hours=self.config.memory_hours)
        self._subs.append(
            await self.ctx.subscribe_stream(
                soc.FEEDBACK_QUEUE,
                self._on_feedback,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since),
            )
        )
        self._subs.append(
            await self.ctx.subscribe_stream(
                subjects.evt(ml.ML_SYSTEM, ml.MODEL_PUBLISHED),
                self._on_model_published,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
            )
        )
        await self._load_active_models()
        # what exists now (modules, models, the rebuilt state) lives as long as the process:
        # out of the collector's full passes, which otherwise stall this loop for 0.2-2 s
        # (measured) as the decided alerts pile up; each round's decisions follow
        heap.keep_long_lived(full=True)

    async def setup(self) -> None:
        """The lease holder: say which playbooks are in force (it alone runs them)."""
        await self._announce_playbooks()

    async def teardown_shared(self) -> None:
        """Everything setup_shared opened, on every instance (a standby's too)."""
        for task in list(self._tasks):
            task.cancel()
        broker = getattr(self, "broker", None)
        if broker is not None:
            with contextlib.suppress(Exception):
                await broker.stop()
        if self.peers is not None:
            await self.peers.stop()
        # a pull subscription left open makes the connection's drain time out
        for sub in [*self._subs, getattr(self, "queue", None)]:
            if sub is None:
                continue
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _rebuild(self) -> int:
        """Replay the SOC's decisions (and hunts, escalations, playbooks) of the last
        ``memory_hours``, every instance's; the counters come from the newest event of
        each kind, so they survive even when nothing happened inside the window. Returns
        the stream position replayed up to (the peers' follower goes on from there)."""
        position = (await self.ctx.stream_state(EVENTS_STREAM)).last_seq
        for kind in (soc.AlertsTriaged, soc.EscalatedToHuman, soc.PlaybookExecuted):
            raw = await self.ctx.last(subjects.evt(self.slug, kind.TYPE))
            if raw is not None:
                # the counters only: an event older than the window must not reopen its alerts
                self.state.apply_counts(_payload(raw.data, kind))

        def on_event(_seq: int, data: bytes, _at: Any) -> None:
            self._apply_stored(data)

        since = utcnow() - timedelta(hours=self.config.memory_hours)
        await self.ctx.replay(subjects.evt(self.slug, "*"), on_event, start_time=since, until_seq=position)
        return position

    def _apply_stored(self, data: bytes) -> None:
        envelope = envelope_decoder.decode(data)
        kind = soc.SOC_PAYLOAD_TYPES.get(envelope.type)
        if kind is not None:
            self.state.apply(msgspec.json.decode(envelope.data, type=kind))

    def _on_peer_event(self, _seq: int, data: bytes, _at: Any) -> None:
        """Another instance's event (this one's own were applied when the stream took them)."""
        if envelope_decoder.decode(data).instance != self.ctx.instance:
            self._apply_stored(data)

    async def _caught_up(self) -> bool:
        """Has this instance applied the newest decision in the stream? A redelivered
        message may hold alerts a dead instance decided and stored but never acked."""
        newest = await self.ctx.last(subjects.evt(self.slug, soc.AlertsTriaged.TYPE))
        if newest is None:
            return True
        deadline = asyncio.get_running_loop().time() + CATCH_UP_S
        while self.peers.last_seq < newest.seq:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def _store_input(self, subject: str, body: bytes, msg_id: str) -> None:
        await self.ctx.enqueue(subject, body, msg_id=msg_id, deadline=INTAKE_PUBLISH_DEADLINE)

    async def _audit_input(self, payload: msgspec.Struct, summary: Summary) -> None:
        await self.ctx.publish(payload, summary, actor=INTAKE_ACTOR)

    async def _announce_playbooks(self) -> None:
        """What the gateway lists as the playbooks in force (GET /api/v1/soc/playbooks)."""
        encoded = msgspec.json.encode(self.playbooks)
        digest = hashlib.sha256(encoded).hexdigest()
        await self.ctx.publish(
            soc.PlaybooksLoaded(
                playbooks=self.playbooks, directory=str(self.config.playbooks_dir), digest=digest
            ),
            Summary(
                action="playbooks_loaded",
                detail=f"{len(self.playbooks)} SOAR playbooks in force: "
                + ", ".join(p.name for p in self.playbooks)[:800],
                result="success",
            ),
            event_id=f"playbooks-{self.ctx.boot_id}",
        )

    def _lookup(self, alert_id: str) -> tuple[soc.AlertSummary, str] | None:
        record = self.state.alerts.get(alert_id)
        return (record.alert, record.decision) if record else None

    async def _on_feedback(self, msg: Msg) -> None:
        with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
            self.state.apply_feedback(soc.feedback_decoder.decode(msg.data))

    # --- models --------------------------------------------------------------------------

    async def _on_model_published(self, msg: Msg) -> None:
        try:
            published = _payload(msg.data, ml.ModelPublished)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        self._spawn(self._reload(published.pointer))

    async def _load_active_models(self) -> None:
        pointer = await self.registry.active_pointer()
        if pointer is not None:
            await self._reload(pointer)

    async def _reload(self, pointer: ml.ModelPointer) -> None:
        async with self._reload_lock:
            current = self.pointer
            if (
                current is not None
                and current.version == pointer.version
                and current.sha256 == pointer.sha256
            ):
                return
            previous = current.version if current else None
            key = (pointer.version, tuple(sorted(pointer.sha256.items())))
            if key in self._refused:
                return
            try:
                bundle = await self.registry.load_bundle(pointer)
            except ModelRefused as exc:
                if exc.permanent:
                    self._refused.add(key)
                log.warning("soc.model_refused", version=pointer.version, reason=exc.reason)
                await self.ctx.publish(
                    soc.ModelsReloaded(version=pointer.version, previous=previous, ok=False, error=str(exc)),
                    Summary(
                        action="model_refused",
                        detail=f"{exc}; still using {previous or 'no model'}",
                        result="failed",
                    ),
                    shared=True,  # every instance scores: each says which model it refused
                )
                return
            self.bundle, self.pointer = bundle, pointer
            await self.ctx.publish(
                soc.ModelsReloaded(version=pointer.version, previous=previous, ok=True),
                Summary(
                    action="models_reloaded",
                    detail=f"Triage now scores with model {pointer.version} (was {previous or 'none'})",
                ),
                shared=True,
            )

    # --- triage --------------------------------------------------------------------------

    async def _triage(self) -> CycleOutcome:
        if self.bundle is None:
            await self._load_active_models()
            if self.bundle is None:
                return CycleOutcome(quiet=True, detail="waiting for the first model version from ml-retrain")
        decided = duplicates = rejected = 0
        wait = self.config.fetch_wait
        while decided + duplicates < self.config.max_alerts_per_cycle:
            try:
                # every round is acked before the next pull: nothing is in hand here, so a
                # stop may abandon the pull instead of waiting for it to time out
                messages = await self.ctx.until_stopping(
                    self.queue.fetch(self.config.fetch_batch, timeout=wait)
                )
            except (NatsTimeoutError, TimeoutError, StopRequested):
                break
            wait = 0.05  # drain what is there; the next empty pull ends the cycle
            counts = await self._triage_messages(messages)
            heap.keep_long_lived()  # the round's decisions joined the state (services/runtime/heap.py)
            decided += counts[0]
            duplicates += counts[1]
            rejected += counts[2]
        if not (decided or duplicates or rejected):
            return CycleOutcome(quiet=True, detail="queue empty")
        detail = f"Triaged {decided} alerts ({duplicates} duplicates skipped, {rejected} messages rejected)"
        # the decision events are the record: the cycle itself stays out of the log
        return CycleOutcome(
            ok=rejected == 0,
            result="success" if rejected == 0 else "failed",
            detail=detail,
            quiet=True,
            output={"decided": decided, "duplicates": duplicates, "rejected": rejected},
        )

    async def _triage_messages(self, messages: list[Msg]) -> tuple[int, int, int]:
        """Decide the alerts of these queue messages in rounds of about ``round_alerts``
        (a message is never split), acking each round's messages once its decisions are
        stored."""
        if any(msg.metadata.num_delivered > 1 for msg in messages) and not await self._caught_up():
            # the others' decisions have not reached this instance: deciding now could
            # decide an alert twice. Back to the queue, for whoever is caught up.
            log.warning("soc.redelivery_deferred", messages=len(messages))
            for msg in messages:
                await msg.nak(delay=1)
            return 0, 0, 0
        # each message is decoded when its round comes: the first round's decisions do not
        # wait for the whole pull to be decoded (10,000 alerts: ~90 ms)
        decided = duplicates = rejected = 0
        round_messages: list[Msg] = []
        round_alerts: list[soc.Alert] = []
        for index, msg in enumerate(messages):
            try:
                alerts = soc.decode_alerts(msg.data)
            except soc.AlertDecodeError as exc:
                # someone published to the queue subject directly, past the intake
                rejected += 1
                await msg.term()
                await self._audit_rejected(msg, exc)
                continue
            if round_alerts and len(round_alerts) + len(alerts) > self.config.round_alerts:
                counts = await self._decide_and_ack(round_messages, round_alerts, later=messages[index:])
                decided += counts[0]
                duplicates += counts[1]
                round_messages, round_alerts = [], []
            round_messages.append(msg)
            round_alerts.extend(alerts)
        if round_messages:
            counts = await self._decide_and_ack(round_messages, round_alerts, later=[])
            decided += counts[0]
            duplicates += counts[1]
        return decided, duplicates, rejected

    async def _decide_and_ack(
        self, messages: list[Msg], alerts: list[soc.Alert], *, later: list[Msg]
    ) -> tuple[int, int]:
        """One round: its messages are acked only once its decisions are stored; the
        messages still to come are marked in progress meanwhile (no redelivery yet)."""
        for msg in later:
            await msg.in_progress()
        counts = await self._decide_round(alerts)
        for msg in messages:
            await msg.ack()
        return counts

    async def _decide_round(self, alerts: list[soc.Alert]) -> tuple[int, int]:
        fresh, duplicates = fresh_alerts(alerts, self.state.knows)
        bundle, own, now = self.bundle, self.state.own, utcnow()
        assert bundle is not None
        own = msgspec.structs.replace(own, duplicates=own.duplicates + duplicates)
        decide = (self.thresholds, self.state.counted(own), self.ctx.instance, now)
        if len(fresh) >= THREAD_THRESHOLD:
            result = await asyncio.to_thread(decide_batch, fresh, bundle, *decide)
        else:
            result = decide_batch(fresh, bundle, *decide)
        if duplicates and not result.events:
            self.state.count_locally(own)
        await self._store_events(result.events, shared=True)
        return result.decided, duplicates

    async def _store_events(self, events: list[StagedEvent], *, shared: bool = False) -> None:
        """Events back to back, confirmed together (one round trip), then folded into the
        state. One connection's writes are stored in the order sent, so a crash leaves a
        prefix: each event's counters include the ones before it, and the counters never
        count a decision or a playbook run the stream does not hold. ``shared``: triage's,
        which every instance does; the rest is the lease holder's."""
        batch = self.ctx.batch(shared=shared)
        for event in events:
            await batch.publish(
                self.ctx.new_event(event.payload, event.summary, actor="system", event_id=event.event_id)
            )
        await batch.confirmed()
        for event in events:
            self.state.apply(event.payload)

    async def _publish(
        self, payload: msgspec.Struct, summary: Summary, event_id: str | None = None, *, shared: bool = False
    ) -> None:
        """Store the event, then fold it into the state (the same fold the rebuild uses).
        ``shared``: triage's, which every instance does; the rest is the lease holder's."""
        await self.ctx.publish(payload, summary, actor="system", event_id=event_id, shared=shared)
        self.state.apply(payload)

    async def _audit_rejected(self, msg: Msg, exc: soc.AlertDecodeError) -> None:
        await self._publish(
            soc.AlertRejected(
                subject=msg.subject,
                error="invalid_alert",
                message=str(exc),
                field=exc.field,
                body_excerpt=msg.data[:200].decode("utf-8", "replace"),
            ),
            Summary(action="alert_rejected", detail=f"{msg.subject}: {exc}"[:1000], result="rejected"),
            shared=True,  # triage's, on any instance
        )

    # --- escalation ----------------------------------------------------------------------

    async def _escalate(self) -> CycleOutcome:
        await self._check_pointer()
        await self._measure_queue()
        overdue = self.state.overdue(utcnow())
        for escalation in overdue:
            now = utcnow()
            own = self.state.own
            counts = self.state.counted(
                msgspec.structs.replace(own, escalated_to_human=own.escalated_to_human + 1)
            )
            late = (now - escalation.sla_due).total_seconds()
            await self._publish(
                soc.EscalatedToHuman(
                    alert_id=escalation.alert_id,
                    title=escalation.title,
                    severity=escalation.severity,
                    escalated_at=escalation.escalated_at,
                    sla_due=escalation.sla_due,
                    overdue_seconds=round(late, 1),
                    totals=soc.sum_counts(counts),
                    by_instance=counts,
                ),
                Summary(
                    action="escalated_to_human",
                    detail=f"[{escalation.severity}] {escalation.title!r} ({escalation.alert_id}) unanswered "
                    f"past its SLA: handed to the on-call analyst",
                    result="escalated_to_human",
                ),
                event_id=f"human-{escalation.alert_id}",
            )
        if not overdue:
            return CycleOutcome(
                quiet=True, detail=f"{len(self.state.open_escalations)} escalations within SLA"
            )
        return CycleOutcome(
            quiet=True,  # each hand-over is its own event
            detail=f"{len(overdue)} escalations past SLA handed to a human",
            output={"escalated_to_human": len(overdue)},
        )

    async def _check_pointer(self) -> None:
        """A missed model_published event must not leave triage on an old version."""
        with contextlib.suppress(Exception):
            pointer = await self.registry.active_pointer()
            if pointer is not None and (self.pointer is None or pointer.version != self.pointer.version):
                await self._reload(pointer)

    async def _measure_queue(self) -> None:
        with contextlib.suppress(Exception):
            info = await self.queue.consumer_info()
            self.queue_depth = info.num_pending + info.num_ack_pending

    # --- SOAR ----------------------------------------------------------------------------

    async def _run_playbooks(self) -> CycleOutcome:
        """Every confirmed threat waiting for SOAR: run its playbook, and store the runs in
        batches of ``PLAYBOOK_RUNS_PER_BATCH`` (sent back to back, confirmed together). One
        write at a time held a burst of containments behind one fsync round trip each."""
        ran: dict[str, int] = {}
        failed = 0
        runs: list[StagedEvent] = []
        own = self.state.own  # this instance's counters, the runs not yet stored included
        for alert_id, why in list(self.state.confirmed.items()):
            record = self.state.alerts.get(alert_id)
            if record is None:  # fell out of memory
                self.state.confirmed.pop(alert_id, None)
                continue
            playbook = playbooks.select(self.playbooks, record.alert)
            if playbook is None:
                self.state.confirmed.pop(alert_id, None)
                continue
            result, artefacts = playbooks.run(playbook, record.alert, utcnow())
            failed += result == "failed"
            ran[result] = ran.get(result, 0) + 1
            # each run counts the ones before it: a crash mid-batch leaves a stored prefix
            # whose counters the stream bears out
            own = msgspec.structs.replace(own, playbooks_run=own.playbooks_run + 1)
            counts = self.state.counted(own)
            runs.append(
                StagedEvent(
                    soc.PlaybookExecuted(
                        alert_id=alert_id,
                        playbook=playbook.name,
                        trigger=why,
                        result=result,
                        actions=artefacts,
                        totals=soc.sum_counts(counts),
                        by_instance=counts,
                    ),
                    Summary(
                        action="playbook_executed",
                        detail=(
                            f"{playbook.name} for {record.alert.title!r} ({alert_id}): {describe(artefacts)}"
                        ),
                        result=result,
                    ),
                    event_id=f"playbook-{alert_id}",
                )
            )
            if len(runs) >= PLAYBOOK_RUNS_PER_BATCH:
                await self._store_events(runs)
                runs = []
                own = self.state.own  # with whatever triage stored meanwhile
        if runs:
            await self._store_events(runs)
        if not ran:
            return CycleOutcome(quiet=True, detail="no confirmed threats waiting")
        return CycleOutcome(
            ok=failed == 0,
            result="success" if not failed else "failed",
            quiet=True,  # each run is its own event
            detail=", ".join(f"{n} {result}" for result, n in ran.items()),
            output=ran,
        )

    # --- threat hunting ------------------------------------------------------------------

    async def _hunt(self) -> CycleOutcome:
        advisories = await self._advisories()
        index = hunting.IocIndex(advisories)
        since = utcnow() - timedelta(hours=self.config.hunt_window_hours)
        recent = list(self.state.recent_alerts(since))
        findings = hunting.hunt(recent, index, self.state.reported_findings)
        report = soc.ThreatHuntCompleted(
            alerts_searched=len(recent), advisories=index.advisories, iocs=len(index), findings=findings
        )
        detail = (
            f"Hunted {len(recent)} recent alerts against {len(index)} indicators from "
            f"{index.advisories} advisories: {len(findings)} new findings"
        )
        if findings:
            top = findings[0]
            detail += f" (e.g. {top.ioc_type} {top.ioc_value} of {top.advisory_id} in alert {top.alert_id})"
        await self._publish(
            report,
            Summary(action="threat_hunt", detail=detail, result="findings" if findings else "no_findings"),
        )
        self.last_hunt = {"time": utcnow().isoformat(), "detail": detail, "findings": len(findings)}
        return CycleOutcome(quiet=True, detail=detail, output={"findings": len(findings)})

    async def _advisories(self) -> list[Advisory]:
        try:
            kv = await self.ctx.existing_bucket(ADVISORIES_BUCKET)
            keys = await kv.keys()
        except (BucketNotFoundError, NotFoundError, NoKeysError):
            return []
        found = []
        for key in keys:
            with contextlib.suppress(Exception):
                entry = await kv.get(key)
                if entry.value:
                    found.append(_advisory_decoder.decode(entry.value))
        return found

    # --- control and status ----------------------------------------------------------------

    async def trigger(self, args: dict[str, Any]) -> CycleOutcome:
        stats = self.stats()
        return CycleOutcome(
            action="soc_stats",
            detail=(
                f"{stats['alerts_processed']} alerts processed: {stats['auto_resolved']} auto-resolved, "
                f"{stats['escalated']} escalated, {stats['contained']} contained, "
                f"{stats['escalated_to_human']} escalated to a human; queue {stats['queue_depth']}"
            ),
            output=stats,
        )

    def stats(self) -> dict[str, Any]:
        return {
            **self.state.stats(),
            "queue_depth": self.queue_depth,
            "model_version": self.pointer.version if self.pointer else None,
            "intake_accepted": getattr(getattr(self, "intake", None), "accepted", 0),
            "intake_rejected": getattr(getattr(self, "intake", None), "rejected", 0),
        }

    def error_count(self, cycle_errors: int) -> int:
        return self.state.totals.escalated_to_human

    def status_extras(self) -> dict[str, Any]:
        totals = self.state.totals
        return {
            "alerts_processed": totals.alerts_processed,
            "auto_resolved": totals.auto_resolved,
            "escalated_to_human": totals.escalated_to_human,
            "escalated": totals.escalated,
            "contained": totals.contained,
            "open_escalations": len(self.state.open_escalations),
            "model_version": self.pointer.version if self.pointer else None,
        }

    def detail_extras(self) -> dict[str, Any]:
        return {
            "recent_decisions": self.state.recent(),
            "stats": self.stats(),
            "open_escalations": [
                {
                    "alert_id": e.alert_id,
                    "title": e.title,
                    "severity": e.severity,
                    "sla_due": e.sla_due.isoformat(),
                }
                for e in sorted(self.state.open_escalations.values(), key=lambda e: e.sla_due)[:50]
            ],
            "playbooks": [
                {"name": p.name, "file": p.file, "description": p.description} for p in self.playbooks
            ],
            "thresholds": msgspec.to_builtins(self.thresholds.__dict__),
            "last_hunt": self.last_hunt,
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _payload(data: bytes, kind: type[msgspec.Struct]) -> Any:
    return msgspec.json.decode(envelope_decoder.decode(data).data, type=kind)


def describe(artefacts: list[dict[str, Any]]) -> str:
    parts = []
    for artefact in artefacts:
        kind, status = artefact["type"], artefact.get("status")
        if kind == "block_ip" and status == "generated":
            parts.append(f"block {artefact['ip']} {artefact['direction']}")
        elif kind == "block_domain":
            parts.append(f"sinkhole {artefact['domain']}")
        elif kind == "block_hash":
            parts.append(f"block hash {artefact['sha256'][:12]}…")
        elif kind == "isolate_host":
            parts.append(f"isolate {artefact['host']}")
        elif kind == "disable_account":
            parts.append(f"disable {artefact['user']}")
        elif kind == "open_ticket":
            parts.append(f"ticket {artefact['priority']} to {artefact['queue']}")
        else:
            parts.append(f"{kind} {status}: {artefact.get('reason', '')}".strip())
    return ", ".join(parts) or "no actions"
