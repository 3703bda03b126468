"""ml-retrain's own settings (environment variables AOC_ML_*), documented in docs/soc.md."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.ml.models import ModelSizes


class MlConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AOC_ML_", extra="ignore")

    retrain_threshold: int = Field(100, ge=1, description="Analyst verdicts that trigger a retrain.")
    bootstrap_samples: int = Field(4000, ge=100, description="Generated alerts in the base training set.")
    holdout_samples: int = Field(1500, ge=50, description="Generated alerts in the fixed held-out set.")
    feedback_weight: float = Field(
        3.0, gt=0, description="Training weight of an analyst verdict vs a generated one."
    )
    promotion_tolerance: float = Field(
        0.01,
        ge=0,
        le=0.5,
        description="How far F1 / ROC AUC / recall may drop before a candidate is refused.",
    )
    classifier_trees: int = Field(60, ge=1, description="AlertClassifier: trees of the random forest.")
    classifier_depth: int = Field(12, ge=1, description="AlertClassifier: maximum tree depth.")
    anomaly_trees: int = Field(60, ge=1, description="AnomalyDetector: trees of the isolation forest.")
    scorer_trees: int = Field(60, ge=1, description="ThreatScorer: boosting stages.")
    keep_versions: int = Field(20, ge=2, description="Model versions kept in the object store.")
    fetch_batch: int = Field(256, ge=1, le=5000, description="Verdicts fetched per feedback pull.")
    # a stop abandons an idle pull at once (EngineHost.until_stopping), so it may be long
    fetch_wait: float = Field(0.5, gt=0, description="Seconds a feedback pull waits for verdicts.")

    def sizes(self) -> ModelSizes:
        return ModelSizes(
            classifier_trees=self.classifier_trees,
            classifier_depth=self.classifier_depth,
            anomaly_trees=self.anomaly_trees,
            scorer_trees=self.scorer_trees,
        )
