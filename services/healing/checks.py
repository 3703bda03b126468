"""The five subsystem checks. Each probes one thing for real and answers a
``CheckResult``; the judgement of what it saw is a pure function beside it.

- jetstream: a probe message written to and read back from heal-check's own stream,
  the event stream answering, and no consumer lagging past the threshold;
- kv_object_store: a key written/read/compared in a probe bucket, a small object put
  and read back (digest compared) in a probe object store, and the desired-state
  bucket readable (remediation depends on it);
- ml_models: ``aoc.ml.probe`` answered by ml-retrain — the active model loaded and
  scored a probe alert; no responder is a failure with that reason;
- advisory_freshness: every advisory feed fetched within N x its schedule (from the
  ``aoc_advisory_feeds`` bucket); skipped while an operator keeps advisory-refresh stopped;
- gateway: ``aoc.gateway.health`` answered with status ok.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import BucketNotFoundError, NoKeysError, NotFoundError

from contracts import subjects
from contracts.advisory import FEEDS_BUCKET, FeedState, feed_state_decoder
from contracts.events import utcnow
from contracts.healing import PROBE_BUCKET, PROBE_STREAM, PROBE_SUBJECT, probe_object_store
from contracts.ml import PROBE_SUBJECT as ML_PROBE_SUBJECT
from contracts.ml import ProbeReply
from services.runtime.context import EngineContext

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
NAMES = ("jetstream", "kv_object_store", "ml_models", "advisory_freshness", "gateway")


class CheckResult(msgspec.Struct, kw_only=True):
    name: str
    status: str  # ok | failed | skipped
    detail: str
    duration_ms: float = 0.0
    data: dict[str, Any] = {}

    @property
    def ok(self) -> bool:
        return self.status != FAILED


async def timed(name: str, check: Callable[[], Awaitable[CheckResult]], timeout: float) -> CheckResult:
    """Run one check with a deadline; whatever goes wrong becomes a failed result with the reason."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            result = await check()
    except TimeoutError:
        result = CheckResult(name=name, status=FAILED, detail=f"no answer within {timeout:g}s")
    except Exception as exc:
        result = CheckResult(name=name, status=FAILED, detail=f"{type(exc).__name__}: {exc}")
    result.duration_ms = round((time.perf_counter() - started) * 1000, 2)
    return result


# --- judgements (pure) ----------------------------------------------------------------------


def lagging_consumers(consumers: list[tuple[str, str, int]], threshold: int) -> list[str]:
    """``(stream, consumer, pending)`` -> the ones over the threshold, worst first."""
    over = sorted((c for c in consumers if c[2] > threshold), key=lambda c: -c[2])
    return [f"{stream}/{name}: {pending} pending" for stream, name, pending in over]


def stale_feeds(states: list[FeedState], now: datetime, factor: float) -> list[str]:
    stale = []
    for state in states:
        allowed = factor * state.schedule_seconds
        if state.last_success is None:
            why = f"never fetched ({state.last_error})" if state.last_error else "never fetched"
            stale.append(f"{state.name}: {why}")
            continue
        age = (now - state.last_success).total_seconds()
        if age > allowed:
            error = f"; last error: {state.last_error}" if state.last_error else ""
            stale.append(f"{state.name}: last fetched {age:.0f}s ago (allowed {allowed:g}s){error}")
    return stale


def judge_gateway(body: dict[str, Any]) -> CheckResult:
    status = body.get("status")
    projection = body.get("projection") or {}
    data = {"status": status, "lag": projection.get("lag"), "uptime_seconds": body.get("uptime_seconds")}
    if status == "ok":
        return CheckResult(name="gateway", status=OK, detail="gateway healthy", data=data)
    nats = body.get("nats") or {}
    reasons = []
    if not nats.get("connected", True):
        reasons.append("not connected to NATS")
    if not projection.get("replayed", True):
        reasons.append("stream replay not finished")
    return CheckResult(
        name="gateway",
        status=FAILED,
        detail=f"gateway {status}: {', '.join(reasons) or 'degraded'}",
        data=data,
    )


def judge_probe(reply: ProbeReply) -> CheckResult:
    data = {"version": reply.version, "scores": reply.scores}
    if reply.ok:
        return CheckResult(
            name="ml_models",
            status=OK,
            detail=f"model {reply.version} loaded and scored the probe",
            data=data,
        )
    return CheckResult(
        name="ml_models", status=FAILED, detail=f"model probe failed: {reply.error}", data=data
    )


# --- probes (I/O) ---------------------------------------------------------------------------


class SubsystemChecks:
    def __init__(
        self,
        bus: EngineContext,
        *,
        timeout: float,
        lag_threshold: int,
        freshness_factor: float,
        desired_state: Callable[[str], Awaitable[str]],
    ) -> None:
        self.bus = bus  # heal-check's context: probing the bus is its job
        self.timeout = timeout
        self.lag_threshold = lag_threshold
        self.freshness_factor = freshness_factor
        self.desired_state = desired_state

    async def run_all(self) -> dict[str, CheckResult]:
        checks = {
            "jetstream": self.jetstream,
            "kv_object_store": self.kv_object_store,
            "ml_models": self.ml_models,
            "advisory_freshness": self.advisory_freshness,
            "gateway": self.gateway,
        }
        results = await asyncio.gather(*(timed(name, check, self.timeout) for name, check in checks.items()))
        return {result.name: result for result in results}

    async def jetstream(self) -> CheckResult:
        nonce = os.urandom(8).hex()
        ack = await self.bus.enqueue(PROBE_SUBJECT, nonce.encode(), msg_id=None, deadline=self.timeout)
        stored = await self.bus.last(PROBE_SUBJECT, stream=PROBE_STREAM)
        if stored is None or stored.data != nonce.encode():
            return CheckResult(
                name="jetstream", status=FAILED, detail="probe read back differs from what was written"
            )
        events, streams = await asyncio.gather(
            self.bus.stream_state(subjects.EVENTS_STREAM), self.bus.streams()
        )
        names = [stream.config.name for stream in streams]
        per_stream = await asyncio.gather(*(self.bus.consumers(name) for name in names))
        consumers = [
            (name, consumer.name, consumer.num_pending or 0)
            for name, infos in zip(names, per_stream, strict=True)
            for consumer in infos
        ]
        lagging = lagging_consumers(consumers, self.lag_threshold)
        data = {
            "probe_seq": ack.seq,
            "events_last_seq": events.last_seq,
            "consumers": len(consumers),
            "max_pending": max((pending for *_, pending in consumers), default=0),
        }
        if lagging:
            detail = f"consumers lagging over {self.lag_threshold}: " + "; ".join(lagging[:5])
            return CheckResult(name="jetstream", status=FAILED, detail=detail, data=data)
        return CheckResult(
            name="jetstream",
            status=OK,
            detail=f"write/read ok; {len(consumers)} consumers within lag",
            data=data,
        )

    async def kv_object_store(self) -> CheckResult:
        nonce = os.urandom(8).hex().encode()
        kv = await self.bus.existing_bucket(PROBE_BUCKET)
        revision = await kv.put("probe", nonce)
        entry = await kv.get("probe")
        if entry.value != nonce:
            return CheckResult(name="kv_object_store", status=FAILED, detail="KV probe read back differs")
        blob = os.urandom(256)
        store = await self.bus.object_store(probe_object_store(self.bus.settings))
        # a new name each time: overwriting or deleting an object purges its old chunks,
        # which engines may not do under `aoc up`; the store's 1 h TTL clears old probes
        name = f"probe-{nonce.decode()}"
        await store.put(name, blob)
        fetched = await store.get(name)
        if hashlib.sha256(fetched.data or b"").digest() != hashlib.sha256(blob).digest():
            return CheckResult(
                name="kv_object_store", status=FAILED, detail="object store probe digest differs"
            )
        return CheckResult(
            name="kv_object_store",
            status=OK,
            detail="KV and object store write/read ok",
            data={"kv_revision": revision},
        )

    async def ml_models(self) -> CheckResult:
        try:
            msg = await self.bus.request(ML_PROBE_SUBJECT, b"", timeout=self.timeout)
        except NoRespondersError:
            return CheckResult(
                name="ml_models",
                status=FAILED,
                detail=f"no responder on {ML_PROBE_SUBJECT}: ml-retrain is not running or answers no probes",
            )
        except NatsTimeoutError:
            return CheckResult(
                name="ml_models",
                status=FAILED,
                detail=f"ml-retrain did not answer the probe within {self.timeout:g}s",
            )
        try:
            reply = msgspec.json.decode(msg.data, type=ProbeReply)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return CheckResult(name="ml_models", status=FAILED, detail=f"unreadable probe reply: {exc}")
        return judge_probe(reply)

    async def advisory_freshness(self) -> CheckResult:
        if await self.desired_state("advisory-refresh") == "stopped":
            return CheckResult(
                name="advisory_freshness",
                status=SKIPPED,
                detail="advisory-refresh is stopped by an operator: feeds are not expected to be fresh",
            )
        try:
            kv = await self.bus.existing_bucket(FEEDS_BUCKET)
            states = [feed_state_decoder.decode((await kv.get(key)).value) for key in await kv.keys()]
        except (BucketNotFoundError, NotFoundError, NoKeysError):
            states = []
        if not states:
            return CheckResult(
                name="advisory_freshness",
                status=FAILED,
                detail="no feed state recorded: advisory-refresh has not refreshed any feed",
            )
        stale = stale_feeds(states, utcnow(), self.freshness_factor)
        data = {"feeds": len(states), "stale": [line.split(":", 1)[0] for line in stale]}
        if stale:
            return CheckResult(
                name="advisory_freshness", status=FAILED, detail="stale feeds: " + "; ".join(stale), data=data
            )
        return CheckResult(
            name="advisory_freshness",
            status=OK,
            detail=f"{len(states)} feeds fetched within {self.freshness_factor:g}x their schedule",
            data=data,
        )

    async def gateway(self) -> CheckResult:
        try:
            msg = await self.bus.request(subjects.GATEWAY_HEALTH, b"", timeout=self.timeout)
        except NoRespondersError:
            return CheckResult(
                name="gateway", status=FAILED, detail=f"no gateway answers {subjects.GATEWAY_HEALTH}"
            )
        except NatsTimeoutError:
            return CheckResult(
                name="gateway", status=FAILED, detail=f"gateway did not answer within {self.timeout:g}s"
            )
        return judge_gateway(msgspec.json.decode(msg.data))
