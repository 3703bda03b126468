"""Features, the generator, training, evaluation and the promotion rule (no NATS)."""

from __future__ import annotations

import ipaddress
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest

from contracts.soc import Alert, Process, new_feedback, summarize
from services.ml import generator
from services.ml.evaluation import FLOORS, evaluate, in_holdout, promotion_verdict
from services.ml.models import ModelSizes, TrainingCancelled, train
from services.ml.pipeline import Dataset, latest_per_alert, run_training
from services.ml.probe import implausible, probe_scores
from services.shared.triage.bundle import ForestWalk, score
from services.shared.triage.features import FEATURE_NAMES, N_FEATURES, extract, extract_batch, is_external

SMALL = ModelSizes(classifier_trees=25, classifier_depth=10, anomaly_trees=25, scorer_trees=30)


def feature(row: np.ndarray, name: str) -> float:
    return float(row[FEATURE_NAMES.index(name)])


def test_features_read_what_the_alert_says() -> None:
    alert = Alert(
        source="CrowdStrike Falcon",
        title="Office application spawned PowerShell",
        severity="critical",
        time=datetime(2026, 1, 10, 3, 0, tzinfo=UTC),  # a Saturday, at night
        host="dc-01",
        user="admin.alice",
        src_ip="10.1.2.3",
        dst_ip="45.83.1.9",
        process=Process(name="POWERSHELL.EXE", command_line="powershell -enc SQBFAFgA", parent="WINWORD.EXE"),
        techniques=["T1059.001", "T1566.001"],
        count=99,
    )
    row = extract(alert)
    assert len(row) == N_FEATURES == len(FEATURE_NAMES)
    expected = {
        "severity": 4,
        "source_edr": 1,
        "tactic_execution": 1,
        "tactic_initial-access": 1,
        "tactic_impact": 0,
        "technique_count": 2,
        "src_ip_external": 0,
        "dst_ip_external": 1,
        "user_privileged": 1,
        "host_domain_controller": 1,
        "process_lolbin": 1,
        "process_parent_office": 1,
        "cmdline_encoded": 1,
        "off_hours": 1,
        "weekend": 1,
    }
    assert {name: feature(row, name) for name in expected} == expected
    assert feature(row, "event_count_log") == pytest.approx(np.log1p(99))


def test_the_fast_internet_address_test_agrees_with_ipaddress() -> None:
    rng = np.random.default_rng(3)
    samples = [".".join(str(int(x)) for x in rng.integers(0, 256, 4)) for _ in range(20_000)]
    samples += ["10.1.2.3", "172.31.255.255", "100.64.0.1", "192.0.0.9", "224.0.0.1", "255.255.255.255"]
    samples += ["2001:db8::1", "2a00:1450:4001:80b::200e", "::1", "fe80::1"]
    assert [is_external(ip) for ip in samples] == [ipaddress.ip_address(ip).is_global for ip in samples]


def test_a_summary_extracts_like_its_alert() -> None:
    alert = generator.generate(1, seed=5)[0].alert
    assert np.array_equal(extract(alert), extract(summarize(alert)))


def test_the_generator_is_deterministic_and_realistic() -> None:
    first, again, other = (
        generator.generate(400, 11),
        generator.generate(400, 11),
        generator.generate(400, 12),
    )
    assert [x.alert for x in first] == [x.alert for x in again]
    assert [x.alert.id for x in first] != [x.alert.id for x in other]
    threats = sum(x.is_threat for x in first)
    assert 0.15 < threats / 400 < 0.45  # most alerts are noise, as in a real SOC
    assert len({x.scenario for x in first}) >= 12
    # the threat target is likelihood x impact: attacks score far above noise
    mean = {flag: np.mean([x.threat for x in first if x.is_threat == flag]) for flag in (True, False)}
    assert mean[True] > 50 > 15 > mean[False]


def test_trained_models_separate_attacks_from_noise() -> None:
    base, holdout = Dataset.generated(800, 1), Dataset.generated(400, 2)
    bundle = train("v1", base.features, base.is_threat, base.threat, sizes=SMALL)
    metrics = evaluate(bundle, holdout.features, holdout.is_threat, holdout.threat)
    assert metrics["roc_auc"] > 0.85 and metrics["f1"] > 0.7, metrics
    scores = score(bundle, holdout.features)
    assert scores.threat.min() >= 0 and scores.threat.max() <= 100
    assert scores.anomaly.min() >= 0 and scores.anomaly.max() <= 1
    threats = holdout.is_threat
    assert scores.threat[threats].mean() > scores.threat[~threats].mean() + 30


def test_training_stops_between_fits_when_cancelled() -> None:
    base = Dataset.generated(200, 1)
    with pytest.raises(TrainingCancelled):
        train("v9", base.features, base.is_threat, base.threat, sizes=SMALL, cancelled=lambda: True)


def test_holdout_split_is_stable() -> None:
    ids = [f"alert-{i}" for i in range(2000)]
    held = [i for i in ids if in_holdout(i)]
    assert held == [i for i in ids if in_holdout(i)]
    assert 0.15 < len(held) / len(ids) < 0.25


METRICS = {"f1": 0.85, "roc_auc": 0.93, "recall": 0.9, "precision": 0.8}


def test_promotion_rule_not_worse_within_tolerance() -> None:
    slightly_worse = {**METRICS, "f1": 0.845}
    assert promotion_verdict(slightly_worse, METRICS, tolerance=0.01).promote
    better = {**METRICS, "roc_auc": 0.95}
    assert promotion_verdict(better, METRICS, tolerance=0.0).promote


@pytest.mark.parametrize("metric", ["f1", "roc_auc", "recall"])
def test_promotion_rule_refuses_any_gated_metric_dropping(metric: str) -> None:
    candidate = {**METRICS, metric: METRICS[metric] - 0.03}
    verdict = promotion_verdict(candidate, METRICS, tolerance=0.01)
    assert not verdict.promote and metric in verdict.reasons[0]


def test_promotion_rule_ignores_precision_and_uses_floors_without_an_active_model() -> None:
    assert promotion_verdict({**METRICS, "precision": 0.1}, METRICS).promote
    assert promotion_verdict(METRICS, None).promote
    broken = {**METRICS, "recall": FLOORS["recall"] - 0.1}
    verdict = promotion_verdict(broken, None)
    assert not verdict.promote and "floor" in verdict.reasons[0]


def verdicts(items: list[generator.LabelledAlert], flip: bool) -> list:
    return [
        new_feedback(summarize(x.alert), "false_positive" if x.is_threat == flip else "true_positive", "t")
        for x in items
    ]


def test_the_last_verdict_on_an_alert_is_its_label() -> None:
    item = generator.generate(1, 3)[0]
    first, second = verdicts([item], flip=False)[0], verdicts([item], flip=True)[0]
    assert latest_per_alert([first, second]) == [second]


def test_honest_feedback_is_promoted_and_poisoned_feedback_is_not() -> None:
    base, holdout = (
        Dataset.generated(600, generator.BOOTSTRAP_SEED),
        Dataset.generated(400, generator.HOLDOUT_SEED),
    )
    active = run_training("v1", base, holdout, [], None, sizes=SMALL, feedback_weight=3.0, tolerance=0.01)
    assert active.verdict.promote
    threats = [x for x in generator.generate(600, 77) if x.is_threat][:100]
    honest = run_training(
        "v2",
        base,
        holdout,
        verdicts(threats, flip=False),
        active.bundle,
        sizes=SMALL,
        feedback_weight=3.0,
        tolerance=0.01,
    )
    assert honest.verdict.promote, honest.verdict.reasons
    # analysts (or an attacker with their token) marking real attacks as false positives
    poisoned = run_training(
        "v3",
        base,
        holdout,
        verdicts(threats, flip=True),
        active.bundle,
        sizes=SMALL,
        feedback_weight=3.0,
        tolerance=0.01,
    )
    assert not poisoned.verdict.promote
    assert poisoned.candidate["recall"] < poisoned.active["recall"] - 0.01
    assert poisoned.feedback_samples == 100
    assert Counter(v.verdict for v in verdicts(threats, flip=True)) == {"false_positive": 100}


def test_batch_extraction_matches_single() -> None:
    alerts = [x.alert for x in generator.generate(20, 9)]
    assert np.array_equal(extract_batch(alerts), np.vstack([extract(a) for a in alerts]))


def test_the_probe_judges_the_scores_not_just_the_loading() -> None:
    base = Dataset.generated(600, generator.BOOTSTRAP_SEED)
    good = train("v1", base.features, base.is_threat, base.threat, sizes=SMALL)
    assert implausible(probe_scores(good)) is None
    # a model trained with the labels inverted loads fine and calls mimikatz benign
    bad = train("v2", base.features, ~base.is_threat, 100 - base.threat, sizes=SMALL)
    assert "obvious credential-dumping alert as benign" in implausible(probe_scores(bad))


def _sklearn_scores(bundle, features):
    classes = list(bundle.classifier.classes_)
    return (
        bundle.classifier.predict_proba(features)[:, classes.index(1)],
        bundle.anomaly.decision_function(features),
    )


def test_the_tree_walk_gives_exactly_sklearns_numbers() -> None:
    base = Dataset.generated(1500, seed=11)
    bundle = train("v1", base.features, base.is_threat, base.threat, sizes=SMALL)
    features = extract_batch([item.alert for item in generator.generate(700, 12)])
    rows = np.ascontiguousarray(features, dtype=np.float32)
    true_positive, decision = _sklearn_scores(bundle, features)
    assert bundle.forests is not None, "the walk checked itself against sklearn and agreed"
    assert np.array_equal(bundle.forests.true_positive(rows), true_positive)
    assert np.array_equal(bundle.forests.anomaly_decision(rows), decision)
    scores = score(bundle, features)
    assert np.array_equal(scores.true_positive, true_positive)
    assert np.array_equal(scores.anomaly, 1.0 / (1.0 + np.exp(decision * 20.0)))


def test_the_tree_walk_follows_an_isolation_forest_that_samples_features() -> None:
    from sklearn.ensemble import IsolationForest

    base = Dataset.generated(1500, seed=13)
    bundle = train("v1", base.features, base.is_threat, base.threat, sizes=SMALL)
    bundle.anomaly = IsolationForest(n_estimators=20, max_features=0.5, random_state=3).fit(base.features)
    features = extract_batch([item.alert for item in generator.generate(300, 14)])
    rows = np.ascontiguousarray(features, dtype=np.float32)
    assert np.array_equal(bundle.forests.anomaly_decision(rows), bundle.anomaly.decision_function(features))


def test_features_that_are_not_finite_are_refused_as_sklearn_refuses_them() -> None:
    # the walk would score them without a word: they take sklearn's own path, which
    # refuses them as before the walk (the boosted trees refuse NaN and inf)
    base = Dataset.generated(1500, seed=15)
    bundle = train("v1", base.features, base.is_threat, base.threat, sizes=SMALL)
    features = extract_batch([item.alert for item in generator.generate(50, 16)])
    for bad in (np.nan, np.inf):
        features[3, 0] = bad
        with pytest.raises(ValueError):
            score(bundle, features)


def test_models_the_walk_does_not_reproduce_are_scored_by_sklearn(monkeypatch) -> None:
    # as if another sklearn kept its leaves as counts, not fractions (before 1.4 it did)
    built = ForestWalk.__init__

    def kept_as_counts(walk, classifier, anomaly):
        built(walk, classifier, anomaly)
        walk.classifier_trees = [(tree, values * 7.0) for tree, values in walk.classifier_trees]

    monkeypatch.setattr(ForestWalk, "__init__", kept_as_counts)
    base = Dataset.generated(1500, seed=17)
    bundle = train("v1", base.features, base.is_threat, base.threat, sizes=SMALL)
    assert bundle.forests is None
    features = extract_batch([item.alert for item in generator.generate(200, 18)])
    true_positive, decision = _sklearn_scores(bundle, features)
    scores = score(bundle, features)
    assert np.array_equal(scores.true_positive, true_positive)
    assert np.array_equal(scores.anomaly, 1.0 / (1.0 + np.exp(decision * 20.0)))
