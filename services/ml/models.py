"""How the three triage models are trained (the bundle itself and how it scores live in
services/shared/triage/bundle.py, shared with soc-cycle).

- AlertClassifier — RandomForestClassifier on the labels.
- AnomalyDetector — IsolationForest fitted on the benign alerts.
- ThreatScorer — GradientBoostingRegressor on the threat target (likelihood x impact,
  defined in generator.threat_target).

Pure: no I/O. Training runs in a worker thread (it takes seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor, IsolationForest, RandomForestClassifier

from services.shared.triage.bundle import ModelBundle
from services.shared.triage.features import N_FEATURES


@dataclass(frozen=True)
class ModelSizes:
    """How big the models are; small in tests, the defaults in production."""

    classifier_trees: int = 60
    classifier_depth: int | None = 12
    anomaly_trees: int = 60
    scorer_trees: int = 60
    scorer_depth: int = 3
    seed: int = 42


class TrainingCancelled(Exception):
    """The process is shutting down: stop between two fits rather than burn the CPU."""


def train(
    version: str,
    features: np.ndarray,
    is_threat: np.ndarray,
    threat: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    sizes: ModelSizes = ModelSizes(),
    cancelled: Callable[[], bool] = lambda: False,
) -> ModelBundle:
    def checkpoint() -> None:
        if cancelled():
            raise TrainingCancelled(version)

    if features.shape[1] != N_FEATURES:
        raise ValueError(f"expected {N_FEATURES} features, got {features.shape[1]}")
    labels = is_threat.astype(int)
    if len(set(labels.tolist())) < 2:
        raise ValueError("training data needs both true and false positives")
    classifier = RandomForestClassifier(
        n_estimators=sizes.classifier_trees,
        max_depth=sizes.classifier_depth,
        min_samples_leaf=2,
        class_weight="balanced",
        random_state=sizes.seed,
        n_jobs=1,
    ).fit(features, labels, sample_weight=sample_weight)
    checkpoint()
    benign = features[labels == 0]
    anomaly = IsolationForest(
        n_estimators=sizes.anomaly_trees, contamination="auto", random_state=sizes.seed, n_jobs=1
    ).fit(benign if len(benign) >= 10 else features)
    checkpoint()
    scorer = GradientBoostingRegressor(
        n_estimators=sizes.scorer_trees,
        max_depth=sizes.scorer_depth,
        learning_rate=0.1,
        subsample=0.9,
        random_state=sizes.seed,
    ).fit(features, threat, sample_weight=sample_weight)
    return ModelBundle(version, classifier, anomaly, scorer)
