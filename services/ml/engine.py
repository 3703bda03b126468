"""ML Training Pipeline — `ml-retrain`.

The story:
1. On a fresh install there is no model: the engine trains v1 on the deterministic
   generator's alerts, checks it against the floors, stores it in the object store and
   announces it (``model_published``), so the SOC can triage from the first minute.
2. Analysts' verdicts arrive on ``AOC_FEEDBACK``; the ``feedback`` loop pulls them with
   a durable consumer into the training buffer.
3. When the buffer reaches ``retrain_threshold`` (or on ``trigger``) the ``retrain`` loop
   trains a candidate on the generator's alerts plus every verdict so far, evaluates
   it and the active version on the same held-out set, and promotes it only if it is
   not worse (services/ml/evaluation.py). Every run is a ``model_evaluated`` event and
   a ``performance_log`` entry; a promotion is a ``model_published`` event the SOC
   hot-reloads on.
4. ``aoc.ml.probe`` answers heal-check: the active version, loaded from the store with
   every safety check, scoring a probe alert.

State survives restarts: the trainer's watermark lives beside the pointer in KV, the
performance log is replayed from the engine's own events, and the buffer is rebuilt
from the feedback stream between the watermark and the durable consumer's ack floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter, deque
from typing import Any

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig
from nats.js.errors import KeyNotFoundError

from contracts import ml, soc, subjects
from contracts.events import Summary, new_id, utcnow
from services.ml.config import MlConfig
from services.ml.generator import BOOTSTRAP_SEED, HOLDOUT_SEED
from services.ml.models import TrainingCancelled
from services.ml.pipeline import Dataset, TrainingResult, run_training
from services.ml.probe import implausible, probe_scores
from services.ml.registry import ModelRegistry
from services.runtime import CycleOutcome, Engine, Loop, StopRequested
from services.shared.triage.bundle import ModelBundle
from services.shared.triage.registry import ModelRefused

log = structlog.get_logger()

BOOTSTRAP_RETRY = 60.0  # seconds between bootstrap attempts while there is no model
TRAINER_KEY = "trainer"  # beside `active` in aoc_model_registry: the trainer's watermark


class TrainerState(msgspec.Struct, kw_only=True):
    trained_through_seq: int = 0  # AOC_FEEDBACK sequence the last run consumed up to
    total_retrains: int = 0
    last_version: int = 0


class MlEngine(Engine):
    slug = "ml-retrain"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.config = MlConfig()
        self.buffer: dict[int, soc.AnalystFeedback] = {}  # stream seq -> verdict not yet trained on
        self.trainer = TrainerState()
        self.performance_log: deque[dict[str, Any]] = deque(maxlen=50)
        self.active: ModelBundle | None = None
        self.active_pointer: ml.ModelPointer | None = None
        self.bootstrapping = False
        self._train_lock = asyncio.Lock()
        self._datasets: tuple[Dataset, Dataset] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._probe_cache: tuple[tuple, ModelBundle] | None = None
        self._closing = threading.Event()  # read by training threads between two fits
        self._next_bootstrap = time.monotonic() + BOOTSTRAP_RETRY

    def loops(self) -> list[Loop]:
        return [
            Loop("retrain", self.interval("retrain", 1.0), self._retrain_when_due, primary=True),
            Loop("feedback", self.interval("feedback", 0.2), self._buffer_feedback),
        ]

    # --- start: rebuild, then make sure a model exists -----------------------------------

    async def setup(self) -> None:
        self.registry = await self.ctx.declare(ModelRegistry.declared)
        await self.ctx.declare(soc.ensure_soc_streams)
        self.feedback = await self.ctx.pull(
            soc.FEEDBACK_QUEUE,
            durable=soc.ML_FEEDBACK_CONSUMER,
            stream=soc.FEEDBACK_STREAM,
            config=ConsumerConfig(ack_wait=60, max_ack_pending=20_000),
        )
        await self._rebuild()
        self._probe_sub = await self.ctx.serve(ml.PROBE_SUBJECT, self._answer_probe, queue="aoc-ml-probe")
        pointer = await self.registry.active_pointer()
        if pointer is not None:
            try:
                self.active = await self.registry.load_bundle(pointer)
                self.active_pointer = pointer
            except ModelRefused as exc:
                await self._report_refused(exc, kept=None)
        if self.active is None:
            # train in the background: control and heartbeats answer meanwhile
            self.bootstrapping = True
            self._spawn(self._bootstrap("bootstrap" if pointer is None else "recovery"))

    async def teardown(self) -> None:
        self._closing.set()
        for task in list(self._tasks):
            task.cancel()
        # a pull subscription left open makes the connection's drain time out
        for sub in (self._probe_sub, self.feedback):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _rebuild(self) -> None:
        assert self.registry.kv is not None
        with contextlib.suppress(KeyNotFoundError):
            entry = await self.registry.kv.get(TRAINER_KEY)
            self.trainer = msgspec.json.decode(entry.value or b"{}", type=TrainerState)

        def on_evaluation(_seq: int, data: bytes, _at: Any) -> None:
            with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                envelope = msgspec.json.decode(data)
                evaluated = msgspec.convert(envelope["data"], ml.ModelEvaluated)
                self.performance_log.append(log_entry(evaluated))

        await self.ctx.replay(subjects.evt(self.slug, ml.ModelEvaluated.TYPE), on_evaluation)
        # verdicts the consumer acked (buffered) but no run has trained on yet
        info = await self.feedback.consumer_info()
        acked_through = info.ack_floor.stream_seq if info.ack_floor else 0

        def on_verdict(seq: int, data: bytes, _at: Any) -> None:
            with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                self.buffer[seq] = soc.feedback_decoder.decode(data)

        await self.ctx.replay(
            soc.FEEDBACK_QUEUE,
            on_verdict,
            start_seq=self.trainer.trained_through_seq + 1,
            until_seq=acked_through,
        )

    async def _bootstrap(self, reason: str) -> None:
        try:
            await self.retrain(reason)
        except TrainingCancelled:
            pass
        except Exception:
            log.exception("ml.bootstrap_failed")
        finally:
            self.bootstrapping = False

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the loops ----------------------------------------------------------------------

    async def _buffer_feedback(self) -> CycleOutcome:
        try:
            # an idle pull: a stop abandons it rather than waiting for it to time out
            pull = self.feedback.fetch(self.config.fetch_batch, timeout=self.config.fetch_wait)
            messages = await self.ctx.until_stopping(pull)
        except (NatsTimeoutError, TimeoutError, StopRequested):
            return CycleOutcome(quiet=True, detail="no new verdicts")
        verdicts: Counter[str] = Counter()
        refused = 0
        for msg in messages:
            seq = msg.metadata.sequence.stream
            try:
                verdict = soc.feedback_decoder.decode(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError):
                refused += 1
                await msg.term()  # never a training sample; it would fail the same way again
                continue
            if seq > self.trainer.trained_through_seq:
                self.buffer[seq] = verdict
                verdicts[verdict.verdict] += 1
            await msg.ack()
        added = sum(verdicts.values())
        detail = (
            f"Buffered {added} analyst verdict(s): {len(self.buffer)}/{self.config.retrain_threshold} "
            "toward the next retrain"
        )
        if refused:
            detail += f"; refused {refused} undecodable message(s)"
        return CycleOutcome(
            ok=refused == 0,
            result="success" if refused == 0 else "failed",
            action="feedback_buffered",
            detail=detail,
            output={"buffered": added, "training_buffer": len(self.buffer), "verdicts": dict(verdicts)},
        )

    async def _retrain_when_due(self) -> CycleOutcome:
        if self.active is None and not self.bootstrapping and time.monotonic() >= self._next_bootstrap:
            # the first bootstrap failed (the store was unreachable, say): try again, calmly
            self._next_bootstrap = time.monotonic() + BOOTSTRAP_RETRY
            return await self.retrain("bootstrap")
        if len(self.buffer) < self.config.retrain_threshold or self.bootstrapping:
            return CycleOutcome(
                quiet=True, detail=f"{len(self.buffer)}/{self.config.retrain_threshold} verdicts buffered"
            )
        return await self.retrain("threshold")

    async def trigger(self, args: dict[str, Any]) -> CycleOutcome:
        """A retrain now, on whatever is buffered (it usually outlasts the reply budget:
        the runtime answers `started` and the result arrives as cycle_completed)."""
        return await self.retrain("manual")

    # --- one training run ------------------------------------------------------------------

    async def retrain(self, reason: str) -> CycleOutcome:
        async with self._train_lock:
            pending = sorted(self.buffer)
            # a threshold run takes exactly `threshold` verdicts: one retrain per 100
            batch = pending[: self.config.retrain_threshold] if reason == "threshold" else pending
            through = max([self.trainer.trained_through_seq, *batch])
            verdicts = await self._verdicts_through(through)
            base, holdout = await self._training_data()
            version = f"v{self.trainer.last_version + 1}"
            result: TrainingResult = await asyncio.to_thread(
                run_training,
                version,
                base,
                holdout,
                verdicts,
                self.active,
                sizes=self.config.sizes(),
                feedback_weight=self.config.feedback_weight,
                tolerance=self.config.promotion_tolerance,
                cancelled=self._closing.is_set,
            )
            pointer = await self.registry.store_version(result.bundle, result.candidate)
            previous = self.active_pointer.version if self.active_pointer else None
            self.trainer = TrainerState(
                trained_through_seq=through,
                total_retrains=self.trainer.total_retrains + (reason not in ("bootstrap", "recovery")),
                last_version=self.trainer.last_version + 1,
            )
            for seq in batch:
                self.buffer.pop(seq, None)
            if result.verdict.promote:
                pointer = await self.registry.activate(pointer)
                self.active, self.active_pointer = result.bundle, pointer
            await self.registry.kv.put(TRAINER_KEY, msgspec.json.encode(self.trainer))  # type: ignore[union-attr]
            evaluated = ml.ModelEvaluated(
                run_id=new_id(),
                version=version,
                reason=reason,
                promoted=result.verdict.promote,
                verdict=result.verdict.reasons,
                candidate=result.candidate,
                active=result.active,
                active_version=previous,
                training_samples=result.training_samples,
                feedback_samples=result.feedback_samples,
                buffered=len(batch),
                feedback_through_seq=through,
                total_retrains=self.trainer.total_retrains,
                evaluated_at=utcnow(),
                duration_s=result.duration_s,
            )
            self.performance_log.append(log_entry(evaluated))
            outcome = "promoted" if result.verdict.promote else "kept_active"
            summary_detail = (
                f"{version} ({reason}, {len(batch)} new verdicts): F1 {result.candidate['f1']:.3f}, "
                f"ROC AUC {result.candidate['roc_auc']:.3f} — "
                + (f"promoted over {previous or 'nothing'}" if result.verdict.promote else f"{previous} kept")
            )
            await self.ctx.publish(
                evaluated, Summary(action="model_evaluated", detail=summary_detail, result=outcome)
            )
            if result.verdict.promote:
                await self.ctx.publish(
                    ml.ModelPublished(pointer=pointer, previous=previous, reason=reason),
                    Summary(
                        action="model_published", detail=f"Model {version} is now active", result="success"
                    ),
                )
            with contextlib.suppress(Exception):
                protect = {self.active_pointer.version} if self.active_pointer else set()
                await self.registry.prune(self.config.keep_versions, protect)
            return CycleOutcome(
                result=outcome,
                action="retrain",
                detail=summary_detail,
                output={
                    "version": version,
                    "promoted": result.verdict.promote,
                    "verdict": result.verdict.reasons,
                    "metrics": result.candidate,
                    "active_metrics": result.active,
                    "active_version": self.active_pointer.version if self.active_pointer else None,
                    "total_retrains": self.trainer.total_retrains,
                },
            )

    async def _training_data(self) -> tuple[Dataset, Dataset]:
        if self._datasets is None:
            base = await asyncio.to_thread(Dataset.generated, self.config.bootstrap_samples, BOOTSTRAP_SEED)
            holdout = await asyncio.to_thread(Dataset.generated, self.config.holdout_samples, HOLDOUT_SEED)
            self._datasets = (base, holdout)
        return self._datasets

    async def _verdicts_through(self, through: int) -> list[soc.AnalystFeedback]:
        verdicts: list[soc.AnalystFeedback] = []

        def on_verdict(_seq: int, data: bytes, _at: Any) -> None:
            with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                verdicts.append(soc.feedback_decoder.decode(data))

        if through > 0:
            await self.ctx.replay(soc.FEEDBACK_QUEUE, on_verdict, until_seq=through)
        return verdicts

    # --- the probe ------------------------------------------------------------------------

    async def _answer_probe(self, msg: Msg) -> None:
        reply = await self.probe()
        if msg.reply:
            await msg.respond(msgspec.json.encode(reply))

    async def probe(self) -> ml.ProbeReply:
        pointer = None
        try:
            pointer = await self.registry.active_pointer()
            if pointer is None:
                return ml.ProbeReply(ok=False, error="no active model version yet (bootstrap running?)")
            bundle = await self._verified(pointer)
            scores = probe_scores(bundle)
            problem = implausible(scores)
            return ml.ProbeReply(ok=problem is None, version=pointer.version, scores=scores, error=problem)
        except ModelRefused as exc:
            return ml.ProbeReply(ok=False, version=pointer.version if pointer else None, error=str(exc))
        except Exception as exc:
            return ml.ProbeReply(
                ok=False, version=pointer.version if pointer else None, error=f"{type(exc).__name__}: {exc}"
            )

    async def _verified(self, pointer: ml.ModelPointer) -> ModelBundle:
        """The active version as stored, verified; re-verified whenever an object changed."""
        assert self.registry.store is not None
        infos = [
            await self.registry.store.get_info(pointer.objects[name]) for name in sorted(pointer.objects)
        ]
        key = (
            pointer.version,
            tuple(sorted(pointer.sha256.items())),
            tuple((i.nuid, i.digest) for i in infos),
        )
        if self._probe_cache is not None and self._probe_cache[0] == key:
            return self._probe_cache[1]
        bundle = await self.registry.load_bundle(pointer)
        self._probe_cache = (key, bundle)
        return bundle

    async def _report_refused(self, exc: ModelRefused, kept: str | None) -> None:
        await self.ctx.publish(
            ml.ModelRefused(version=exc.version, model=exc.model, reason=exc.reason, kept_version=kept),
            Summary(action="model_refused", detail=str(exc), result="failed"),
        )

    # --- status ----------------------------------------------------------------------------

    def status_extras(self) -> dict[str, Any]:
        return {
            "training_buffer": len(self.buffer),
            "retrain_threshold": self.config.retrain_threshold,
            "total_retrains": self.trainer.total_retrains,
            "performance_log": list(self.performance_log)[-5:],
            "active_version": self.active_pointer.version if self.active_pointer else None,
        }

    def detail_extras(self) -> dict[str, Any]:
        return {
            "performance_log": list(self.performance_log),
            "bootstrapping": self.bootstrapping,
            "trained_through_seq": self.trainer.trained_through_seq,
            "active_metrics": dict(self.active_pointer.metrics) if self.active_pointer else {},
            "model_sizes": msgspec.to_builtins(self.config.sizes().__dict__),
        }


def log_entry(evaluated: ml.ModelEvaluated) -> dict[str, Any]:
    return {
        "version": evaluated.version,
        "time": evaluated.evaluated_at.isoformat(),
        "reason": evaluated.reason,
        "promoted": evaluated.promoted,
        "metrics": evaluated.candidate,
        "active_version": evaluated.active_version,
        "active_metrics": evaluated.active,
        "verdict": evaluated.verdict,
        "feedback_samples": evaluated.feedback_samples,
    }
