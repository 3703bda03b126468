"""The built-in probe alert: `aoc.ml.probe` loads the active version from the store and
scores this alert, so heal-check learns whether the models load and answer sensibly."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.soc import Alert, Process
from services.shared.triage.bundle import ModelBundle, score
from services.shared.triage.features import extract

PROBE_ALERT = Alert(
    id="aoc-ml-probe",
    time=datetime(2026, 1, 6, 2, 14, tzinfo=UTC),
    source="crowdstrike",
    title="Credential dumping tool detected",
    severity="critical",
    host="srv-finance-01",
    user="admin.alice",
    process=Process(
        name="mimikatz.exe",
        command_line="mimikatz.exe privilege::debug sekurlsa::logonpasswords",
        parent="cmd.exe",
    ),
    techniques=["T1003.001"],
)


def probe_scores(bundle: ModelBundle) -> dict[str, float]:
    scores = score(bundle, extract(PROBE_ALERT)[None, :])
    return {
        "true_positive": round(float(scores.true_positive[0]), 4),
        "anomaly": round(float(scores.anomaly[0]), 4),
        "threat": round(float(scores.threat[0]), 2),
    }


def implausible(scores: dict[str, float]) -> str | None:
    """Why these probe scores say the models are broken, or None. The probe alert is an
    unmistakable attack: a model that calls it benign loads fine and is still useless."""
    if scores["true_positive"] < 0.5 or scores["threat"] < 40:
        return (
            f"the active models rate an obvious credential-dumping alert as benign "
            f"(p {scores['true_positive']:.2f}, threat {scores['threat']:.0f})"
        )
    return None
