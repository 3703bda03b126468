"""decide_batch, apart from I/O: one batch scored and decided, its events shaped so a
crash after any stored prefix leaves counters that the stream bears out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts.soc import Totals, sum_counts
from services.ml.generator import generate
from services.ml.models import ModelSizes, train
from services.ml.pipeline import Dataset
from services.soc.config import SocConfig
from services.soc.triage import DECISIONS_PER_EVENT, decide_batch

SMALL = ModelSizes(classifier_trees=5, classifier_depth=5, anomaly_trees=5, scorer_trees=5)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def bundle():
    data = Dataset.generated(300, 1)
    return train("v1", data.features, data.is_threat, data.threat, sizes=SMALL)


def test_each_event_counts_the_decisions_up_to_its_own(bundle) -> None:
    alerts = [item.alert for item in generate(3 * DECISIONS_PER_EVENT, 7)]
    before = {"soc-2": Totals(alerts_processed=40, contained=4), "soc-1": Totals(alerts_processed=10)}
    result = decide_batch(alerts, bundle, SocConfig().thresholds(), before, "soc-1", NOW)

    assert len(result.events) > 3  # several chunks of one kind, and more than one kind
    decided_ids = [d.alert.id for event in result.events for d in event.payload.decisions]
    assert sorted(decided_ids) == sorted(a.id for a in alerts)  # each alert once
    so_far = 0
    for event in result.events:
        payload = event.payload
        so_far += len(payload.decisions)
        assert len(payload.decisions) <= DECISIONS_PER_EVENT
        assert payload.by_instance["soc-2"] == before["soc-2"]  # the other's share untouched
        assert payload.by_instance["soc-1"].alerts_processed == 10 + so_far
        assert payload.totals == sum_counts(payload.by_instance)
    last = result.events[-1].payload.by_instance["soc-1"]
    assert last.auto_resolved + last.escalated + last.contained == len(alerts)
    assert result.decided == len(alerts)
    # deterministic ids: the same batch again is the same events (stored once by Nats-Msg-Id)
    again = decide_batch(alerts, bundle, SocConfig().thresholds(), before, "soc-1", NOW)
    assert [e.event_id for e in again.events] == [e.event_id for e in result.events]
