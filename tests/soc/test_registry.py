"""Model blobs: skops only, digests checked, untrusted types refused (pure and on a
real object store)."""

from __future__ import annotations

import os
import pickle

import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from contracts.settings import Settings
from services.ml.models import ModelSizes, train
from services.ml.pipeline import Dataset
from services.ml.registry import ModelRegistry, serialize
from services.shared.triage.bundle import MODEL_NAMES
from services.shared.triage.registry import TRUSTED_TYPES, ModelRefused, deserialize, digest, object_name

SMALL = ModelSizes(classifier_trees=5, classifier_depth=5, anomaly_trees=5, scorer_trees=5)


@pytest.fixture(scope="module")
def bundle():
    data = Dataset.generated(300, 1)
    return train("v1", data.features, data.is_threat, data.threat, sizes=SMALL)


def load(blob: bytes, name: str = "alert_classifier", sha: str | None = None) -> object:
    return deserialize(blob, version="v1", name=name, expected_sha256=sha or digest(blob))


def test_our_models_need_exactly_the_trusted_types(bundle) -> None:
    needed = set()
    for name, model in bundle.models().items():
        blob = serialize(model)
        needed |= set(sio.get_untrusted_types(data=blob))
        assert type(load(blob, name)) is type(model)
    assert needed == set(TRUSTED_TYPES)


def test_a_blob_that_differs_from_its_digest_is_refused(bundle) -> None:
    blob = serialize(bundle.classifier)
    tampered = blob[:-10] + b"0123456789"
    with pytest.raises(ModelRefused, match="sha256 mismatch"):
        load(tampered, sha=digest(blob))


def test_a_pickle_is_refused_even_with_a_matching_digest(bundle) -> None:
    with pytest.raises(ModelRefused, match="not a skops file"):
        load(pickle.dumps(bundle.classifier))


def test_a_skops_file_with_an_untrusted_type_is_refused() -> None:
    evil = sio.dumps(FunctionTransformer(os.system))
    with pytest.raises(ModelRefused, match=r"untrusted types in the file: .*system"):
        load(evil)


def test_a_model_of_the_wrong_class_is_refused() -> None:
    with pytest.raises(ModelRefused, match="expected a RandomForestClassifier, got LogisticRegression"):
        load(sio.dumps(LogisticRegression()))


async def test_versions_round_trip_through_the_object_store(bundle, settings: Settings, nc) -> None:
    registry = await ModelRegistry(nc.jetstream(), settings).open()
    assert await registry.active_pointer() is None
    pointer = await registry.activate(await registry.store_version(bundle, {"f1": 0.9}))
    assert (await registry.active_pointer()).sha256 == pointer.sha256
    assert (
        set(pointer.objects) == set(MODEL_NAMES)
        and pointer.objects["threat_scorer"] == "v1/threat_scorer.skops"
    )
    loaded = await registry.load_bundle(pointer)
    assert loaded.version == "v1" and loaded.classifier.n_estimators == 5

    # someone overwrites a blob in the store: the digest no longer matches
    await registry.store.put(object_name("v1", "anomaly_detector"), serialize(bundle.classifier))
    with pytest.raises(ModelRefused, match="anomaly_detector refused: sha256 mismatch"):
        await registry.load_bundle(pointer)
    assert await registry.versions() == ["v1"]
