"""The model contract between `ml-retrain` (producer) and its consumers (the SOC's
triage, heal-check's model probe).

- Model blobs live in the JetStream object store ``aoc_models`` in skops format.
- The KV bucket ``aoc_model_registry`` holds the key ``active``: a ``ModelPointer`` to
  the version every consumer should load.
- ``aoc.evt.ml-retrain.model_published`` announces a new active version (hot reload).
- ``aoc.ml.probe`` (core NATS request/reply, answered by the ml-retrain process) loads
  the active version and scores a built-in probe alert: a ``ProbeReply``.
The producer owns the rest of its contract here."""

from __future__ import annotations

from datetime import datetime

import msgspec

MODELS_OBJECT_STORE = "aoc_models"
MODEL_REGISTRY_BUCKET = "aoc_model_registry"
ACTIVE_KEY = "active"
MODEL_PUBLISHED = "model_published"  # event type on aoc.evt.ml-retrain.model_published
PROBE_SUBJECT = "aoc.ml.probe"


class ModelPointer(msgspec.Struct, kw_only=True):
    version: str
    objects: dict[str, str]  # model name -> object name in the store
    sha256: dict[str, str]  # model name -> digest of the blob, checked before loading
    metrics: dict[str, float] = {}
    published: datetime | None = None


class ProbeReply(msgspec.Struct, kw_only=True):
    ok: bool
    version: str | None = None
    scores: dict[str, float] = {}
    error: str | None = None
