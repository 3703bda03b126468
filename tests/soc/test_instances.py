"""Two real soc-cycle processes triage one shared queue (issue 13 §3): 10,000 alerts,
the active instance killed -9 mid-run -> 10,000 decisions, none twice, both instances
having decided some, and the counters (each instance's share, summed) count each
decision once."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from nats.aio.msg import Msg

from contracts import soc
from services.ml.generator import generate
from services.runtime.testing import running_engines
from tests.runtime.test_failover_processes import ask, eventually, holder, spawn
from tests.soc.conftest import decided

pytestmark = pytest.mark.timeout(300)
ALERTS, PER_MESSAGE = 10_000, 50


async def test_two_instances_share_triage_and_a_kill_9_decides_nothing_twice(
    settings_env, settings, nc, tap
) -> None:
    env = {
        **settings_env,
        "AOC_SOC_ACK_WAIT": "2",  # what the killed instance held comes back within seconds
        "AOC_SOC_FETCH_WAIT": "0.1",
        "AOC_SOC_FETCH_BATCH": "4",  # 200 alerts a pull: both instances get their share
        "AOC_SOC_ROUND_ALERTS": "100",
        "AOC_SCHEDULES": json.dumps({"soc-cycle.triage": 0.01, "soc-cycle.hunting": 3600}),
    }
    processes: dict[str, subprocess.Popen] = {}
    try:
        processes["ml-retrain-1"] = spawn("ml", env, "ml-retrain-1")
        for instance in ("soc-cycle-1", "soc-cycle-2"):
            processes[instance] = spawn("soc", env, instance)

        def scoring() -> set[str]:
            return {e.instance for e in tap.matching(lambda e: e.type == soc.ModelsReloaded.TYPE)}

        await eventually(lambda: _ready(scoring() == {"soc-cycle-1", "soc-cycle-2"}), timeout=90)

        js = nc.jetstream()
        batch = [item.alert for item in generate(ALERTS, 11)]
        for start in range(0, ALERTS, PER_MESSAGE):
            chunk = batch[start : start + PER_MESSAGE]
            await js.publish(soc.ALERT_QUEUE, soc.encode_alerts(chunk), headers={"Nats-Msg-Id": f"t-{start}"})

        # mid-run: the lease holder dies with alerts in hand
        await eventually(lambda: _ready(len(decided(tap)) >= 2_000), timeout=60, step=0.01)
        active = (await holder(nc, settings, soc.SOC_SYSTEM)).instance
        os.kill(processes[active].pid, signal.SIGKILL)
        processes[active].wait(10)
        died_at = len(decided(tap))
        assert died_at < ALERTS, "the run ended before the kill: nothing was in flight"

        await eventually(lambda: _ready(len(decided(tap)) >= ALERTS), timeout=120)
        info = await eventually(lambda: _drained(js), timeout=30)
        assert info.num_pending == 0 and info.num_ack_pending == 0

        found = decided(tap)
        assert set(found) == {a.id for a in batch}  # every alert decided
        twice = [alert_id for alert_id, decisions in found.items() if len(decisions) > 1]
        assert twice == []  # none twice, across instances and the kill
        deciders = {e.instance for e in tap.matching(lambda e: e.type == soc.AlertsTriaged.TYPE)}
        assert deciders == {"soc-cycle-1", "soc-cycle-2"}  # the standby triaged too

        survivor = ({"soc-cycle-1", "soc-cycle-2"} - {active}).pop()

        async def taken_over():
            status = await ask(nc, f"aoc.ctl.{soc.SOC_SYSTEM}.status")
            return status if status.state == "running" else None

        status = await eventually(taken_over, timeout=30)
        assert status.result["instance"] == survivor
        assert status.result["extras"]["alerts_processed"] == ALERTS, survivor  # each decision counted once
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


async def test_what_one_instance_decided_but_never_acked_the_other_does_not_decide_again(
    settings_env, soc_settings, nc, tap, monkeypatch: pytest.MonkeyPatch
) -> None:
    """soc-cycle-1 (in this process) stores its decisions but its acks are lost, so every
    message it took comes back after ack_wait, to it or to soc-cycle-2 (a process of its
    own). Only soc-cycle-2's acks retire them: the queue drains only once it has taken
    each of them, and it must recognise every one as decided."""
    processes = {"ml-retrain-1": spawn("ml", settings_env, "ml-retrain-1")}
    real_ack = Msg.ack

    async def lost_ack(self: Msg) -> None:
        if self.subject != soc.ALERT_QUEUE:
            await real_ack(self)

    monkeypatch.setattr(Msg, "ack", lost_ack)
    mine = soc_settings.model_copy(update={"instance_id": "soc-cycle-1"})
    try:
        async with running_engines(mine, ["soc-cycle"]) as hosts:
            await eventually(lambda: _ready(hosts["soc-cycle"].engine.bundle is not None), timeout=60)
            processes["soc-cycle-2"] = spawn("soc", settings_env, "soc-cycle-2")
            await eventually(
                lambda: _ready(
                    tap.matching(lambda e: e.type == soc.ModelsReloaded.TYPE and e.instance == "soc-cycle-2")
                ),
                timeout=60,
            )
            js = nc.jetstream()
            batch = [item.alert for item in generate(2_000, 12)]
            for start in range(0, len(batch), PER_MESSAGE):
                await js.publish(soc.ALERT_QUEUE, soc.encode_alerts(batch[start : start + PER_MESSAGE]))
            await eventually(lambda: _drained(js), timeout=120)

            found = decided(tap)
            assert set(found) == {a.id for a in batch}
            assert [alert_id for alert_id, ds in found.items() if len(ds) > 1] == []
            by = {e.instance for e in tap.matching(lambda e: e.type == soc.AlertsTriaged.TYPE)}
            assert "soc-cycle-1" in by  # it decided (and never acked) some of them
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(15)


async def _ready(value):
    return value


async def _drained(js):
    info = await js.consumer_info(soc.ALERTS_STREAM, soc.TRIAGE_CONSUMER)
    return info if info.num_pending == 0 and info.num_ack_pending == 0 else None
