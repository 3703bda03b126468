"""Self-Healing Engine — `heal-check`.

Four loops:
- heartbeat_watch (30 s): every watched engine's desired state, last heartbeat and loops
  are classified healthy / stalled / unreachable / stopped (liveness.py); changes go to
  the healing log;
- subsystem_checks (60 s, what `trigger` runs): the five probes of checks.py;
- remediation (120 s): a stalled engine gets ``aoc.ctl.<slug>.restart`` from actor
  heal-check; an unreachable one is left to the launcher's supervisor (its process is
  dead; no control command can reach it) and escalated if it stays down; stale advisory
  feeds get a refresh triggered. Every target has a circuit breaker, every attempt is
  verified, and an engine whose desired state is stopped is never touched;
- report (1 h): what the last hour looked like.

The healing log and the breakers are rebuilt at start from heal-check's own events.
docs/healing.md says who does what between heal-check and the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
import structlog
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError

from contracts import subjects
from contracts.commands import reply_decoder
from contracts.events import Summary, envelope_decoder, heartbeat_decoder, utcnow
from contracts.healing import (
    HEALER,
    HEALTHY,
    STALLED,
    STOPPED,
    UNKNOWN,
    UNREACHABLE,
    BreakerChanged,
    HealingEntry,
    HealingRecorded,
    probe_bucket,
    probe_object_store,
    probe_stream,
)
from contracts.settings import Settings
from services.healing.breaker import CircuitBreaker, Transition
from services.healing.checks import FAILED, SKIPPED, CheckResult, SubsystemChecks
from services.healing.config import HealingSettings
from services.healing.liveness import Memory, Observation, Thresholds, Verdict, classify, loops_from_detail
from services.runtime import CycleOutcome, Engine, Loop

log = structlog.get_logger()

ADVISORY_FEEDS = "advisory-refresh:feeds"  # the breaker target of "trigger a refresh of stale feeds"
STATUS_LOG_ENTRIES = 10


@dataclass
class EngineHealth:
    health: str
    reason: str
    since: datetime  # when it entered this health
    desired: str
    boot: str | None = None
    beat_age: float | None = None
    healthy_boot: str | None = None  # the process it last was healthy in: tells a restart apart


@dataclass
class Attempt:
    """A remediation sent and not yet judged."""

    action: str  # restart | trigger
    at: datetime
    problem: str


class HealingEngine(Engine):
    slug = "heal-check"

    def __init__(self, settings: Settings, config: HealingSettings | None = None) -> None:
        super().__init__(settings)
        self.config = config or HealingSettings()
        timeout = settings.heartbeat_timeout or 3 * settings.heartbeat_interval
        self.limits = Thresholds(
            heartbeat_timeout=timeout,
            stall_factor=self.config.stall_factor,
            stall_floor=self.config.stall_floor,
            divergence_grace=self.config.divergence_grace,
            startup_grace=self.config.startup_grace if self.config.startup_grace is not None else 2 * timeout,
        )
        self.engines: dict[str, EngineHealth] = {}
        self.memory: dict[str, Memory] = {}
        self.checks: dict[str, CheckResult] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self.pending: dict[str, Attempt] = {}
        self.escalated_at: dict[str, datetime] = {}
        self.healing_log: deque[HealingEntry] = deque(maxlen=self.config.log_size)
        self.window: Counter[str] = Counter()  # what the hourly report sums up
        self._noted: set[tuple[str, str]] = set()  # one log line per target and episode
        self._check_logged_ok: dict[str, bool] = {}  # what the log last said about each subsystem
        self._report_since: datetime | None = None
        self._watch_lock = asyncio.Lock()
        self._started = time.monotonic()
        feeds = [ADVISORY_FEEDS] if "advisory-refresh" in self.config.watched else []
        for target in (*self.config.watched, *feeds):  # every target shows, closed until it fails
            self._breaker(target)

    def loops(self) -> list[Loop]:
        return [
            Loop("heartbeat_watch", self.interval("heartbeat_watch", 30), self.watch_engines),
            Loop(
                "subsystem_checks", self.interval("subsystem_checks", 60), self.check_subsystems, primary=True
            ),
            Loop("remediation", self.interval("remediation", 120), self.remediate),
            Loop("report", self.interval("report", 3600), self.report),
        ]

    # --- lifetime ---------------------------------------------------------------------------

    async def setup(self) -> None:
        await self._ensure_probes()
        self.subsystems = SubsystemChecks(
            self.ctx,
            timeout=self.config.check_timeout,
            lag_threshold=self.config.consumer_lag_threshold,
            freshness_factor=self.config.freshness_factor,
            desired_state=self.desired_state,
        )
        await self._replay_own_events()
        self._started = time.monotonic()

    async def _ensure_probes(self) -> None:
        # a failure here is what the checks will report; the engine must still start
        try:
            await self.ctx.stream(probe_stream(self.settings))
            await self.ctx.bucket(probe_bucket(self.settings))
            await self.ctx.object_store(probe_object_store(self.settings))
        except Exception:
            log.exception("healing.probe_setup_failed")

    async def desired_state(self, slug: str) -> str:
        """The desired state an engine comes back with; what an operator decided."""
        return await self.ctx.desired_of(slug)

    # --- heartbeat watch ----------------------------------------------------------------------

    async def watch_engines(self) -> CycleOutcome:
        async with self._watch_lock:
            now = utcnow()
            observations = await asyncio.gather(*(self._observe(slug) for slug in self.config.watched))
            uptime = time.monotonic() - self._started
            noted = []
            for obs in observations:
                verdict = classify(obs, now, self.limits, self.memory.setdefault(obs.slug, Memory()), uptime)
                entry = self._judge_change(obs, verdict, now)
                if entry is not None:
                    noted.append(entry)
                    await self._record(entry)
        self.window["watch_passes"] += 1
        unwell = {slug: h.health for slug, h in self.engines.items() if h.health not in (HEALTHY, STOPPED)}
        detail = "; ".join(f"{e.target}: {e.event} ({e.problem or e.outcome})" for e in noted) or (
            f"{len(observations)} engines watched; " + (f"not healthy: {unwell}" if unwell else "all healthy")
        )
        return CycleOutcome(
            detail=detail,
            action="heartbeat_watch",
            quiet=not noted,
            output={"engines": self._engines_view()},
        )

    async def _observe(self, slug: str) -> Observation:
        desired = await self.desired_state(slug)
        try:
            raw = await self.ctx.last(subjects.hb(slug), stream=subjects.HEARTBEATS_STREAM)
        except NotFoundError:
            raw = None
        if raw is None:
            return Observation(slug=slug, desired=desired)
        beat = heartbeat_decoder.decode(raw.data)
        age = (utcnow() - raw.time).total_seconds() if raw.time else None  # the stream's clock
        obs = Observation(
            slug=slug, desired=desired, beat_state=beat.status.state, beat_boot=beat.boot_id, beat_age=age
        )
        if (
            desired != "running"
            or age is None
            or age > self.limits.heartbeat_timeout
            or obs.beat_state != "running"
        ):
            return obs
        try:
            # short: one engine that died mid-request must not hold up the whole pass
            msg = await self.ctx.request(
                subjects.ctl(slug, "detail"), b"", timeout=self.config.detail_timeout
            )
            reply = reply_decoder.decode(msg.data)
            return dataclasses.replace(obs, loops=loops_from_detail(reply.result or {}))
        except (NatsTimeoutError, NoRespondersError, msgspec.DecodeError) as exc:
            why = "no reply within the timeout" if isinstance(exc, NatsTimeoutError) else type(exc).__name__
            return dataclasses.replace(obs, detail_error=why)

    def _judge_change(self, obs: Observation, verdict: Verdict, now: datetime) -> HealingEntry | None:
        """Update what heal-check believes about an engine; the log entry a change deserves."""
        previous = self.engines.get(obs.slug)
        same = previous is not None and previous.health == verdict.health
        boot = obs.beat_boot or (previous.boot if previous else None)
        last_healthy_boot = previous.healthy_boot if previous else None
        self.engines[obs.slug] = EngineHealth(
            health=verdict.health,
            reason=verdict.reason,
            since=previous.since if same and previous else now,
            desired=obs.desired,
            boot=boot,
            beat_age=round(obs.beat_age, 2) if obs.beat_age is not None else None,
            healthy_boot=boot if verdict.health == HEALTHY else last_healthy_boot,
        )
        was = previous.health if previous else UNKNOWN
        new_boot = bool(last_healthy_boot and obs.beat_boot and last_healthy_boot != obs.beat_boot)

        def entry(event: str, detail: str, outcome: str = "success", problem: str = "") -> HealingEntry:
            breaker = self.breakers.get(obs.slug)
            return HealingEntry(
                time=now,
                target=obs.slug,
                event=event,
                detail=detail,
                outcome=outcome,
                problem=problem,
                breaker=breaker.state if breaker else "",
            )

        if verdict.health == UNREACHABLE and was != UNREACHABLE:
            return entry(
                "detected",
                f"unreachable: {verdict.reason}. Its process is down or cut off from NATS; the launcher's "
                "supervisor restarts processes — heal-check waits "
                f"{self.config.supervisor_grace:g}s, then escalates",
                outcome="pending",
                problem=UNREACHABLE,
            )
        if verdict.health == STALLED and was != STALLED:
            return entry(
                "detected",
                f"stalled: {verdict.reason}; the next remediation pass restarts it",
                outcome="pending",
                problem=STALLED,
            )
        if verdict.health == STOPPED and was not in (STOPPED, UNKNOWN):
            return entry(
                "operator_stopped", "stopped by an operator: heal-check leaves it alone", outcome="skipped"
            )
        if verdict.health == HEALTHY and was in (UNREACHABLE, STALLED):
            if new_boot:
                how = f"a new process (boot {obs.beat_boot[:8]})"
            else:
                how = "the same process" if last_healthy_boot else "first heartbeats seen"
            return entry("recovered", f"running again, {how}: {verdict.reason}", problem=was)
        if verdict.health == HEALTHY and was == HEALTHY and new_boot:
            return entry(
                "restarted",
                f"process restarted between two watches (boot {last_healthy_boot[:8]} -> "
                f"{obs.beat_boot[:8]}): its supervisor brought it back",
                problem=UNREACHABLE,
            )
        return None

    # --- subsystem checks ---------------------------------------------------------------------

    async def check_subsystems(self) -> CycleOutcome:
        results = await self.subsystems.run_all()
        now = utcnow()
        # while the platform starts with us, a subsystem that is not up yet is not news
        settling = time.monotonic() - self._started < self.limits.startup_grace
        changed = []
        for name, result in results.items():
            self.window[f"check:{name}"] += 1
            if not result.ok:
                self.window[f"check_failed:{name}"] += 1
            logged_ok = self._check_logged_ok.get(name, True)
            if result.ok == logged_ok or (settling and not result.ok):
                continue
            self._check_logged_ok[name] = result.ok
            entry = HealingEntry(
                time=now,
                target=f"subsystem:{name}",
                event="recovered" if result.ok else "detected",
                detail=result.detail,
                outcome="success" if result.ok else "failed",
                problem="" if result.ok else "degraded",
            )
            changed.append(entry)
            await self._record(entry)
        self.checks = results
        failing = [r for r in results.values() if r.status == FAILED]
        detail = ", ".join(f"{r.name} {r.status}" for r in results.values())
        if failing:
            detail += " — " + "; ".join(f"{r.name}: {r.detail}" for r in failing)
        return CycleOutcome(
            ok=True,  # heal-check did its job; what it found is in the result and the log
            result="degraded" if failing else "success",
            detail=detail,
            action="subsystem_checks",
            quiet=not changed,
            output={"checks": {name: msgspec.to_builtins(r) for name, r in results.items()}},
        )

    async def trigger(self, args: dict[str, Any]) -> CycleOutcome:
        """All checks now, concurrently: the five subsystems and every engine's liveness."""
        checked, watched = await asyncio.gather(self.check_subsystems(), self.watch_engines())
        failing = [name for name, r in self.checks.items() if r.status == FAILED]
        unwell = {slug: h.health for slug, h in self.engines.items() if h.health not in (HEALTHY, STOPPED)}
        detail = f"subsystems: {', '.join(failing) + ' failing' if failing else 'all ok'}; engines: " + (
            ", ".join(f"{slug} {health}" for slug, health in unwell.items()) or "all healthy or stopped"
        )
        return CycleOutcome(
            ok=True,
            result="degraded" if failing or unwell else "success",
            detail=detail,
            action="health_checks",
            output={**checked.output, **watched.output},
        )

    # --- remediation ---------------------------------------------------------------------------

    async def remediate(self) -> CycleOutcome:
        now = utcnow()
        if time.monotonic() - self._started < self.limits.startup_grace:
            # the platform may be starting with us: act only on what has been watched a while
            return CycleOutcome(detail="within the startup grace: observing only", quiet=True)
        entries: list[HealingEntry] = []
        for slug in self.config.watched:
            entries += await self._remediate_engine(slug, now)
        entries += await self._remediate_stale_feeds(now)
        failed = [e for e in entries if e.outcome == "failed"]
        detail = "; ".join(f"{e.target}: {e.event} — {e.detail}" for e in entries) or "nothing to remediate"
        return CycleOutcome(
            ok=not failed,
            result="failed" if failed else ("remediated" if entries else "success"),
            detail=detail,
            action="remediation",
            quiet=not entries,
            output={"actions": [msgspec.to_builtins(e) for e in entries]},
        )

    async def _remediate_engine(self, slug: str, now: datetime) -> list[HealingEntry]:
        health = self.engines.get(slug)
        if health is None:
            return []
        breaker = self._breaker(slug)
        out: list[HealingEntry] = []
        await self._poll(breaker, now)
        # read again right before acting: an operator's stop a moment ago wins
        if await self.desired_state(slug) == STOPPED:
            if self.pending.pop(slug, None):
                out.append(
                    await self._log(
                        slug, "skipped", "an operator stopped it: remediation abandoned", now, "skipped"
                    )
                )
            return out
        pending = self.pending.get(slug)
        if health.health == HEALTHY:
            self._noted = {n for n in self._noted if n[0] != slug}
            self.escalated_at.pop(slug, None)
            if pending:
                del self.pending[slug]
                out.append(
                    await self._log(slug, "remediated", f"the {pending.action} worked: {health.reason}", now)
                )
            if not breaker.pristine:
                await self._moved(breaker, breaker.succeeded(now))
            return out
        if pending:
            if (now - pending.at).total_seconds() < self.config.verify_after:
                return out  # give it time
            del self.pending[slug]
            waited = f"{self.config.verify_after:g}s after the {pending.action}"
            why = f"still {health.health} {waited}: {health.reason}"
            out.append(await self._log(slug, "remediation_failed", why, now, "failed", health.health))
            await self._moved(breaker, breaker.failed(now, why))

        if health.health == STALLED:
            if not breaker.allows():
                out += await self._note_blocked(slug, breaker, now)
                return out
            breaker.attempted()
            ok, message = await self._send(slug, "restart", f"heal-check: stalled — {health.reason}")
            if ok:
                self.pending[slug] = Attempt(action="restart", at=now, problem=STALLED)
                out.append(await self._log(slug, "restart_requested", message, now, "pending", STALLED))
            else:
                out.append(await self._log(slug, "remediation_failed", message, now, "failed", STALLED))
                await self._moved(breaker, breaker.failed(now, message))
        elif health.health == UNREACHABLE:
            down_for = (now - health.since).total_seconds()
            last = self.escalated_at.get(slug)
            if down_for < self.config.supervisor_grace:
                return out  # the supervisor's move
            if last and (now - last).total_seconds() < self.config.supervisor_grace:
                return out
            if not breaker.allows():
                out += await self._note_blocked(slug, breaker, now)
                return out
            self.escalated_at[slug] = now
            why = (
                f"still unreachable after {down_for:.0f}s: the supervisor has not brought the process back; "
                "an operator must look (launcher or container logs)"
            )
            out.append(await self._log(slug, "escalated", why, now, "failed", UNREACHABLE))
            await self._moved(breaker, breaker.failed(now, "process not revived by the supervisor"))
        return out

    async def _remediate_stale_feeds(self, now: datetime) -> list[HealingEntry]:
        if "advisory-refresh" not in self.config.watched:
            return []  # heal-check remediates only engines it watches
        result = self.checks.get("advisory_freshness")
        breaker = self._breaker(ADVISORY_FEEDS)
        await self._poll(breaker, now)
        pending = self.pending.get(ADVISORY_FEEDS)
        if result is None or result.status == SKIPPED:
            self.pending.pop(ADVISORY_FEEDS, None)
            return []
        out: list[HealingEntry] = []
        if result.ok:
            if pending:
                del self.pending[ADVISORY_FEEDS]
                out.append(
                    await self._log(
                        ADVISORY_FEEDS, "remediated", "feeds are fresh again after the refresh", now
                    )
                )
            if not breaker.pristine:
                await self._moved(breaker, breaker.succeeded(now))
            return out
        if pending:
            if (now - pending.at).total_seconds() < self.config.verify_after:
                return out
            del self.pending[ADVISORY_FEEDS]
            why = f"still stale after the refresh: {result.detail}"
            out.append(await self._log(ADVISORY_FEEDS, "remediation_failed", why, now, "failed", "stale"))
            await self._moved(breaker, breaker.failed(now, why))
        engine = self.engines.get("advisory-refresh")
        if engine is not None and engine.health != HEALTHY:
            return out  # the engine itself is the problem: its own remediation comes first
        if not breaker.allows():
            return out + await self._note_blocked(ADVISORY_FEEDS, breaker, now)
        breaker.attempted()
        ok, message = await self._send("advisory-refresh", "trigger", f"heal-check: {result.detail}"[:1000])
        if ok:
            self.pending[ADVISORY_FEEDS] = Attempt(action="trigger", at=now, problem="stale")
            out.append(await self._log(ADVISORY_FEEDS, "refresh_requested", message, now, "pending", "stale"))
        else:
            out.append(await self._log(ADVISORY_FEEDS, "remediation_failed", message, now, "failed", "stale"))
            await self._moved(breaker, breaker.failed(now, message))
        return out

    async def _send(self, slug: str, verb: str, reason: str) -> tuple[bool, str]:
        command: dict[str, Any] = {"actor": HEALER, "reason": reason[:1000]}
        if verb == "restart":
            # the engine itself refuses when an operator has stopped it meanwhile: its own
            # desired state is the truth, not what heal-check read a moment ago
            command["args"] = {"unless_stopped": True}
        body = msgspec.json.encode(command)
        try:
            msg = await self.ctx.request(
                subjects.ctl(slug, verb), body, timeout=self.settings.control_timeout
            )
        except NoRespondersError:
            return False, f"{verb} command: no responder on {subjects.ctl(slug, verb)}"
        except NatsTimeoutError:
            return False, f"{verb} command: no reply within {self.settings.control_timeout:g}s"
        try:
            reply = reply_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return False, f"{verb} command: unreadable reply"
        if not reply.ok:
            return False, f"{verb} command refused: {reply.message}"
        return True, f"{verb} command sent as {HEALER}: {reply.message}"

    async def _note_blocked(self, target: str, breaker: CircuitBreaker, now: datetime) -> list[HealingEntry]:
        if (target, breaker.state) in self._noted:
            return []
        self._noted.add((target, breaker.state))
        if breaker.state == "open":
            detail = (
                f"circuit breaker open: no remediation for {breaker.reopens_in(now):.0f}s; needs an operator"
            )
        else:
            detail = "circuit breaker half-open: waiting for the trial's result"
        return [await self._log(target, "skipped", detail, now, "skipped")]

    # --- the hourly report -------------------------------------------------------------------------

    async def report(self) -> CycleOutcome:
        now = utcnow()
        if self._report_since is None:  # the loop's first run, at start: the first hour begins
            self._report_since, self.window = now, Counter()
            return CycleOutcome(detail="reporting period started", quiet=True)
        window, self.window = self.window, Counter()
        period = (now - self._report_since).total_seconds()
        self._report_since = now
        checks = {
            name: {"runs": window[f"check:{name}"], "failed": window[f"check_failed:{name}"]}
            for name in (key.split(":", 1)[1] for key in window if key.startswith("check:"))
        }
        actions = {key.split(":", 1)[1]: n for key, n in window.items() if key.startswith("event:")}
        open_breakers = sorted(t for t, b in self.breakers.items() if b.state != "closed")
        unwell = {slug: h.health for slug, h in self.engines.items() if h.health not in (HEALTHY, STOPPED)}
        failing = {name: n["failed"] for name, n in checks.items() if n["failed"]}
        check_passes = max((n["runs"] for n in checks.values()), default=0)
        detail = (
            f"last {period / 60:.0f} min: {window['watch_passes']} liveness passes, {check_passes} "
            f"check passes (failures: {failing or 'none'}); healing actions: {actions or 'none'}; "
            f"open breakers: {', '.join(open_breakers) or 'none'}; not healthy now: {unwell or 'none'}"
        )
        return CycleOutcome(
            detail=detail,
            action="healing_report",
            output={
                "period_seconds": round(period, 1),
                "checks": checks,
                "actions": actions,
                "open_breakers": open_breakers,
                "engines": self._engines_view(),
            },
        )

    # --- the healing log, breakers, and rebuilding them ---------------------------------------------

    def _breaker(self, target: str) -> CircuitBreaker:
        if target not in self.breakers:
            self.breakers[target] = CircuitBreaker(
                target, threshold=self.config.breaker_threshold, cooldown_s=self.config.breaker_cooldown
            )
        return self.breakers[target]

    async def _poll(self, breaker: CircuitBreaker, now: datetime) -> None:
        await self._moved(breaker, breaker.poll(now))

    async def _moved(self, breaker: CircuitBreaker, transition: Transition | None) -> None:
        if transition is None:
            return
        self._noted.discard((breaker.target, transition.previous))
        entry = self._breaker_entry(breaker.snapshot().target, transition, utcnow())
        self._remember(entry)
        result = "failed" if transition.state == "open" else "success"
        await self.ctx.publish(
            BreakerChanged(
                breaker=breaker.snapshot(), previous=transition.previous, reason=transition.reason
            ),
            Summary(
                action=f"breaker_{transition.state}",
                detail=f"{breaker.target}: {transition.reason}",
                result=result,
            ),
        )

    @staticmethod
    def _breaker_entry(target: str, transition: Transition, when: datetime) -> HealingEntry:
        return HealingEntry(
            time=when,
            target=target,
            event=f"breaker_{transition.state}",
            detail=transition.reason,
            outcome="failed" if transition.state == "open" else "success",
            breaker=transition.state,
        )

    def _entry(
        self, target: str, event: str, detail: str, now: datetime, outcome: str = "success", problem: str = ""
    ) -> HealingEntry:
        breaker = self.breakers.get(target)
        return HealingEntry(
            time=now,
            target=target,
            event=event,
            detail=detail,
            outcome=outcome,
            problem=problem,
            breaker=breaker.state if breaker else "",
        )

    def _remember(self, entry: HealingEntry) -> None:
        self.healing_log.append(entry)
        self.window[f"event:{entry.event}"] += 1

    async def _log(
        self, target: str, event: str, detail: str, now: datetime, outcome: str = "success", problem: str = ""
    ) -> HealingEntry:
        """A healing-log entry, recorded at once (log order = event order = the order things
        happened), and returned for the cycle's summary."""
        entry = self._entry(target, event, detail, now, outcome, problem)
        await self._record(entry)
        return entry

    async def _record(self, entry: HealingEntry) -> None:
        self._remember(entry)
        await self.ctx.publish(
            HealingRecorded(entry=entry),
            Summary(
                action=f"healing_{entry.event}"[:64],
                detail=f"{entry.target}: {entry.detail}",
                result=entry.outcome,
            ),
        )

    async def _replay_own_events(self) -> None:
        """Healing log and breakers from this engine's own events of the last ``replay_hours``."""
        last = 0
        for event_type in (HealingRecorded.TYPE, BreakerChanged.TYPE):
            with contextlib.suppress(NotFoundError):
                raw = await self.ctx.last(subjects.evt(self.slug, event_type))
                last = max(last, raw.seq if raw else 0)
        if not last:
            return
        since = utcnow() - timedelta(hours=self.config.replay_hours)
        # the newest relevant event may be older than the window: then nothing is replayed
        await self.ctx.replay(
            subjects.evt(self.slug, "*"),
            lambda _seq, data, _at: self._apply_own_event(data),
            start_time=since,
            until_seq=last,
        )
        log.info("healing.rebuilt", log_entries=len(self.healing_log), breakers=len(self.breakers))

    def _apply_own_event(self, data: bytes) -> None:
        envelope = envelope_decoder.decode(data)
        if envelope.type == HealingRecorded.TYPE:
            self.healing_log.append(msgspec.json.decode(envelope.data, type=HealingRecorded).entry)
        elif envelope.type == BreakerChanged.TYPE:
            changed = msgspec.json.decode(envelope.data, type=BreakerChanged)
            snapshot = changed.breaker
            self.breakers[snapshot.target] = CircuitBreaker.restore(
                snapshot, threshold=self.config.breaker_threshold, cooldown_s=self.config.breaker_cooldown
            )
            transition = Transition(changed.previous, snapshot.state, changed.reason)
            self.healing_log.append(self._breaker_entry(snapshot.target, transition, envelope.time))

    # --- status -----------------------------------------------------------------------------------

    def _engines_view(self) -> dict[str, Any]:
        return {
            slug: {
                "health": h.health,
                "reason": h.reason,
                "since": h.since.isoformat(),
                "desired": h.desired,
                "heartbeat_age_seconds": h.beat_age,
            }
            for slug, h in self.engines.items()
        }

    def _breakers_view(self) -> dict[str, Any]:
        view = {}
        for target, breaker in sorted(self.breakers.items()):
            snap = msgspec.to_builtins(breaker.snapshot())
            snap.pop("target")
            view[target] = snap
        return view

    def status_extras(self) -> dict[str, Any]:
        newest = list(self.healing_log)[-STATUS_LOG_ENTRIES:][::-1]
        return {
            "circuit_breakers": self._breakers_view(),
            "healing_log": msgspec.to_builtins(newest),
            "engines": {slug: h.health for slug, h in self.engines.items()},
            "subsystems": {name: r.status for name, r in self.checks.items()},
        }

    def detail_extras(self) -> dict[str, Any]:
        return {
            "healing_log": msgspec.to_builtins(list(self.healing_log)[::-1]),
            "engines": self._engines_view(),
            "checks": {name: msgspec.to_builtins(r) for name, r in self.checks.items()},
            "pending_remediations": {
                target: {"action": a.action, "at": a.at.isoformat(), "problem": a.problem}
                for target, a in self.pending.items()
            },
            "thresholds": {
                **self.limits.__dict__,
                "verify_after": self.config.verify_after,
                "supervisor_grace": self.config.supervisor_grace,
                "breaker_threshold": self.config.breaker_threshold,
                "breaker_cooldown": self.config.breaker_cooldown,
                "freshness_factor": self.config.freshness_factor,
            },
            "watched": list(self.config.watched),
        }
