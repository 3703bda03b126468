"""soc-cycle against a real nats-server: intake, triage, escalation, SOAR, hunting,
and exactly-once decisions across a restart."""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec
import pytest
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig

from contracts import soc
from contracts.advisory import ADVISORIES_BUCKET, Advisory, Ioc
from contracts.commands import reply_decoder
from contracts.settings import Settings
from services.ml.generator import generate
from services.runtime.testing import running_engines
from services.soc import engine as soc_engine
from services.soc.engine import SocEngine
from tests.soc.conftest import decided, payload, wait_until

intake_reply = msgspec.json.Decoder(soc.IntakeReply)


def alerts(n: int, seed: int) -> list[soc.Alert]:
    return [item.alert for item in generate(n, seed)]


async def submit(nc, batch: list[soc.Alert]) -> soc.IntakeReply:
    reply = await nc.request(soc.ALERT_INTAKE, soc.encode_alerts(batch), timeout=5)
    return intake_reply.decode(reply.data)


async def test_raw_intake_accepts_valid_alerts_and_refuses_invalid_ones_clearly(soc_stack, nc, tap) -> None:
    valid = alerts(3, seed=1)
    accepted = await submit(nc, valid)
    assert accepted.ok and accepted.accepted == 3 and accepted.ids == [a.id for a in valid]

    bad_batch = [
        msgspec.to_builtins(valid[0]) | {"id": "bad-1"},
        {"source": "x", "title": "t", "severity": "low", "src_ip": "999.1.1.1", "id": "bad-2"},
    ]
    reply = intake_reply.decode(
        (await nc.request(soc.ALERT_INTAKE, msgspec.json.encode(bad_batch), timeout=5)).data
    )
    assert not reply.ok and reply.error == "invalid_alert" and reply.field == "$[1].src_ip"
    assert "'999.1.1.1' is not an IPv4 or IPv6 address" in reply.message
    # `nats pub` with no reply subject: refused the same way, the audit event is the answer
    await nc.publish(soc.ALERT_INTAKE, b'{"source": "x", "title": "t", "severity": "severe", "id": "bad-3"}')
    # a producer bypassing the intake: triage refuses it, it is never half-parsed into a decision
    await nc.jetstream().publish(soc.ALERT_QUEUE, b'{"id": "bad-4", "title": 42}')

    rejected = await wait_until(lambda: len(tap.matching(lambda e: e.type == "alert_rejected")) >= 3 or None)
    await wait_until(lambda: len(decided(tap)) >= 3)
    events = [payload(e, soc.AlertRejected) for e in tap.matching(lambda e: e.type == "alert_rejected")]
    assert {(e.subject, e.field) for e in events} == {
        (soc.ALERT_INTAKE, "$[1].src_ip"),
        (soc.ALERT_INTAKE, "$.severity"),
        (soc.ALERT_QUEUE, "$.title"),
    }, rejected
    assert all(e.summary.result == "rejected" for e in tap.matching(lambda e: e.type == "alert_rejected"))
    await asyncio.sleep(0.3)
    assert set(decided(tap)) == {a.id for a in valid}  # none of bad-1 .. bad-4
    queue = await nc.jetstream().consumer_info(soc.ALERTS_STREAM, soc.TRIAGE_CONSUMER)
    assert queue.num_pending == 0 and queue.num_ack_pending == 0  # the poison message is gone too


async def test_triage_decides_every_alert_once_with_scores_reasons_and_playbooks(
    soc_stack, nc, tap, monkeypatch
) -> None:
    # several batches of playbook runs (not one), so their counters cross a batch boundary
    monkeypatch.setattr(soc_engine, "PLAYBOOK_RUNS_PER_BATCH", 7)
    batch = alerts(300, seed=2)
    assert (await submit(nc, batch)).accepted == 300
    found = await wait_until(lambda: (d := decided(tap)) and len(d) == 300 and d)
    assert all(len(decisions) == 1 for decisions in found.values())
    kinds = Counter(d[0].decision for d in found.values())
    assert set(kinds) == {"auto_resolve", "escalate", "contain"} and kinds["auto_resolve"] > 100
    for [decision] in found.values():
        assert 0 <= decision.scores.true_positive <= 1 and 0 <= decision.scores.threat <= 100
        assert decision.reasons and decision.model_version == "v1"
        assert (decision.sla_due is not None) == (decision.decision == "escalate")

    # every containment runs a playbook; external attackers get a generated block rule
    runs = await wait_until(
        lambda: (
            (r := tap.matching(lambda e: e.type == "playbook_executed")) and len(r) == kinds["contain"] and r
        )
    )
    assert {payload(e, soc.PlaybookExecuted).alert_id for e in runs} == {
        i for i, [d] in found.items() if d.decision == "contain"
    }
    assert "rule_generated" in {e.summary.result for e in runs}
    assert kinds["contain"] > 7
    # stored in order, each run counting the ones before it: a crash leaves a true prefix
    counted = [payload(e, soc.PlaybookExecuted).totals.playbooks_run for e in runs]
    assert counted == list(range(1, kinds["contain"] + 1))

    engine = soc_stack["soc-cycle"].engine
    status = engine.status_extras()
    assert status["alerts_processed"] == 300 and status["auto_resolved"] == kinds["auto_resolve"]
    reply = reply_decoder.decode((await nc.request("aoc.ctl.soc-cycle.trigger", b"", timeout=5)).data)
    assert reply.ok and reply.status == "done"
    assert reply.result["escalated"] == kinds["escalate"] and reply.result["contained"] == kinds["contain"]
    assert reply.result["queue_depth"] == 0 and reply.result["model_version"] == "v1"
    # one batch: one event per outcome, each decision inside with its scores and reasons
    results = Counter(e.summary.result for e in tap.matching(lambda e: e.type == "alerts_triaged"))
    assert results == {"auto_resolved": 1, "escalated": 1, "contained": 1}


@pytest.fixture
def quick_sla(monkeypatch: pytest.MonkeyPatch) -> None:
    sla = {severity: 2.0 for severity in soc.SEVERITIES}
    monkeypatch.setenv("AOC_SOC_SLA_SECONDS", msgspec.json.encode(sla).decode())


async def test_unanswered_escalations_go_to_a_human_after_their_sla(quick_sla, soc_stack, nc, tap) -> None:
    assert (await submit(nc, alerts(60, seed=3))).ok
    found = await wait_until(lambda: (d := decided(tap)) and len(d) == 60 and d)
    escalated = sorted(i for i, [d] in found.items() if d.decision == "escalate")
    assert len(escalated) >= 3
    # an analyst answers the first one in time
    answer = {"alert_id": escalated[0], "verdict": "false_positive", "analyst": "alice"}
    reply = intake_reply.decode(
        (await nc.request(soc.FEEDBACK_INTAKE, msgspec.json.encode(answer), timeout=5)).data
    )
    assert reply.ok

    handed = await wait_until(
        lambda: (
            (h := tap.matching(lambda e: e.type == "escalated_to_human"))
            and len(h) == len(escalated) - 1
            and h
        ),
        timeout=20,
    )
    assert {payload(e, soc.EscalatedToHuman).alert_id for e in handed} == set(escalated[1:])
    assert all(e.summary.result == "escalated_to_human" for e in handed)
    host = soc_stack["soc-cycle"]
    snapshot = host.snapshot()
    assert snapshot.error_count == snapshot.extras["escalated_to_human"] == len(escalated) - 1
    await asyncio.sleep(0.5)  # and nobody is handed over twice
    assert len(tap.matching(lambda e: e.type == "escalated_to_human")) == len(escalated) - 1


async def test_an_analyst_confirmed_threat_runs_a_playbook(soc_stack, nc, tap) -> None:
    attacker = soc.Alert(
        id="bf-1",
        source="okta",
        title="Multiple failed logins for user",
        severity="low",
        user="bob.smith",
        src_ip="91.240.118.7",
        techniques=["T1110.003"],
        count=4,
    )
    await submit(nc, [attacker])
    [decision] = await wait_until(lambda: decided(tap).get("bf-1"))
    assert decision.decision != "contain"
    verdict = {"alert_id": "bf-1", "verdict": "true_positive", "analyst": "alice", "note": "password spray"}
    assert intake_reply.decode(
        (await nc.request(soc.FEEDBACK_INTAKE, msgspec.json.encode(verdict), timeout=5)).data
    ).ok
    run = await wait_until(lambda: tap.matching(lambda e: e.type == "playbook_executed"))
    executed = payload(run[0], soc.PlaybookExecuted)
    assert executed.trigger == "analyst_confirmed" and executed.playbook == "block-external-attacker"
    assert executed.result == "rule_generated" and executed.actions[0]["ip"] == "91.240.118.7"


async def test_feedback_on_an_unknown_alert_is_refused(soc_stack, nc, tap) -> None:
    unknown = {"alert_id": "never-seen", "verdict": "true_positive"}
    reply = intake_reply.decode(
        (await nc.request(soc.FEEDBACK_INTAKE, msgspec.json.encode(unknown), timeout=5)).data
    )
    assert not reply.ok and reply.error == "unknown_alert" and reply.field == "$.alert_id"
    typo = {"alert_id": "x", "verdict": "maybe"}
    reply = intake_reply.decode(
        (await nc.request(soc.FEEDBACK_INTAKE, msgspec.json.encode(typo), timeout=5)).data
    )
    assert not reply.ok and reply.field == "$.verdict"


async def test_hunting_finds_advisory_iocs_in_recent_alerts(soc_settings: Settings, nc, tap) -> None:
    js = nc.jetstream()
    kv = await js.create_key_value(KeyValueConfig(bucket=ADVISORIES_BUCKET))
    advisory = Advisory(
        id="ADV-2026-0042",
        title="Cobalt Strike infrastructure",
        priority="critical",
        known_exploited=True,
        iocs=[Ioc("ip", "185.220.101.44"), Ioc("domain", "beacon-cdn.net")],
    )
    await kv.put(advisory.id, msgspec.json.encode(advisory))
    settings = soc_settings.model_copy(
        update={"schedules": {**soc_settings.schedules, "soc-cycle.hunting": 0.3}}
    )
    async with running_engines(settings, ["ml-retrain", "soc-cycle"]) as hosts:
        await wait_until(lambda: hosts["soc-cycle"].engine.bundle is not None, timeout=30)
        c2 = soc.Alert(
            id="c2-1",
            source="zeek",
            title="Periodic beaconing",
            severity="medium",
            dst_ip="185.220.101.44",
            domain="x1.beacon-cdn.net",
            techniques=["T1071.001"],
        )
        await submit(nc, [c2, *alerts(20, seed=4)])
        hunt = await wait_until(
            lambda: [
                e
                for e in tap.matching(lambda e: e.type == "threat_hunt_completed")
                if e.summary.result == "findings"
            ]
        )
        report = payload(hunt[0], soc.ThreatHuntCompleted)
        assert {(f.alert_id, f.matched_field, f.advisory_id) for f in report.findings} == {
            ("c2-1", "dst_ip", "ADV-2026-0042"),
            ("c2-1", "domain", "ADV-2026-0042"),
        }
        await asyncio.sleep(0.8)  # later hunts do not report the same findings again
        assert (
            len(
                [
                    e
                    for e in tap.matching(lambda e: e.type == "threat_hunt_completed")
                    if e.summary.result == "findings"
                ]
            )
            == 1
        )


async def test_no_alert_is_lost_or_decided_twice_across_a_restart(
    soc_settings: Settings, nc, tap, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AOC_SOC_FETCH_BATCH", "4")  # many small pulls, each a little slow:
    real_triage = SocEngine._triage_messages  # the restart lands mid-queue

    async def slow_triage(self: SocEngine, messages: list[Msg]) -> tuple[int, int, int]:
        await asyncio.sleep(0.05)
        return await real_triage(self, messages)

    monkeypatch.setattr(SocEngine, "_triage_messages", slow_triage)
    js = nc.jetstream()
    first, second = alerts(400, seed=5), alerts(400, seed=6)

    async def enqueue(batch: list[soc.Alert]) -> None:
        for start in range(0, len(batch), 10):
            chunk = batch[start : start + 10]
            await js.publish(soc.ALERT_QUEUE, soc.encode_alerts(chunk))

    async with running_engines(soc_settings, ["ml-retrain"]):
        # the first SOC decides but its acks are lost (as in a crash right after publishing)
        real_ack = Msg.ack

        async def lost_ack(self: Msg) -> None:
            if self.subject != soc.ALERT_QUEUE:
                await real_ack(self)

        monkeypatch.setattr(Msg, "ack", lost_ack)
        async with running_engines(soc_settings, ["soc-cycle"]) as hosts:
            await wait_until(lambda: hosts["soc-cycle"].engine.bundle is not None, timeout=30)
            await enqueue(first)
            await wait_until(lambda: len(decided(tap)) >= 150)
        before_restart = len(decided(tap))
        assert before_restart < 400  # it stopped mid-queue
        monkeypatch.setattr(Msg, "ack", real_ack)

        async with running_engines(soc_settings, ["soc-cycle"]) as hosts:
            await enqueue(second)
            await wait_until(lambda: len(decided(tap)) == 800, timeout=30)
            # the unacked alerts come back after ack_wait and are recognised, not re-decided
            engine = hosts["soc-cycle"].engine
            await wait_until(lambda: engine.state.totals.duplicates >= before_restart, timeout=20)
            info = await js.consumer_info(soc.ALERTS_STREAM, soc.TRIAGE_CONSUMER)
            assert info.num_pending == 0
            found = decided(tap)
            assert set(found) == {a.id for a in first + second}
            assert all(len(decisions) == 1 for decisions in found.values())
            assert engine.status_extras()["alerts_processed"] == 800
