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
from functools import cached_property

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor, IsolationForest, RandomForestClassifier
from sklearn.ensemble._iforest import _average_path_length

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

    @cached_property
    def forests(self) -> ForestWalk | None:
        """The tree walk, if it gives exactly sklearn's numbers for these models (checked
        once, on rows that take both sides of the trees' splits); otherwise None and
        sklearn scores (another sklearn may keep its trees differently)."""
        try:
            walk = ForestWalk(self.classifier, self.anomaly)
            agrees = walk.agrees_with_sklearn(self.classifier, self.anomaly)
        except Exception:  # a model shaped otherwise (multi-output, another sklearn): sklearn's path
            return None
        return walk if agrees else None


class ForestWalk:
    """The two forests scored tree by tree: each tree's public ``apply`` (the leaf of
    every alert, sklearn's own Cython walk) and a value per leaf computed once, summed in
    the forest's own order, so the numbers are exactly sklearn's (a test compares them).
    sklearn's ``predict_proba`` and ``decision_function`` spend ~60 µs of Python per
    tree on every call (validation, joblib dispatch): with 120 trees, 5 µs per alert in a
    round of 1,400 (docs/performance.md)."""

    def __init__(self, classifier: RandomForestClassifier, anomaly: IsolationForest) -> None:
        classes = list(classifier.classes_)
        self.positive = classes.index(1) if 1 in classes else None
        self.n_classes = len(classes)
        # since sklearn 1.4 a classifier tree's value holds each leaf's class fractions
        self.classifier_trees = [
            (tree, tree.tree_.value[:, 0, : self.n_classes]) for tree in classifier.estimators_
        ]
        subsample = anomaly._max_features != anomaly.n_features_in_
        self.anomaly_trees = [
            (tree, features if subsample else None, path_lengths + average_lengths - 1.0)
            for tree, features, path_lengths, average_lengths in zip(
                anomaly.estimators_,
                anomaly.estimators_features_,
                anomaly._decision_path_lengths,
                anomaly._average_path_length_per_tree,
                strict=True,
            )
        ]
        self.depth_scale = len(anomaly.estimators_) * _average_path_length([anomaly._max_samples])[0]
        self.offset = anomaly.offset_

    def agrees_with_sklearn(
        self, classifier: RandomForestClassifier, anomaly: IsolationForest, rows: int = 256
    ) -> bool:
        rng = np.random.default_rng(0)
        splits: list[list[float]] = [[] for _ in range(classifier.n_features_in_)]
        for tree in [*classifier.estimators_, *anomaly.estimators_]:
            nodes = tree.tree_
            inner = nodes.feature >= 0
            for feature, threshold in zip(nodes.feature[inner], nodes.threshold[inner], strict=True):
                if feature < len(splits):
                    splits[feature].append(float(threshold))
        probe = np.zeros((rows, len(splits)), dtype=np.float32)
        for feature, thresholds in enumerate(splits):
            if thresholds:
                picked = rng.choice(thresholds, rows) + rng.choice([-0.5, 0.5], rows)
                probe[:, feature] = picked
        probe = np.ascontiguousarray(probe)
        expected = classifier.predict_proba(probe)
        positive = expected[:, self.positive] if self.positive is not None else np.zeros(rows)
        return np.array_equal(self.true_positive(probe), positive) and np.array_equal(
            self.anomaly_decision(probe), anomaly.decision_function(probe)
        )

    def true_positive(self, features: np.ndarray) -> np.ndarray:
        """``classifier.predict_proba(features)[:, class 1]``."""
        if self.positive is None:
            return np.zeros(len(features))
        total = np.zeros((len(features), self.n_classes))
        for tree, leaf_values in self.classifier_trees:
            total += leaf_values[tree.apply(features, check_input=False)]
        total /= len(self.classifier_trees)
        return total[:, self.positive]

    def anomaly_decision(self, features: np.ndarray) -> np.ndarray:
        """``anomaly.decision_function(features)``."""
        depths = np.zeros(len(features), order="f")
        for tree, subset, leaf_depths in self.anomaly_trees:
            rows = features if subset is None else features[:, subset]
            depths += leaf_depths[tree.apply(rows, check_input=False)]
        scores = 2 ** -np.divide(
            depths, self.depth_scale, out=np.ones_like(depths), where=self.depth_scale != 0
        )
        return -scores - self.offset


@dataclass(frozen=True)
class BatchScores:
    true_positive: np.ndarray  # 0..1
    anomaly: np.ndarray  # 0..1
    threat: np.ndarray  # 0..100


def score(bundle: ModelBundle, features: np.ndarray) -> BatchScores:
    if len(features) == 0:
        empty = np.zeros(0)
        return BatchScores(empty, empty, empty)
    # the trees read float32, as sklearn converts them; what is not finite takes sklearn's
    # own path, which refuses it as it always did (ValueError)
    rows = np.ascontiguousarray(features, dtype=np.float32)
    walk = bundle.forests
    if walk is None or not np.isfinite(rows).all():
        probabilities = bundle.classifier.predict_proba(features)
        classes = list(bundle.classifier.classes_)
        true_positive = probabilities[:, classes.index(1)] if 1 in classes else np.zeros(len(features))
        decision = bundle.anomaly.decision_function(features)
    else:
        true_positive = walk.true_positive(rows)
        decision = walk.anomaly_decision(rows)
    # decision_function: > 0 inlier, < 0 outlier, typically within ±0.3; a steep logistic
    # puts the boundary at 0.5 and spreads the usual range over most of 0..1
    anomaly = 1.0 / (1.0 + np.exp(decision * 20.0))
    threat = np.clip(bundle.scorer.predict(features), 0.0, 100.0)
    return BatchScores(true_positive, anomaly, threat)
