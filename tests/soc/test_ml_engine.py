"""ml-retrain against a real nats-server: bootstrap, the probe, retraining exactly at
the threshold, the promotion rule, hot reload in the SOC, tampered blobs."""

from __future__ import annotations

import asyncio
import pickle

import msgspec
import pytest

from contracts import ml, soc
from contracts.events import Summary, new_event
from contracts.settings import Settings
from services.ml.generator import generate
from services.ml.registry import ModelRegistry
from services.runtime.bus import EventPublisher
from services.runtime.testing import running_engines
from services.shared.triage.registry import digest, object_name
from tests.soc.conftest import decided, payload, wait_until

probe_reply = msgspec.json.Decoder(ml.ProbeReply)
intake_reply = msgspec.json.Decoder(soc.IntakeReply)


async def probe(nc) -> ml.ProbeReply:
    return probe_reply.decode((await nc.request(ml.PROBE_SUBJECT, b"", timeout=10)).data)


def evaluations(tap) -> list[ml.ModelEvaluated]:
    return [payload(e, ml.ModelEvaluated) for e in tap.matching(lambda e: e.type == ml.ModelEvaluated.TYPE)]


async def send_verdicts(nc, items, *, poisoned: bool = False, direct: bool = False) -> None:
    """Analyst verdicts, each carrying its alert (a labelled import): through the SOC's raw
    intake, or (``direct``, no SOC running) straight onto the feedback stream."""
    for item in items:
        verdict = "true_positive" if item.is_threat != poisoned else "false_positive"
        if direct:
            record = soc.new_feedback(soc.summarize(item.alert), verdict, "alice")
            await nc.jetstream().publish(soc.FEEDBACK_QUEUE, msgspec.json.encode(record))
            continue
        body = {
            "alert_id": item.alert.id,
            "verdict": verdict,
            "analyst": "alice",
            "alert": msgspec.to_builtins(item.alert),
        }
        reply = intake_reply.decode(
            (await nc.request(soc.FEEDBACK_INTAKE, msgspec.json.encode(body), timeout=5)).data
        )
        assert reply.ok, reply


async def test_a_fresh_install_bootstraps_v1_and_answers_the_probe(soc_settings: Settings, nc, tap) -> None:
    async with running_engines(soc_settings, ["ml-retrain"]) as hosts:
        published = await wait_until(lambda: tap.matching(lambda e: e.type == ml.MODEL_PUBLISHED), timeout=30)
        event = payload(published[0], ml.ModelPublished)
        assert (
            event.reason == "bootstrap" and event.pointer.version == "v1" and event.pointer.format == "skops"
        )
        [evaluated] = evaluations(tap)
        assert evaluated.promoted and evaluated.candidate["roc_auc"] > 0.8 and evaluated.active is None
        reply = await probe(nc)
        assert reply.ok and reply.version == "v1"
        assert reply.scores["true_positive"] > 0.5 and reply.scores["threat"] > 40  # the probe is mimikatz
        extras = hosts["ml-retrain"].snapshot().extras
        assert extras["retrain_threshold"] == 100 and extras["total_retrains"] == 0
        assert extras["performance_log"][0]["version"] == "v1"


async def test_a_retrain_fires_exactly_at_the_threshold_and_the_soc_swaps_models(
    soc_stack, nc, tap, monkeypatch: pytest.MonkeyPatch
) -> None:
    ml_host, soc_host = soc_stack["ml-retrain"], soc_stack["soc-cycle"]
    ml_host.engine.config.promotion_tolerance = 0.05  # this test is about the swap, not the rule
    labelled = generate(100, seed=21)
    await send_verdicts(nc, labelled[:99])
    await wait_until(lambda: ml_host.engine.status_extras()["training_buffer"] == 99)
    await asyncio.sleep(0.5)
    assert len(evaluations(tap)) == 1  # the bootstrap only: 99 is not enough

    await send_verdicts(nc, labelled[99:])
    evaluated = await wait_until(lambda: len(e := evaluations(tap)) == 2 and e[1], timeout=30)
    assert evaluated.version == "v2" and evaluated.reason == "threshold" and evaluated.buffered == 100
    assert evaluated.promoted and evaluated.feedback_samples == 100 and evaluated.active_version == "v1"
    assert set(evaluated.candidate) >= {"precision", "recall", "f1", "roc_auc"}
    reloaded = await wait_until(
        lambda: [
            e
            for e in tap.matching(lambda e: e.type == "models_reloaded")
            if payload(e, soc.ModelsReloaded).version == "v2"
        ]
    )
    assert payload(reloaded[0], soc.ModelsReloaded).previous == "v1"
    extras = ml_host.engine.status_extras()
    assert (
        extras["total_retrains"] == 1 and extras["training_buffer"] == 0 and extras["active_version"] == "v2"
    )
    assert [entry["version"] for entry in extras["performance_log"]] == ["v1", "v2"]

    fresh = [item.alert for item in generate(5, seed=22)]
    await nc.request(soc.ALERT_INTAKE, soc.encode_alerts(fresh), timeout=5)
    found = await wait_until(lambda: all(a.id in (d := decided(tap)) for a in fresh) and d)
    assert {found[a.id][0].model_version for a in fresh} == {"v2"}
    assert soc_host.snapshot().extras["model_version"] == "v2"
    assert (await probe(nc)).version == "v2"


async def test_a_worse_model_is_not_promoted(soc_settings: Settings, nc, tap) -> None:
    async with running_engines(soc_settings, ["ml-retrain"]) as hosts:
        await wait_until(lambda: hosts["ml-retrain"].engine.active is not None, timeout=30)
        # 100 real attacks marked as false positives
        attacks = [item for item in generate(600, seed=31) if item.is_threat][:100]
        await send_verdicts(nc, attacks, poisoned=True, direct=True)
        evaluated = await wait_until(lambda: len(e := evaluations(tap)) == 2 and e[1], timeout=30)
        assert not evaluated.promoted and "worse than the active version" in evaluated.verdict[0]
        assert evaluated.candidate["recall"] < evaluated.active["recall"]
        engine = hosts["ml-retrain"].engine
        assert engine.active_pointer.version == "v1" and engine.status_extras()["total_retrains"] == 1
        assert [
            p.pointer.version
            for p in map(
                lambda e: payload(e, ml.ModelPublished), tap.matching(lambda e: e.type == ml.MODEL_PUBLISHED)
            )
        ] == ["v1"]
        assert (await probe(nc)).version == "v1"
        outcome = tap.matching(lambda e: e.type == ml.ModelEvaluated.TYPE)[1].summary
        assert outcome.result == "kept_active"


async def publish_pointer(settings: Settings, nc, pointer: ml.ModelPointer) -> None:
    """What an attacker with write access to the registry would do."""
    registry = await ModelRegistry(nc.jetstream(), settings).open()
    await registry.activate(pointer)
    publisher = EventPublisher(nc.jetstream())
    await publisher.publish(
        new_event(
            system=ml.ML_SYSTEM,
            payload=ml.ModelPublished(pointer=pointer, previous="v1", reason="manual"),
            summary=Summary(action="model_published"),
        )
    )


@pytest.mark.parametrize("attack", ["pickle_with_matching_digest", "blob_changed_after_publishing"])
async def test_a_tampered_model_is_refused_and_the_last_good_one_stays(
    attack: str, soc_stack, soc_settings: Settings, nc, tap
) -> None:
    registry = await ModelRegistry(nc.jetstream(), soc_settings).open()
    good = await registry.active_pointer()
    assert good.version == "v1"
    bundle = soc_stack["soc-cycle"].engine.bundle
    objects = {name: object_name("v9", name) for name in good.objects}
    digests = dict(good.sha256)
    for name in good.objects:  # copy v1's blobs as v9 ...
        blob = (await registry.store.get(good.objects[name])).data
        await registry.store.put(objects[name], blob)
    if attack == "pickle_with_matching_digest":  # ... but the classifier is a pickle
        evil = pickle.dumps(bundle.classifier)
        await registry.store.put(objects["alert_classifier"], evil)
        digests["alert_classifier"] = digest(evil)
        expected = "not a skops file"
    else:  # ... and one blob is swapped after its digest was recorded
        await registry.store.put(objects["threat_scorer"], pickle.dumps({"threat": 0}))
        expected = "sha256 mismatch"
    await publish_pointer(soc_settings, nc, ml.ModelPointer(version="v9", objects=objects, sha256=digests))

    refused = await wait_until(
        lambda: tap.matching(lambda e: e.type == "models_reloaded" and e.summary.result == "failed")
    )
    assert expected in payload(refused[0], soc.ModelsReloaded).error
    engine = soc_stack["soc-cycle"].engine
    assert engine.pointer.version == "v1" and engine.bundle is bundle
    reply = await probe(nc)  # heal-check hears about it
    assert not reply.ok and reply.version == "v9" and expected in reply.error

    fresh = [item.alert for item in generate(3, seed=41)]
    await nc.request(soc.ALERT_INTAKE, soc.encode_alerts(fresh), timeout=5)
    found = await wait_until(lambda: all(a.id in (d := decided(tap)) for a in fresh) and d)
    assert {found[a.id][0].model_version for a in fresh} == {"v1"}  # still triaging with the good model
    await asyncio.sleep(0.5)  # the refused pointer is not retried on every pass
    assert len(tap.matching(lambda e: e.type == "models_reloaded" and e.summary.result == "failed")) == 1


async def test_the_training_buffer_survives_a_restart(soc_settings: Settings, nc, tap) -> None:
    async with running_engines(soc_settings, ["ml-retrain"]) as hosts:
        await wait_until(lambda: hosts["ml-retrain"].engine.active is not None, timeout=30)
        await send_verdicts(nc, generate(30, seed=51), direct=True)
        await wait_until(lambda: hosts["ml-retrain"].engine.status_extras()["training_buffer"] == 30)
    async with running_engines(soc_settings, ["ml-retrain"]) as hosts:
        engine = hosts["ml-retrain"].engine
        assert engine.status_extras()["training_buffer"] == 30
        assert engine.active_pointer.version == "v1" and not engine.bootstrapping
        await send_verdicts(nc, generate(70, seed=52), direct=True)
        evaluated = await wait_until(lambda: len(e := evaluations(tap)) == 2 and e[1], timeout=30)
        assert evaluated.buffered == 100 and evaluated.feedback_samples == 100 and evaluated.version == "v2"
