"""The triage model bundle and how it scores a batch of alerts.

- AlertClassifier — RandomForestClassifier: probability that an alert is a true positive.
- AnomalyDetector — IsolationForest fitted on the benign alerts: how unlike the usual
  noise an alert is, mapped to 0 (typical) .. 1 (never seen anything like it).
- ThreatScorer — GradientBoostingRegressor: a 0-100 threat score.

ml-retrain trains bundles (services/ml/models.py); soc-cycle and the ML probe score with
them. Pure: no I/O; scoring a batch is one vectorised call per model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor, IsolationForest, RandomForestClassifier

from services.shared.triage.features import FEATURE_VERSION

MODEL_NAMES = ("alert_classifier", "anomaly_detector", "threat_scorer")


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
