"""The three models, how they are trained and how they score a batch.

- AlertClassifier — RandomForestClassifier: probability that an alert is a true positive.
- AnomalyDetector — IsolationForest fitted on the benign alerts: how unlike the usual
  noise an alert is, mapped to 0 (typical) .. 1 (never seen anything like it).
- ThreatScorer — GradientBoostingRegressor: a 0-100 threat score (likelihood x impact,
  the target defined in generator.threat_target).

Pure: no I/O. Training runs in a worker thread (it takes seconds); scoring a batch is
one vectorised call per model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor, IsolationForest, RandomForestClassifier

from services.ml.features import FEATURE_VERSION, N_FEATURES

MODEL_NAMES = ("alert_classifier", "anomaly_detector", "threat_scorer")


@dataclass(frozen=True)
class ModelSizes:
    """How big the models are; small in tests, the defaults in production."""

    classifier_trees: int = 60
    classifier_depth: int | None = 12
    anomaly_trees: int = 60
    scorer_trees: int = 60
    scorer_depth: int = 3
    seed: int = 42


@dataclass
class ModelBundle:
    version: str
    classifier: RandomForestClassifier
    anomaly: IsolationForest
    scorer: GradientBoostingRegressor
    feature_version: int = FEATURE_VERSION

    def models(self) -> dict[str, object]:
        return {
            "alert_classifier": self.classifier,
            "anomaly_detector": self.anomaly,
            "threat_scorer": self.scorer,
        }


@dataclass(frozen=True)
class BatchScores:
    true_positive: np.ndarray  # 0..1
    anomaly: np.ndarray  # 0..1
    threat: np.ndarray  # 0..100


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


def score(bundle: ModelBundle, features: np.ndarray) -> BatchScores:
    if len(features) == 0:
        empty = np.zeros(0)
        return BatchScores(empty, empty, empty)
    probabilities = bundle.classifier.predict_proba(features)
    classes = list(bundle.classifier.classes_)
    true_positive = probabilities[:, classes.index(1)] if 1 in classes else np.zeros(len(features))
    # decision_function: > 0 inlier, < 0 outlier, typically within ±0.3; a steep logistic
    # puts the boundary at 0.5 and spreads the usual range over most of 0..1
    anomaly = 1.0 / (1.0 + np.exp(bundle.anomaly.decision_function(features) * 20.0))
    threat = np.clip(bundle.scorer.predict(features), 0.0, 100.0)
    return BatchScores(true_positive, anomaly, threat)
