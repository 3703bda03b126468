"""The SOC's pure parts: decision policy, playbooks, threat hunting, the state fold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from contracts.advisory import Advisory, Ioc
from contracts.soc import (
    LEGACY_INSTANCE,
    Alert,
    AlertsTriaged,
    AlertSummary,
    Decision,
    EscalatedToHuman,
    PlaybookExecuted,
    Process,
    Scores,
    Totals,
    counts_of,
    max_totals,
    new_feedback,
    sum_counts,
    summarize,
)
from contracts.soc.playbooks import Match
from services.soc import hunting, playbooks
from services.soc.policy import AUTO_RESOLVE, CONTAIN, ESCALATE, Thresholds, decide, sla_due
from services.soc.state import SocState

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T = Thresholds()


def summary(**fields) -> AlertSummary:
    base = {"source": "crowdstrike", "title": "Suspicious thing", "severity": "high"}
    return summarize(Alert(**{**base, **fields}))


# --- policy --------------------------------------------------------------------------


def test_confident_and_dangerous_is_contained() -> None:
    kind, reasons = decide("high", 0.95, 0.4, 88, T)
    assert kind == CONTAIN and "confirmed threat" in reasons[-1]


def test_confident_noise_is_auto_resolved() -> None:
    kind, reasons = decide("medium", 0.05, 0.3, 8, T)
    assert kind == AUTO_RESOLVE and "auto-resolved" in reasons[-1]


@pytest.mark.parametrize(
    ("severity", "p", "anomaly", "threat", "blocker"),
    [
        ("medium", 0.5, 0.3, 20, "p 50%"),  # the classifier is unsure
        ("medium", 0.05, 0.95, 8, "anomaly"),  # looks benign but unlike anything seen
        ("medium", 0.05, 0.3, 45, "threat 45"),  # benign-looking but high impact
        ("critical", 0.1, 0.3, 8, "(critical)"),  # critical needs more certainty
        ("high", 0.95, 0.3, 50, "threat 50"),  # likely real, not dangerous enough to contain
    ],
)
def test_everything_in_between_is_escalated_with_the_reason(
    severity: str, p: float, anomaly: float, threat: float, blocker: str
) -> None:
    kind, reasons = decide(severity, p, anomaly, threat, T)
    assert kind == ESCALATE
    assert blocker in reasons[-1]


def test_sla_follows_severity() -> None:
    assert sla_due("critical", NOW, T) == NOW + timedelta(minutes=15)
    assert sla_due("low", NOW, T) == NOW + timedelta(hours=24)
    custom = Thresholds(sla_seconds={"high": 5})
    assert sla_due("high", NOW, custom) == NOW + timedelta(seconds=5)


# --- playbooks -----------------------------------------------------------------------

BOOKS = playbooks.load_playbooks()


def test_every_shipped_playbook_loads_and_the_last_catches_all() -> None:
    assert len(BOOKS) >= 6
    assert BOOKS[-1].match == Match()
    assert len({book.name for book in BOOKS}) == len(BOOKS)


def test_external_brute_force_gets_a_block_rule() -> None:
    alert = summary(title="Brute force", techniques=["T1110.003"], src_ip="45.83.12.7", user="bob")
    book = playbooks.select(BOOKS, alert)
    assert book is not None and book.name == "block-external-attacker"
    result, actions = playbooks.run(book, alert, NOW)
    assert result == "rule_generated"
    block = actions[0]
    assert block["type"] == "block_ip" and block["ip"] == "45.83.12.7" and block["direction"] == "inbound"
    assert "iptables -I INPUT -s 45.83.12.7 -j DROP" in block["iptables"]
    assert "timeout 24h" in block["nftables"]
    assert block["expires_at"] == (NOW + timedelta(hours=24)).isoformat()


def test_internal_brute_force_falls_through_and_never_blocks_a_private_address() -> None:
    alert = summary(techniques=["T1110.001"], src_ip="10.0.0.5")
    book = playbooks.select(BOOKS, alert)
    assert book is not None and book.name == "default-containment"
    result, actions = playbooks.run(book, alert, NOW)
    assert actions[0] == {
        "type": "block_ip",
        "status": "refused",
        "ip": "10.0.0.5",
        "reason": "not an internet address",
    }
    assert result == "actions_recorded"


def test_ransomware_isolates_and_blocks_the_binary() -> None:
    sha = "ab" * 32
    alert = summary(techniques=["T1486"], host="ws-1001", process=Process(name="x.exe", sha256=sha))
    result, actions = playbooks.run(playbooks.select(BOOKS, alert), alert, NOW)
    assert result == "rule_generated"
    assert [a["type"] for a in actions] == ["isolate_host", "block_hash", "open_ticket"]
    assert actions[1]["sha256"] == sha


def test_a_required_field_missing_fails_the_playbook() -> None:
    alert = summary(techniques=["T1486"])  # no host to isolate
    result, actions = playbooks.run(playbooks.select(BOOKS, alert), alert, NOW)
    assert result == "failed" and actions[-1]["status"] == "skipped"


def test_a_broken_playbook_file_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "10-bad.yaml").write_text("name: bad\nactions:\n  - type: launch_missiles\n")
    with pytest.raises(playbooks.PlaybookError, match=r"10-bad\.yaml"):
        playbooks.load_playbooks(tmp_path)


# --- hunting -------------------------------------------------------------------------


def advisory(id: str, *iocs: tuple[str, str], cves: list[str] | None = None) -> Advisory:
    return Advisory(
        id=id, title=f"Advisory {id}", priority="high", iocs=[Ioc(t, v) for t, v in iocs], cves=cves or []
    )


def test_hunting_matches_every_indicator_kind() -> None:
    sha = "cd" * 32
    alerts = [
        summary(id="a-ip", dst_ip="185.220.101.4"),
        summary(id="a-domain", domain="cdn.evil-updates.net"),
        summary(id="a-hash", process=Process(name="svc.exe", sha256=sha.upper())),
        summary(id="a-cve", cves=["CVE-2024-3400"]),
        summary(id="a-clean", dst_ip="8.8.8.8", domain="example.org"),
    ]
    index = hunting.IocIndex(
        [
            advisory("ADV-1", ("ip", "185.220.101.4"), ("url", "https://evil-updates.net/payload")),
            advisory("ADV-2", ("sha256", sha)),
            advisory("CVE-2024-3400", cves=["CVE-2024-3400"]),
        ]
    )
    findings = hunting.hunt(alerts, index, set())
    matched = {(f.alert_id, f.advisory_id, f.matched_field) for f in findings}
    assert matched == {
        ("a-ip", "ADV-1", "dst_ip"),
        ("a-domain", "ADV-1", "domain"),  # the url's host is a parent of the alert's domain
        ("a-hash", "ADV-2", "process.sha256"),
        ("a-cve", "CVE-2024-3400", "cves"),
    }


def test_hunting_reports_a_finding_once() -> None:
    alerts = [summary(id="a1", src_ip="45.1.1.1")]
    index = hunting.IocIndex([advisory("ADV-9", ("ip", "45.1.1.1"))])
    first = hunting.hunt(alerts, index, set())
    reported = {(f.alert_id, f.advisory_id, f.ioc_value) for f in first}
    assert len(first) == 1 and hunting.hunt(alerts, index, reported) == []


# --- state ---------------------------------------------------------------------------


def decision(alert_id: str, kind: str, severity: str = "high") -> Decision:
    return Decision(
        alert=summary(id=alert_id, severity=severity),
        decision=kind,
        scores=Scores(true_positive=0.5, anomaly=0.2, threat=40),
        reasons=["test"],
        model_version="v1",
        decided_at=NOW,
        sla_due=NOW + timedelta(minutes=5) if kind == ESCALATE else None,
    )


def test_the_state_folds_decisions_escalations_and_playbooks() -> None:
    state = SocState()
    state.apply(
        AlertsTriaged(
            batch_id="b",
            decisions=[decision("e1", ESCALATE), decision("c1", CONTAIN), decision("r1", AUTO_RESOLVE)],
            totals=Totals(alerts_processed=3, escalated=1, contained=1, auto_resolved=1),
        )
    )
    assert all(state.knows(i) for i in ("e1", "c1", "r1"))
    assert list(state.confirmed) == ["c1"]
    assert state.overdue(NOW) == [] and [e.alert_id for e in state.overdue(NOW + timedelta(minutes=6))] == [
        "e1"
    ]
    state.apply(
        EscalatedToHuman(
            alert_id="e1",
            title="t",
            severity="high",
            escalated_at=NOW,
            sla_due=NOW,
            overdue_seconds=1,
            totals=Totals(alerts_processed=3, escalated_to_human=1),
        )
    )
    state.apply(
        PlaybookExecuted(
            alert_id="c1", playbook="p", trigger="contain_decision", result="x", actions=[], totals=Totals()
        )
    )
    assert state.open_escalations == {} and state.confirmed == {}
    assert state.alerts["e1"].escalated_to_human and state.alerts["c1"].playbook == "p"
    assert state.totals == Totals(
        alerts_processed=3, escalated=1, contained=1, auto_resolved=1, escalated_to_human=1
    )


def test_a_verdict_answers_the_escalation_and_a_confirmed_attack_goes_to_soar() -> None:
    state = SocState()
    state.apply(
        AlertsTriaged(
            batch_id="b", decisions=[decision("e1", ESCALATE), decision("e2", ESCALATE)], totals=Totals()
        )
    )
    state.apply_feedback(new_feedback(state.alerts["e1"].alert, "false_positive", "alice"))
    state.apply_feedback(new_feedback(state.alerts["e2"].alert, "true_positive", "alice"))
    assert state.open_escalations == {}
    assert dict(state.confirmed) == {"e2": "analyst_confirmed"}
    assert state.alerts["e1"].feedback == "false_positive"


def test_totals_merge_to_the_latest_even_out_of_order() -> None:
    older, newer = (
        Totals(alerts_processed=5, escalated_to_human=2),
        Totals(alerts_processed=9, escalated_to_human=1),
    )
    assert max_totals(newer, older) == Totals(alerts_processed=9, escalated_to_human=2)


def test_every_instance_counts_its_share_and_the_totals_are_the_sum() -> None:
    """Two instances triage the same queue: each event carries every instance's latest
    counters as its writer knew them; folded in any order, the sum counts each decision
    once, and the counters from before shared triage (one writer) stay counted."""
    legacy = AlertsTriaged(batch_id="old", decisions=[], totals=Totals(alerts_processed=100))
    state_a = SocState(instance="soc-1")
    state_a.apply(legacy)
    assert state_a.totals.alerts_processed == 100 and state_a.own == Totals()
    # soc-1 decides 3, soc-2 (not having seen soc-1's event yet) decides 2
    by_a = state_a.counted(Totals(alerts_processed=3, escalated=1))
    event_a = AlertsTriaged(batch_id="a", decisions=[], totals=sum_counts(by_a), by_instance=by_a)
    state_b = SocState(instance="soc-2")
    state_b.apply(legacy)
    by_b = state_b.counted(Totals(alerts_processed=2))
    event_b = AlertsTriaged(batch_id="b", decisions=[], totals=sum_counts(by_b), by_instance=by_b)
    for order in ((legacy, event_a, event_b), (event_b, event_a, legacy), (event_a, event_b, event_a)):
        reader = SocState(instance="gateway")
        for event in order:
            reader.apply(event)
        assert reader.totals == Totals(alerts_processed=105, escalated=1)
    # the maximum of the two writers' own sums would have lost one share
    assert max(event_a.totals.alerts_processed, event_b.totals.alerts_processed) == 103
    # counts_of: an old event's totals are the legacy share
    assert counts_of(legacy) == {LEGACY_INSTANCE: Totals(alerts_processed=100)}


def test_memory_is_bounded() -> None:
    state = SocState(max_alerts=100)
    for start in range(0, 300, 50):
        batch = [decision(f"a{i}", AUTO_RESOLVE) for i in range(start, start + 50)]
        state.apply(AlertsTriaged(batch_id=str(start), decisions=batch, totals=Totals()))
    assert len(state.alerts) == 100 and state.knows("a299") and not state.knows("a0")


def test_a_summary_carries_every_field_of_the_alert_but_raw_and_description():
    assert set(AlertSummary.__struct_fields__) == set(Alert.__struct_fields__) - {"raw", "description"}
    alert = Alert(
        id="sum-1",
        source="edr",
        title="Credential dumping",
        severity="high",
        rule_id="R-9",
        description="long text",
        host="ws-7",
        user="alice",
        src_ip="203.0.113.9",
        dst_ip="10.0.0.4",
        domain="evil.example",
        process=Process(name="lsass.exe", pid=4),
        techniques=["T1003"],
        cves=["CVE-2024-12345"],
        count=3,
        raw={"x": 1},
    )
    summary = summarize(alert)
    expected = msgspec.structs.asdict(alert)
    del expected["raw"], expected["description"]
    assert msgspec.structs.asdict(summary) == expected
