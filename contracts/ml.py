"""The model contract between `ml-retrain` (producer) and its consumers (the SOC's
triage, heal-check's model probe).

- Model blobs live in the JetStream object store ``aoc_models`` in skops format, one
  object per model per version: ``<version>/<model>.skops``.
- The KV bucket ``aoc_model_registry`` holds the key ``active``: a ``ModelPointer`` to
  the version every consumer should load, with the sha256 of each blob. A consumer
  checks the digest and refuses anything that is not a skops file made of trusted
  types (services/shared/triage/registry.py), keeping the model it already has.
- ``aoc.evt.ml-retrain.model_published`` announces a new active version (hot reload);
  ``aoc.evt.ml-retrain.model_evaluated`` records every evaluation, promoted or not.
- ``aoc.ml.probe`` (core NATS request/reply, answered by the ml-retrain process) loads
  the active version from the store and scores a built-in probe alert: a ``ProbeReply``.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from contracts.settings import Settings
from contracts.streams import ensure_bucket

MODELS_OBJECT_STORE = "aoc_models"
MODEL_REGISTRY_BUCKET = "aoc_model_registry"
ACTIVE_KEY = "active"
MODEL_PUBLISHED = "model_published"  # event type on aoc.evt.ml-retrain.model_published
PROBE_SUBJECT = "aoc.ml.probe"
ML_SYSTEM = "ml-retrain"


class ModelPointer(msgspec.Struct, kw_only=True):
    version: str
    objects: dict[str, str]  # model name -> object name in the store
    sha256: dict[str, str]  # model name -> digest of the blob, checked before loading
    metrics: dict[str, float] = {}
    published: datetime | None = None
    feature_version: int = 1  # services/shared/triage/features.py FEATURE_VERSION the models expect
    format: str = "skops"


class ProbeReply(msgspec.Struct, kw_only=True):
    ok: bool
    version: str | None = None
    scores: dict[str, float] = {}
    error: str | None = None


class ModelPublished(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = MODEL_PUBLISHED
    pointer: ModelPointer
    previous: str | None
    reason: str  # bootstrap | threshold | manual


class ModelEvaluated(msgspec.Struct, kw_only=True):
    """One training run and its held-out evaluation: a performance_log entry."""

    TYPE: ClassVar[str] = "model_evaluated"
    run_id: str
    version: str
    reason: str  # bootstrap | threshold | manual
    promoted: bool
    verdict: list[str]
    candidate: dict[str, float]  # precision, recall, f1, roc_auc, anomaly_auc, threat_mae, samples
    active: dict[str, float] | None  # the active version's metrics on the same held-out set
    active_version: str | None
    training_samples: int
    feedback_samples: int  # analyst verdicts in the training set (all time)
    buffered: int  # verdicts that arrived since the previous retrain
    feedback_through_seq: int  # AOC_FEEDBACK stream sequence the run consumed up to
    total_retrains: int
    evaluated_at: datetime
    duration_s: float


class FeedbackBuffered(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "feedback_buffered"
    count: int
    training_buffer: int
    retrain_threshold: int
    verdicts: dict[str, int]


class ModelRefused(msgspec.Struct, kw_only=True):
    """A consumer (or the producer's probe) refused a stored model version."""

    TYPE: ClassVar[str] = "model_refused"
    version: str
    model: str
    reason: str
    kept_version: str | None


ML_PAYLOAD_TYPES: dict[str, type[msgspec.Struct]] = {
    cls.TYPE: cls for cls in (ModelPublished, ModelEvaluated, FeedbackBuffered, ModelRefused)
}

pointer_decoder = msgspec.json.Decoder(ModelPointer)


def models_store(settings: Settings) -> ObjectStoreConfig:
    return ObjectStoreConfig(
        bucket=MODELS_OBJECT_STORE,
        description="ML model versions (skops), one object per model per version",
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )


def registry_bucket(settings: Settings) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=MODEL_REGISTRY_BUCKET,
        description="The active model version (pointer with sha256 digests)",
        history=20,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )


async def ensure_models_store(js: JetStreamContext, settings: Settings) -> ObjectStore:
    try:
        return await js.object_store(MODELS_OBJECT_STORE)
    except (BucketNotFoundError, NotFoundError):
        try:
            return await js.create_object_store(MODELS_OBJECT_STORE, config=models_store(settings))
        except BadRequestError:  # created concurrently
            return await js.object_store(MODELS_OBJECT_STORE)


async def ensure_registry(js: JetStreamContext, settings: Settings) -> KeyValue:
    return await ensure_bucket(js, registry_bucket(settings))
