"""The five subsystem checks against a real nats-server: passing, failing with a reason,
and the healing log noting when a subsystem breaks and recovers."""

from __future__ import annotations

import asyncio
import json

from nats.js.api import ConsumerConfig, StreamConfig

from contracts.commands import reply_decoder
from contracts.events import command_of
from contracts.ml import ProbeReply
from services.runtime.testing import running_engines
from tests.healing.conftest import healer, healing_config, model_probe, until

CHECKS = {"jetstream", "kv_object_store", "ml_models", "advisory_freshness", "gateway"}


async def trigger_heal_check(nc) -> dict:
    msg = await nc.request("aoc.ctl.heal-check.trigger", b'{"actor":"test"}', timeout=5)
    reply = reply_decoder.decode(msg.data)
    assert reply.ok and reply.status == "done", reply
    return reply.result


def log_of(host, target: str) -> list[str]:
    return [entry.event for entry in host.engine.healing_log if entry.target == target]


async def test_trigger_runs_all_checks_and_all_pass_on_a_healthy_platform(settings, nc, http, good_model):
    async with (
        running_engines(settings, ["advisory-refresh"]) as engines,
        model_probe(nc, good_model),
        # the product's bounds, not the failing tests' 0.5 s: five checks of several round
        # trips each ran past 0.5 s once on a loaded CI machine, and "all pass" is what this
        # test is about (the reply waits for the whole cycle, within the request's 5 s)
        healer(
            settings.model_copy(update={"reply_budget": 4.0}),
            healing_config(watched=["advisory-refresh"], check_timeout=3.0),
        ) as host,
    ):
        await until(lambda: engines["advisory-refresh"].engine.feed_states, what="a first advisory refresh")
        result = await trigger_heal_check(nc)
        assert set(result["checks"]) == CHECKS
        statuses = {name: check["status"] for name, check in result["checks"].items()}
        assert statuses == dict.fromkeys(CHECKS, "ok"), {n: c["detail"] for n, c in result["checks"].items()}
        assert result["checks"]["ml_models"]["data"]["version"] == "2024.11.20-1"
        assert result["checks"]["advisory_freshness"]["data"] == {"feeds": 4, "stale": []}
        assert result["engines"]["advisory-refresh"]["health"] == "healthy"
        assert result["result"] == "success"
        status = host.snapshot().extras
        assert status["subsystems"] == dict.fromkeys(CHECKS, "ok")
        breakers = status["circuit_breakers"]
        assert set(breakers) == {"advisory-refresh", "advisory-refresh:feeds"}
        assert {(b["state"], b["failures"]) for b in breakers.values()} == {("closed", 0)}


async def test_failing_subsystems_say_why_and_the_log_notes_breaking_and_recovering(
    settings, nc, good_model, tap
):
    async with healer(settings, healing_config(watched=[])) as host:
        result = await trigger_heal_check(nc)
        checks = result["checks"]
        assert (checks["jetstream"]["status"], checks["kv_object_store"]["status"]) == ("ok", "ok")
        assert checks["ml_models"]["status"] == "failed"
        assert "no responder on aoc.ml.probe" in checks["ml_models"]["detail"]
        assert "no gateway answers aoc.gateway.health" in checks["gateway"]["detail"]
        assert "advisory-refresh has not refreshed any feed" in checks["advisory_freshness"]["detail"]
        assert result["ok"] is True and result["result"] == "degraded"  # heal-check itself worked

        broken = ProbeReply(ok=False, error="active model blob missing from aoc_models")
        async with model_probe(nc, broken):
            checks = (await trigger_heal_check(nc))["checks"]
        assert (
            checks["ml_models"]["detail"] == "model probe failed: active model blob missing from aoc_models"
        )
        async with model_probe(nc, good_model):
            checks = (await trigger_heal_check(nc))["checks"]
        assert checks["ml_models"]["status"] == "ok"
        assert log_of(host, "subsystem:ml_models") == ["detected", "recovered"]
        assert log_of(host, "subsystem:gateway") == ["detected"]  # logged once, not per pass
        recorded = tap.matching(lambda e: e.type == "healing_recorded" and "ml_models" in e.summary.detail)
        assert [e.summary.action for e in recorded] == ["healing_detected", "healing_recovered"]


async def test_a_lagging_consumer_fails_the_jetstream_check(settings, nc):
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="TEST_LAG", subjects=["test.lag"]))
    await js.add_consumer("TEST_LAG", ConsumerConfig(durable_name="slow-reader"))
    for n in range(12):
        await js.publish("test.lag", str(n).encode())
    async with healer(settings, healing_config(watched=[], consumer_lag_threshold=10)):
        check = (await trigger_heal_check(nc))["checks"]["jetstream"]
    assert check["status"] == "failed" and "TEST_LAG/slow-reader: 12 pending" in check["detail"]


async def test_stale_feeds_get_a_refresh_and_an_operator_stop_skips_the_check(settings, nc, tap):
    # advisory feeds are stale after 0.3 s here (the shipped feeds' schedule is 1800 s)
    config = healing_config(watched=["advisory-refresh"], freshness_factor=0.3 / 1800)
    async with (
        running_engines(settings, ["advisory-refresh"]) as engines,
        healer(settings, config) as host,
    ):
        healing = host.engine
        await until(lambda: engines["advisory-refresh"].engine.feed_states, what="a first advisory refresh")

        def stale_feeds() -> list[str]:
            return healing.checks["advisory_freshness"].data.get("stale")

        await until(stale_feeds, step=healing.check_subsystems, what="feeds going stale")
        await asyncio.sleep(config.verify_after)  # any refresh heal-check asked for at start is judged
        await healing.watch_engines()
        await healing.remediate()
        assert healing.pending["advisory-refresh:feeds"].action == "trigger"
        command = await tap.wait_for(
            lambda e: (
                command_of(e) is not None
                and e.actor == "heal-check"
                and e.system == "advisory-refresh"
                and "stale feeds" in e.payload().reason
            )
        )
        assert command_of(command).verb == "trigger"
        # the triggered refresh made them fresh; the next pass sees it and closes the episode
        await healing.check_subsystems()
        await healing.remediate()
        assert log_of(host, "advisory-refresh:feeds")[-2:] == ["refresh_requested", "remediated"]
        assert "advisory-refresh:feeds" not in healing.pending

        await nc.request("aoc.ctl.advisory-refresh.stop", json.dumps({"actor": "alice"}).encode(), timeout=2)
        await healing.check_subsystems()
        skipped = healing.checks["advisory_freshness"]
        assert skipped.status == "skipped" and "stopped by an operator" in skipped.detail
