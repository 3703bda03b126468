"""Held-out evaluation and the promotion rule.

Every candidate is evaluated together with the active version on the *same* held-out
set (the generator's fixed hold-out plus the analyst verdicts that hash into the
hold-out bucket), so the comparison is apples to apples even as feedback grows.

Promotion rule ("not worse"): a candidate replaces the active version only if, on
that set, none of F1, ROC AUC and recall drops by more than ``tolerance`` (default
0.01, i.e. one point). Recall is gated on its own because a SOC pays far more for a
missed attack than for an extra escalation. Precision and the anomaly/threat metrics
are logged, not gated. With no active version (a fresh install) the candidate must
clear absolute floors instead, so a broken bootstrap never goes live.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score, mean_absolute_error, precision_score, recall_score, roc_auc_score

from services.shared.triage.bundle import ModelBundle, score

GATED = ("f1", "roc_auc", "recall")
FLOORS = {"f1": 0.6, "roc_auc": 0.75, "recall": 0.6}
HOLDOUT_SHARE = 0.2  # of analyst feedback


def in_holdout(alert_id: str, share: float = HOLDOUT_SHARE) -> bool:
    """Stable split: an alert's verdict is always on the same side, run after run."""
    return zlib.crc32(alert_id.encode()) % 1000 < share * 1000


def evaluate(bundle: ModelBundle, features: np.ndarray, is_threat: np.ndarray, threat: np.ndarray) -> dict:
    scores = score(bundle, features)
    labels = is_threat.astype(int)
    predicted = (scores.true_positive >= 0.5).astype(int)
    both_classes = len(set(labels.tolist())) == 2
    return {
        "samples": len(labels),
        "precision": round(float(precision_score(labels, predicted, zero_division=0)), 4),
        "recall": round(float(recall_score(labels, predicted, zero_division=0)), 4),
        "f1": round(float(f1_score(labels, predicted, zero_division=0)), 4),
        "roc_auc": round(float(roc_auc_score(labels, scores.true_positive)), 4) if both_classes else 0.0,
        "anomaly_auc": round(float(roc_auc_score(labels, scores.anomaly)), 4) if both_classes else 0.0,
        "threat_mae": round(float(mean_absolute_error(threat, scores.threat)), 3),
    }


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str]


def promotion_verdict(candidate: dict, active: dict | None, tolerance: float = 0.01) -> Verdict:
    if active is None:
        failing = [f"{m} {candidate[m]:.3f} < floor {FLOORS[m]}" for m in GATED if candidate[m] < FLOORS[m]]
        if failing:
            return Verdict(
                False, ["no active model and the candidate misses the floors: " + "; ".join(failing)]
            )
        return Verdict(
            True, ["first model: clears the floors " + ", ".join(f"{m}≥{FLOORS[m]}" for m in GATED)]
        )
    worse = [
        f"{metric} {candidate[metric]:.4f} < active {active[metric]:.4f} - {tolerance}"
        for metric in GATED
        if candidate[metric] < active[metric] - tolerance
    ]
    if worse:
        return Verdict(False, ["worse than the active version: " + "; ".join(worse)])
    deltas = ", ".join(f"{metric} {candidate[metric] - active[metric]:+.4f}" for metric in GATED)
    return Verdict(True, [f"not worse than the active version ({deltas})"])
