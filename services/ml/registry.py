"""Writing triage model versions (ml-retrain only): serialise each model of a version
with skops, store the blobs, point ``aoc_model_registry/active`` at them, prune old
versions. Reading and every safety check of a load are in
services/shared/triage/registry.py, which soc-cycle uses too.
"""

from __future__ import annotations

import asyncio

import msgspec
import skops.io as sio

from contracts import ml
from contracts.events import utcnow
from services.shared.triage.bundle import MODEL_NAMES, ModelBundle
from services.shared.triage.registry import RegistryReader, digest, object_name


def serialize(model: object) -> bytes:
    return sio.dumps(model)


class ModelRegistry(RegistryReader):
    """The object store + pointer, for the producer (and, inherited, its reads)."""

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


def version_number(version: str) -> int:
    """'v12' -> 12 (anything else sorts first)."""
    return int(version[1:]) if version[:1] == "v" and version[1:].isdigit() else -1
