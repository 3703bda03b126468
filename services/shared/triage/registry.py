"""Reading triage model versions: the only way any process loads one (soc-cycle,
ml-retrain at start, the ML probe). services/ml/registry.py writes them.

A version's three models are skops files in the object store ``aoc_models`` as
``<version>/<model>.skops`` (never pickle: loading a pickle runs arbitrary code); the
pointer in ``aoc_model_registry`` names the objects and their sha256.

Loading (``load_bundle``) refuses, with a reason, and loads nothing when:
- the blob's sha256 differs from the pointer (tampered or truncated in the store);
- the blob is not a skops file (a pickle, anything else);
- the file contains a type outside skops' safe defaults plus ``TRUSTED_TYPES`` — the
  explicit list of what our three estimators need (checked with
  ``skops.io.get_untrusted_types`` *before* loading);
- the loaded object is not the estimator class the name promises;
- the version was trained on another feature version.
Callers keep the model they already had when a load is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import zipfile
from typing import Self

import skops.io as sio
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from sklearn.ensemble import GradientBoostingRegressor, IsolationForest, RandomForestClassifier

from contracts import ml
from contracts.settings import Settings
from services.shared.triage.bundle import MODEL_NAMES, ModelBundle
from services.shared.triage.features import FEATURE_VERSION

# Beyond skops' own safe defaults, our estimators contain exactly this type. A new
# scikit-learn that needs more fails loudly here (and in tests/soc/test_registry.py),
# rather than us trusting whatever a file asks for.
TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)

EXPECTED_CLASS = {
    "alert_classifier": RandomForestClassifier,
    "anomaly_detector": IsolationForest,
    "threat_scorer": GradientBoostingRegressor,
}


class ModelRefused(Exception):
    def __init__(self, version: str, model: str, reason: str, *, permanent: bool = True) -> None:
        super().__init__(f"model {version}/{model} refused: {reason}")
        self.version = version
        self.model = model
        self.reason = reason
        self.permanent = permanent  # False: the store could not be read; worth another try


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def deserialize(blob: bytes, *, version: str, name: str, expected_sha256: str) -> object:
    """Verify and load one blob (CPU-bound: call it in a worker thread)."""
    actual = digest(blob)
    if actual != expected_sha256:
        raise ModelRefused(
            version, name, f"sha256 mismatch: stored blob {actual[:12]}…, pointer {expected_sha256[:12]}…"
        )
    try:
        untrusted = sio.get_untrusted_types(data=blob)
    except (zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise ModelRefused(version, name, f"not a skops file ({type(exc).__name__}: {exc})") from None
    unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unexpected:
        raise ModelRefused(version, name, f"untrusted types in the file: {', '.join(unexpected)}")
    try:
        model = sio.loads(blob, trusted=list(untrusted))
    except Exception as exc:
        raise ModelRefused(version, name, f"skops could not load it ({type(exc).__name__}: {exc})") from None
    expected = EXPECTED_CLASS[name]
    if not isinstance(model, expected):
        raise ModelRefused(version, name, f"expected a {expected.__name__}, got {type(model).__name__}")
    return model


def object_name(version: str, model: str) -> str:
    return f"{version}/{model}.skops"


class RegistryReader:
    """The object store + pointer, read side."""

    def __init__(self, js: JetStreamContext, settings: Settings) -> None:
        self.js = js
        self.settings = settings
        self.store: ObjectStore | None = None
        self.kv: KeyValue | None = None

    async def open(self) -> Self:
        self.store = await ml.ensure_models_store(self.js, self.settings)
        self.kv = await ml.ensure_registry(self.js, self.settings)
        return self

    @classmethod
    async def declared(cls, js: JetStreamContext, settings: Settings) -> Self:
        """Opened as a contract's ``ensure_*`` is: for ``EngineContext.declare``."""
        return await cls(js, settings).open()

    async def active_pointer(self) -> ml.ModelPointer | None:
        assert self.kv is not None
        try:
            entry = await self.kv.get(ml.ACTIVE_KEY)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return ml.pointer_decoder.decode(entry.value)

    async def load_bundle(self, pointer: ml.ModelPointer) -> ModelBundle:
        """Fetch, verify and load every model of a version, or raise ModelRefused."""
        assert self.store is not None
        if pointer.feature_version != FEATURE_VERSION:
            raise ModelRefused(
                pointer.version,
                "*",
                f"trained on feature version {pointer.feature_version}, this code extracts {FEATURE_VERSION}",
            )
        if pointer.format != "skops":
            raise ModelRefused(pointer.version, "*", f"format {pointer.format!r} is not skops")
        missing = [name for name in MODEL_NAMES if name not in pointer.objects or name not in pointer.sha256]
        if missing:
            raise ModelRefused(pointer.version, ",".join(missing), "pointer does not name this model")
        blobs: dict[str, bytes] = {}
        for name in MODEL_NAMES:
            try:
                result = await self.store.get(pointer.objects[name])
            except Exception as exc:
                raise ModelRefused(
                    pointer.version, name, f"object not readable ({type(exc).__name__})"
                ) from None
            blobs[name] = result.data or b""

        def load_all() -> dict[str, object]:
            return {
                name: deserialize(
                    blob, version=pointer.version, name=name, expected_sha256=pointer.sha256[name]
                )
                for name, blob in blobs.items()
            }

        models = await asyncio.to_thread(load_all)
        bundle = ModelBundle(
            version=pointer.version,
            classifier=models["alert_classifier"],  # type: ignore[arg-type]
            anomaly=models["anomaly_detector"],  # type: ignore[arg-type]
            scorer=models["threat_scorer"],  # type: ignore[arg-type]
            feature_version=pointer.feature_version,
        )
        # the tree walk is built and checked against sklearn now (tens of ms), off the
        # loop, not in the first triage round with this version
        await asyncio.to_thread(lambda: bundle.forests)
        return bundle
