"""Remediation against real engines on a real nats-server: a stalled engine gets a
restart command, a breaker opens after repeated failed remediations and half-opens after
the cool-down, and an engine an operator stopped is never healed back on."""

from __future__ import annotations

import asyncio

from contracts.events import command_of, envelope_decoder
from contracts.healing import HEALTHY, STALLED, STOPPED
from services.runtime.stream import last_message
from tests.healing.conftest import healer, healing_config, stalling_deploy, until


def restarts_by_heal_check(tap) -> list[tuple[int, object]]:
    return [
        (seq, event)
        for seq, event in tap.events
        if command_of(event) is not None and event.actor == "heal-check" and event.system == "deploy"
    ]


def deploy_log(healing) -> list[str]:
    return [entry.event for entry in healing.healing_log if entry.target == "deploy"]


async def test_a_stalled_engine_gets_a_restart_command_and_recovers(settings, tap):
    async with stalling_deploy(settings, hang_times=1), healer(settings, healing_config()) as host:
        healing = host.engine

        def health() -> str:
            return healing.engines["deploy"].health

        await until(lambda: health() == STALLED, step=healing.watch_engines, what="deploy to look stalled")
        assert "'watch' has not completed a cycle" in healing.engines["deploy"].reason
        await healing.remediate()
        assert healing.pending["deploy"].action == "restart"
        command = await tap.wait_for(lambda e: command_of(e) is not None and e.actor == "heal-check")
        handled = command_of(command)
        assert (handled.verb, handled.target, handled.outcome) == ("restart", "deploy", "accepted")
        assert handled.reason.startswith("heal-check: stalled")

        await until(lambda: health() == HEALTHY, step=healing.watch_engines, what="deploy to work again")
        await healing.remediate()
        assert deploy_log(healing) == ["detected", "restart_requested", "recovered", "remediated"]
        assert healing.breakers["deploy"].pristine and "deploy" not in healing.pending
        status = host.snapshot().extras
        assert status["healing_log"][0]["event"] == "remediated"  # newest first
        assert status["circuit_breakers"]["deploy"]["state"] == "closed"
        report = await healing.report()  # the hourly report sums up the period
        actions = report.output["actions"]
        assert (actions["restart_requested"], actions["recovered"], actions["remediated"]) == (1, 1, 1)
        assert (
            report.output["engines"]["deploy"]["health"] == HEALTHY and "restart_requested" in report.detail
        )


async def test_breaker_opens_after_repeated_failed_remediations_and_half_opens_after_cooldown(settings, tap):
    config = healing_config(breaker_threshold=2, breaker_cooldown=1.0)
    async with stalling_deploy(settings), healer(settings, config) as host:  # it never stops hanging
        healing = host.engine
        breaker = healing.breakers["deploy"]

        async def one_pass() -> None:
            await healing.watch_engines()
            await healing.remediate()

        await until(lambda: breaker.state == "open", step=one_pass, what="the breaker to open")
        assert len(restarts_by_heal_check(tap)) == 2  # the threshold
        assert host.snapshot().extras["circuit_breakers"]["deploy"]["failures"] == 2
        for _ in range(3):  # open: passes go by without a restart, and the log says so once
            await one_pass()
        assert len(restarts_by_heal_check(tap)) == 2
        assert deploy_log(healing).count("skipped") == 1

        await until(lambda: breaker.state == "half_open", step=one_pass, what="the cool-down to end")
        await until(lambda: breaker.state == "open", step=one_pass, what="the trial to fail")
        assert len(restarts_by_heal_check(tap)) == 3  # exactly one trial

    changes = tap.matching(lambda e: e.type == "breaker_changed")
    assert [e.payload().breaker.state for e in changes] == ["open", "half_open", "open"]
    opened, half_opened, _ = (seq for seq, e in tap.events if e.type == "breaker_changed")
    restart_seqs = [seq for seq, _ in restarts_by_heal_check(tap)]
    assert not [seq for seq in restart_seqs if opened < seq < half_opened]  # nothing while open
    assert deploy_log(healing)[:4] == [
        "detected",
        "restart_requested",
        "remediation_failed",
        "restart_requested",
    ]

    # a restarted heal-check knows the open breaker and its log from its own events
    async with healer(settings, config) as again:
        restored = again.engine.breakers["deploy"]
        assert (restored.state, restored.failures) == ("open", 3)
        assert deploy_log(again.engine)[:4] == deploy_log(healing)[:4]


async def test_an_engine_an_operator_stopped_is_never_healed(settings, nc, tap):
    async with stalling_deploy(settings) as deploy, healer(settings, healing_config()) as host:
        healing = host.engine

        async def one_pass() -> None:
            await healing.watch_engines()
            await healing.remediate()

        await until(lambda: healing.pending.get("deploy"), step=one_pass, what="a first restart")
        await nc.request("aoc.ctl.deploy.stop", b'{"actor":"alice","reason":"maintenance window"}', timeout=2)
        stopped_at = tap.events[-1][0]
        await one_pass()
        assert healing.engines["deploy"].health == STOPPED and "deploy" not in healing.pending
        assert deploy_log(healing)[-2:] == ["operator_stopped", "skipped"]  # the pending restart abandoned

        await deploy.stop_heartbeats()  # and then its process goes quiet too
        for _ in range(8):  # well past the heartbeat timeout, verify window and supervisor grace
            await one_pass()
            await asyncio.sleep(0.2)
        assert healing.engines["deploy"].health == STOPPED
        assert [seq for seq, _ in restarts_by_heal_check(tap) if seq > stopped_at] == []
        last = await last_message(nc.jetstream(), "aoc.evt.deploy.lifecycle_changed")
        record = envelope_decoder.decode(last.data)
        assert (record.payload().desired, record.actor) == ("stopped", "alice")
        assert deploy.lifecycle.state == "stopped"
