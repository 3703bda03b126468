"""One training run, apart from I/O: build the training and held-out sets, train a
candidate, evaluate it and the active version on the same held-out set, and apply the
promotion rule. CPU-bound; the engine runs it in a worker thread.

Training set = the generator's base alerts + every analyst verdict outside the hold-out
bucket (the latest verdict per alert wins), verdicts weighted ``feedback_weight``.
Held-out set = the generator's fixed hold-out + the verdicts inside the bucket.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from contracts.soc import AnalystFeedback
from services.ml import generator
from services.ml.evaluation import Verdict, evaluate, in_holdout, promotion_verdict
from services.ml.models import ModelSizes, train
from services.shared.triage.bundle import ModelBundle
from services.shared.triage.features import extract_batch


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray
    is_threat: np.ndarray
    threat: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.is_threat)

    @classmethod
    def empty(cls) -> Dataset:
        from services.shared.triage.features import N_FEATURES

        return cls(np.zeros((0, N_FEATURES)), np.zeros(0, bool), np.zeros(0), np.zeros(0))

    @classmethod
    def generated(cls, n: int, seed: int) -> Dataset:
        items = generator.generate(n, seed)
        return cls(
            extract_batch(item.alert for item in items),
            np.array([item.is_threat for item in items], dtype=bool),
            np.array([item.threat for item in items], dtype=float),
            np.ones(len(items)),
        )

    @classmethod
    def from_feedback(cls, verdicts: list[AnalystFeedback], weight: float) -> Dataset:
        if not verdicts:
            return cls.empty()
        labels = [verdict.is_threat for verdict in verdicts]
        return cls(
            extract_batch(verdict.alert for verdict in verdicts),
            np.array(labels, dtype=bool),
            np.array(
                [generator.threat_target(v.alert, label) for v, label in zip(verdicts, labels, strict=True)]
            ),
            np.full(len(verdicts), weight),
        )

    def __add__(self, other: Dataset) -> Dataset:
        return Dataset(
            np.vstack([self.features, other.features]),
            np.concatenate([self.is_threat, other.is_threat]),
            np.concatenate([self.threat, other.threat]),
            np.concatenate([self.weight, other.weight]),
        )


def latest_per_alert(verdicts: list[AnalystFeedback]) -> list[AnalystFeedback]:
    """An analyst may change their mind: the last verdict on an alert is the label."""
    latest: dict[str, AnalystFeedback] = {}
    for verdict in verdicts:
        latest[verdict.alert_id] = verdict
    return list(latest.values())


@dataclass
class TrainingResult:
    bundle: ModelBundle
    candidate: dict
    active: dict | None
    verdict: Verdict
    training_samples: int
    feedback_samples: int
    duration_s: float
    notes: list[str] = field(default_factory=list)


def run_training(
    version: str,
    base: Dataset,
    holdout: Dataset,
    verdicts: list[AnalystFeedback],
    active: ModelBundle | None,
    *,
    sizes: ModelSizes,
    feedback_weight: float,
    tolerance: float,
    cancelled: Callable[[], bool] = lambda: False,
) -> TrainingResult:
    started = time.perf_counter()
    labelled = latest_per_alert(verdicts)
    held = [v for v in labelled if in_holdout(v.alert_id)]
    kept = [v for v in labelled if not in_holdout(v.alert_id)]
    training = base + Dataset.from_feedback(kept, feedback_weight)
    evaluation = holdout + Dataset.from_feedback(held, 1.0)
    bundle = train(
        version,
        training.features,
        training.is_threat,
        training.threat,
        sample_weight=training.weight,
        sizes=sizes,
        cancelled=cancelled,
    )
    candidate = evaluate(bundle, evaluation.features, evaluation.is_threat, evaluation.threat)
    current = (
        evaluate(active, evaluation.features, evaluation.is_threat, evaluation.threat) if active else None
    )
    verdict = promotion_verdict(candidate, current, tolerance)
    return TrainingResult(
        bundle=bundle,
        candidate=candidate,
        active=current,
        verdict=verdict,
        training_samples=len(training),
        feedback_samples=len(labelled),
        duration_s=round(time.perf_counter() - started, 3),
    )
