"""Model versions in the object store, and the only way any process loads one.

Writing: each model of a version is serialised with skops (never pickle: loading a
pickle runs arbitrary code) and stored as ``<version>/<model>.skops``; the pointer in
``aoc_model_registry`` names the objects and their sha256.

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

import msgspec
import skops.io as sio
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from sklearn.ensemble import GradientBoostingRegressor, IsolationForest, RandomForestClassifier

from contracts import ml
from contracts.events import utcnow
from contracts.settings import Settings
from services.ml.features import FEATURE_VERSION
from services.ml.models import MODEL_NAMES, ModelBundle

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


def serialize(model: object) -> bytes:
    return sio.dumps(model)


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


class ModelRegistry:
    """The object store + pointer, for producer and consumers alike."""

    def __init__(self, js: JetStreamContext, settings: Settings) -> None:
        self.js = js
        self.settings = settings
        self.store: ObjectStore | None = None
        self.kv: KeyValue | None = None

    async def open(self) -> ModelRegistry:
        self.store = await ml.ensure_models_store(self.js, self.settings)
        self.kv = await ml.ensure_registry(self.js, self.settings)
        return self

    # --- producer ---------------------------------------------------------------------

    async def store_version(self, bundle: ModelBundle, metrics: dict[str, float]) -> ml.ModelPointer:
        assert self.store is not None
        blobs = await asyncio.to_thread(
            lambda: {name: serialize(model) for name, model in bundle.models().items()}
        )
        objects, digests = {}, {}
        for name, blob in blobs.items():
            objects[name] = object_name(bundle.version, name)
            digests[name] = digest(blob)
            await self.store.put(objects[name], blob)
        return ml.ModelPointer(
            version=bundle.version,
            objects=objects,
            sha256=digests,
            metrics={k: float(v) for k, v in metrics.items()},
            published=None,
            feature_version=bundle.feature_version,
        )

    async def activate(self, pointer: ml.ModelPointer) -> ml.ModelPointer:
        assert self.kv is not None
        pointer.published = utcnow()
        await self.kv.put(ml.ACTIVE_KEY, msgspec.json.encode(pointer))
        return pointer

    async def versions(self) -> list[str]:
        assert self.store is not None
        try:
            infos = await self.store.list()
        except Exception:  # an empty store answers "no objects"
            return []
        return sorted({info.name.split("/", 1)[0] for info in infos if not info.deleted})

    async def prune(self, keep: int, protect: set[str]) -> list[str]:
        """Delete the blobs of all but the newest ``keep`` versions (never ``protect``)."""
        assert self.store is not None
        names = await self.versions()
        ordered = sorted(names, key=version_number)
        doomed = [v for v in ordered[: max(len(ordered) - keep, 0)] if v not in protect]
        for version in doomed:
            for model in MODEL_NAMES:
                try:
                    await self.store.delete(object_name(version, model))
                except Exception:
                    continue
        return doomed

    # --- consumers --------------------------------------------------------------------

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
        return ModelBundle(
            version=pointer.version,
            classifier=models["alert_classifier"],  # type: ignore[arg-type]
            anomaly=models["anomaly_detector"],  # type: ignore[arg-type]
            scorer=models["threat_scorer"],  # type: ignore[arg-type]
            feature_version=pointer.feature_version,
        )


def version_number(version: str) -> int:
    """'v12' -> 12 (anything else sorts first)."""
    return int(version[1:]) if version[:1] == "v" and version[1:].isdigit() else -1
