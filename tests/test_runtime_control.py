"""The shared runtime over a real nats-server: control from raw NATS (what the `nats`
CLI sends), lifecycle, dedup, audit, heartbeats, counters."""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
import pytest

from contracts.commands import reply_decoder
from contracts.events import command_of, envelope_decoder, heartbeat_decoder
from contracts.systems import SYSTEMS
from services.runtime import CycleOutcome, EngineHost, Loop, StopRequested
from services.runtime.bus import barrier
from services.runtime.testing import engine_class, running_engines


async def ask(nc, subject: str, body: bytes = b"", headers=None):
    msg = await nc.request(subject, body, timeout=3, headers=headers)
    return reply_decoder.decode(msg.data), msg.headers or {}


async def test_empty_body_stop_then_start_from_raw_nats(engines, nc, tap):
    reply, _ = await ask(nc, "aoc.ctl.soc-cycle.stop")
    assert (reply.ok, reply.state, reply.desired, reply.changed) == (True, "stopped", "stopped", True)
    assert engines["soc-cycle"].lifecycle.state == "stopped"
    assert engines["deploy"].lifecycle.state == "running"  # only its target

    reply, _ = await ask(nc, "aoc.ctl.soc-cycle.start", b'{"actor":"alice","reason":"incident 42 over"}')
    assert (reply.ok, reply.state, reply.changed) == (True, "running", True)
    audit = await tap.wait_for(lambda e: command_of(e) is not None and e.actor == "alice")
    payload = command_of(audit)
    assert (payload.verb, payload.outcome, payload.reason) == ("start", "accepted", "incident 42 over")
    lifecycle = [
        e.payload().state
        for e in tap.matching(lambda e: e.type == "lifecycle_changed" and e.system == "soc-cycle")
    ]
    assert lifecycle[-2:] == ["stopped", "running"]


async def test_command_in_requested_state_succeeds_and_says_so(engines, nc):
    reply, _ = await ask(nc, "aoc.ctl.deploy.start")
    assert reply.ok and not reply.changed
    assert "already running" in reply.message
    await ask(nc, "aoc.ctl.deploy.stop")
    reply, _ = await ask(nc, "aoc.ctl.deploy.stop")
    assert reply.ok and not reply.changed and "already stopped" in reply.message


async def test_broadcast_stop_with_json_body_reaches_every_engine(engines, nc, tap):
    # `nats pub` sends no reply subject: the audit events are the only answer
    await nc.publish("aoc.ctl.all.stop", b'{"actor":"alice","reason":"incident 42"}')
    await barrier(nc)
    for slug in SYSTEMS:
        await tap.wait_for(
            lambda e, slug=slug: e.system == slug and command_of(e) is not None and e.actor == "alice"
        )
    assert {host.lifecycle.state for host in engines.values()} == {"stopped"}
    audits = tap.matching(lambda e: command_of(e) is not None and e.actor == "alice")
    assert {command_of(a).origin for a in audits} == {"all"}
    assert {command_of(a).reason for a in audits} == {"incident 42"}


async def test_garbage_unknown_verb_and_wrong_types_are_refused_and_audited(engines, nc, tap):
    cases = [
        ("aoc.ctl.ml-retrain.stop", b"{not json", "invalid_command", "malformed JSON"),
        ("aoc.ctl.ml-retrain.stop", b'{"actor": 42}', "invalid_command", "$.actor"),
        ("aoc.ctl.ml-retrain.stop", b'{"reson": "typo"}', "invalid_command", "reson"),
        ("aoc.ctl.ml-retrain.stop", b"[1,2]", "invalid_command", "object"),
        ("aoc.ctl.ml-retrain.explode", b"", "unknown_verb", "unknown verb 'explode'"),
    ]
    for subject, body, code, fragment in cases:
        reply, headers = await ask(nc, subject, body)
        assert not reply.ok and reply.error == code, (body, reply)
        assert fragment in reply.message
        assert headers.get("Nats-Service-Error-Code") == code
    assert engines["ml-retrain"].lifecycle.state == "running"  # nothing changed
    await asyncio.sleep(0.1)
    rejected = tap.matching(lambda e: e.system == "ml-retrain" and e.summary.result == "rejected")
    assert len(rejected) == len(cases)


async def test_unknown_system_on_raw_nats_gets_an_error_from_the_gateway(settings, nc, tap):
    from gateway.state import GatewayState

    gateway = GatewayState(settings)
    await gateway.open()
    try:
        reply, _ = await ask(nc, "aoc.ctl.no-such-engine.stop")
        assert not reply.ok and reply.error == "unknown_system"
        assert "no-such-engine" in reply.message
        audit = await tap.wait_for(lambda e: command_of(e) is not None and e.system == "gateway")
        assert command_of(audit).target == "no-such-engine"
    finally:
        await gateway.close()


async def test_duplicate_command_id_acts_once(engines, nc, tap):
    body = b'{"command_id": "cmd-123", "actor": "bob"}'
    first, _ = await ask(nc, "aoc.ctl.heal-check.restart", body)
    second, _ = await ask(nc, "aoc.ctl.heal-check.restart", body)
    assert first.ok and first.changed and not first.duplicate
    assert second.ok and second.duplicate and not second.changed
    await asyncio.sleep(0.1)
    restarts = tap.matching(
        lambda e: (
            e.system == "heal-check" and e.type == "lifecycle_changed" and e.payload().command_id == "cmd-123"
        )
    )
    assert [e.payload().state for e in restarts] == ["stopped", "running"]  # one restart, not two
    outcomes = [
        command_of(e).outcome for e in tap.matching(lambda e: command_of(e) is not None and e.actor == "bob")
    ]
    assert outcomes == ["accepted", "duplicate"]


async def test_duplicate_is_recognised_by_a_fresh_engine_process(settings, nc):
    body = b'{"command_id": "cmd-after-crash"}'
    async with running_engines(settings, ["advisory-refresh"]):
        first, _ = await ask(nc, "aoc.ctl.advisory-refresh.stop", body)
    async with running_engines(settings, ["advisory-refresh"]) as hosts:
        again, _ = await ask(nc, "aoc.ctl.advisory-refresh.stop", body)  # same id, same request: acts once
        assert first.changed and again.duplicate and not again.changed
        # the same id for another verb is refused, naming the first request (issue 11)
        other, _ = await ask(nc, "aoc.ctl.advisory-refresh.start", body)
        assert not other.ok and other.error == "idempotency_key_reused"
        assert other.result["first_request"]["verb"] == "stop"
        assert hosts["advisory-refresh"].lifecycle.state == "stopped"


def quick_trigger(host, **output):
    """Give an engine a trigger whose work is known, so these tests check the runtime
    and not how long a domain cycle takes."""

    async def trigger(args):
        return CycleOutcome(detail="quick test cycle", output={**output, **args})

    host.engine.trigger = trigger


async def test_trigger_runs_a_cycle_counts_it_and_refuses_when_stopped(engines, nc, tap):
    quick_trigger(engines["integrity-scan"], findings=3)
    reply, _ = await ask(nc, "aoc.ctl.integrity-scan.trigger", b'{"actor":"carol","args":{"scope":"all"}}')
    assert reply.ok and reply.status == "done" and reply.run_id
    assert reply.result == {"ok": True, "result": "success", "findings": 3, "scope": "all"}
    cycle = await tap.wait_for(lambda e: e.type == "cycle_completed" and e.payload().run_id == reply.run_id)
    assert cycle.actor == "carol" and cycle.payload().manual
    assert engines["integrity-scan"].counters.total_runs >= 1
    status, _ = await ask(nc, "aoc.ctl.integrity-scan.status")
    assert status.result["total_runs"] == engines["integrity-scan"].counters.total_runs

    await ask(nc, "aoc.ctl.integrity-scan.stop")
    refused, _ = await ask(nc, "aoc.ctl.integrity-scan.trigger")
    assert not refused.ok and refused.error == "not_running"


async def test_slow_trigger_replies_started_and_reports_by_event(settings, nc, tap):
    async with running_engines(settings, ["frontend-factory"]) as hosts:
        engine = hosts["frontend-factory"].engine

        async def slow_cycle(args):
            from services.runtime import CycleOutcome

            await asyncio.sleep(settings.reply_budget + 0.3)
            return CycleOutcome(detail="slow work done", output={"pages": 2})

        engine.trigger = slow_cycle
        reply, _ = await ask(nc, "aoc.ctl.frontend-factory.trigger")
        assert reply.ok and reply.status == "started" and reply.run_id
        done = await tap.wait_for(
            lambda e: e.type == "cycle_completed" and e.payload().run_id == reply.run_id
        )
        assert done.payload().output == {"pages": 2}


async def test_failing_cycle_counts_an_error_and_success_rate(settings, nc):
    async with running_engines(settings, ["advisory-refresh"]) as hosts:
        host = hosts["advisory-refresh"]

        async def broken(args):
            raise RuntimeError("feed parser exploded")

        host.engine.trigger = broken
        # the loop's first scheduled cycle runs at start: count from after it
        for _ in range(100):
            if host.counters.total_runs >= 1 and not host.loops.busy():
                break
            await asyncio.sleep(0.05)
        before, errors_before = host.counters.total_runs, host.counters.errors
        reply, _ = await ask(nc, "aoc.ctl.advisory-refresh.trigger")
        assert reply.ok and reply.result["ok"] is False and reply.result["result"] == "failed"
        status, _ = await ask(nc, "aoc.ctl.advisory-refresh.status")
        total, errors = status.result["total_runs"], status.result["error_count"]
        assert total == before + 1 and errors == errors_before + 1
        assert status.result["success_rate"] == round((total - errors) / total * 100, 2)


async def test_counters_resume_after_engine_restart(settings, nc):
    async with running_engines(settings, ["soc-cycle"]) as hosts:
        quick_trigger(hosts["soc-cycle"])
        for _ in range(3):
            await ask(nc, "aoc.ctl.soc-cycle.trigger")
        status, _ = await ask(nc, "aoc.ctl.soc-cycle.status")
    async with running_engines(settings, ["soc-cycle"]):
        resumed, _ = await ask(nc, "aoc.ctl.soc-cycle.status")
    assert resumed.result["total_runs"] >= status.result["total_runs"] >= 3


async def test_heartbeats_carry_status_and_process_metrics(engines, nc):
    js = nc.jetstream()
    await asyncio.sleep(0.3)
    raw = await js.get_last_msg("AOC_HEARTBEATS", "aoc.hb.soc-cycle")
    beat = heartbeat_decoder.decode(raw.data)
    assert beat.status.state == "running" and beat.status.extras.keys() >= {
        "alerts_processed",
        "auto_resolved",
    }
    assert beat.process.pid > 0 and beat.process.rss_mb > 0 and beat.process.threads >= 1


async def test_events_are_stored_once_with_their_id_as_msg_id(engines, nc, tap):
    await ask(nc, "aoc.ctl.deploy.stop")
    event = await tap.wait_for(lambda e: e.type == "lifecycle_changed" and e.system == "deploy")
    js = nc.jetstream()
    # a retried publish with the same id is a duplicate, not a second event
    ack = await js.publish(
        "aoc.evt.deploy.lifecycle_changed", msgspec.json.encode(event), headers={"Nats-Msg-Id": event.id}
    )
    assert ack.duplicate
    stored = [e for _, e in tap.events if e.id == event.id]
    assert len(stored) == 1 and envelope_decoder.decode(msgspec.json.encode(stored[0])).id == event.id


async def test_engines_register_as_nats_micro_services(engines, nc):
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish("$SRV.PING", b"", reply=inbox)
    names = set()
    try:
        while len(names) < len(SYSTEMS):
            msg = await sub.next_msg(timeout=2)
            names.add(msgspec.json.decode(msg.data)["name"])
    finally:
        await sub.unsubscribe()
    assert names == {f"aoc-{slug}" for slug in SYSTEMS}
    stats = msgspec.json.decode((await nc.request("$SRV.STATS.aoc-deploy", b"", timeout=2)).data)
    # natscli requires `data` to be an object, never null
    assert all(isinstance(endpoint["data"], dict) for endpoint in stats["endpoints"])


async def test_a_restart_unless_stopped_yields_to_an_operators_stop(settings, nc):
    """heal-check's restart must not undo a stop that landed after it looked."""
    async with running_engines(settings, ["deploy"]) as hosts:
        await ask(nc, "aoc.ctl.deploy.stop", b'{"actor": "alice"}')
        body = b'{"actor": "heal-check", "args": {"unless_stopped": true}}'
        reply, _ = await ask(nc, "aoc.ctl.deploy.restart", body)
        assert reply.ok and reply.changed is False and "stopped by an operator" in reply.message
        assert hosts["deploy"].lifecycle.state == "stopped" and hosts["deploy"].desired == "stopped"
        # a plain restart (an operator's) still brings it back
        reply, _ = await ask(nc, "aoc.ctl.deploy.restart", b'{"actor": "alice"}')
        assert reply.changed is True and hosts["deploy"].lifecycle.state == "running"


async def test_stop_waits_for_the_cycle_in_flight_not_the_whole_grace(settings, nc):
    """Stop latency: an engine mid-cycle stops as soon as that cycle ends, not after
    AOC_STOP_GRACE; an idle one stops at once."""
    patient = settings.model_copy(update={"stop_grace": 5.0})
    async with running_engines(patient, ["deploy"]) as hosts:
        host = hosts["deploy"]
        while host.loops.busy():  # first scheduled cycles
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        await ask(nc, "aoc.ctl.deploy.stop")
        assert time.perf_counter() - started < 1.0

        await ask(nc, "aoc.ctl.deploy.start")
        entered, finished = asyncio.Event(), asyncio.Event()

        async def slow(args):
            entered.set()
            await asyncio.sleep(0.6)
            finished.set()
            return CycleOutcome(detail="slow test cycle")

        host.engine.trigger = slow
        trigger = asyncio.create_task(ask(nc, "aoc.ctl.deploy.trigger"))
        # the triggered cycle itself, not the loop's own first cycle after the start
        await asyncio.wait_for(entered.wait(), 5)
        started = time.perf_counter()
        reply, _ = await ask(nc, "aoc.ctl.deploy.stop")
        elapsed = time.perf_counter() - started
        assert reply.state == "stopped" and finished.is_set()  # the cycle was let finish
        assert elapsed < 2.5, f"stop took {elapsed:.2f}s: it waited for the grace, not the cycle"
        await trigger


async def test_a_stop_is_recorded_after_the_cycle_in_flight_has_ended(settings, nc, tap):
    """The log tells it in order: a cycle that was running when the stop came is recorded
    before "stopped", and an engine the log says is stopped has stopped."""
    patient = settings.model_copy(update={"stop_grace": 5.0})
    async with running_engines(patient, ["deploy"]) as hosts:
        host = hosts["deploy"]
        entered = asyncio.Event()

        async def slow(args):
            entered.set()
            await asyncio.sleep(0.4)
            return CycleOutcome(detail="in flight when the stop came")

        host.engine.trigger = slow
        trigger = asyncio.create_task(ask(nc, "aoc.ctl.deploy.trigger"))
        await asyncio.wait_for(entered.wait(), 5)
        # no reply subject, like `nats pub`: the event is the only answer
        await nc.publish("aoc.ctl.deploy.stop", b'{"actor": "alice"}')
        stopped = await tap.wait_for(
            lambda e: e.system == "deploy" and command_of(e) is not None and e.actor == "alice"
        )
        assert host.lifecycle.state == "stopped"
        await trigger
        order = [
            e.payload().detail if e.type == "cycle_completed" else e.payload().state
            for e in tap.matching(
                lambda e: e.system == "deploy" and e.type in ("cycle_completed", "lifecycle_changed")
            )
        ]
        assert order.index("in flight when the stop came") < len(order) - 1 - order[::-1].index("stopped")
        assert stopped.payload().state == "stopped"


async def test_a_stop_abandons_an_idle_wait_at_once(settings, nc):
    """A cycle long-polling with nothing in hand (EngineHost.until_stopping) does not
    hold up a stop, however long its poll would have waited."""
    patient = settings.model_copy(update={"stop_grace": 5.0})
    async with running_engines(patient, ["deploy"]) as hosts:
        host = hosts["deploy"]
        abandoned = asyncio.Event()

        async def long_poll(args):
            try:
                await host.until_stopping(asyncio.sleep(30))
            except StopRequested:
                abandoned.set()
            return CycleOutcome(detail="idle poll ended")

        host.engine.trigger = long_poll
        trigger = asyncio.create_task(ask(nc, "aoc.ctl.deploy.trigger"))
        while not host.loops.busy(host.engine.primary_loop().name):
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        reply, _ = await ask(nc, "aoc.ctl.deploy.stop")
        assert reply.state == "stopped" and abandoned.is_set()
        assert time.perf_counter() - started < 1.0
        await trigger
        with pytest.raises(StopRequested):  # stopped: an idle wait gives up before it starts
            await host.until_stopping(asyncio.sleep(30))


async def test_a_loop_that_swallows_its_cancel_does_not_hang_the_stop(settings, nc):
    """nats-py's fetch can turn a cancel into a TimeoutError; the loop around such a cycle
    must still end, or the stop (and every later command) waits forever."""

    class Stubborn(engine_class("deploy")):
        def loops(self) -> list[Loop]:
            return [Loop("stubborn", 0.01, self.stubborn, primary=True)]

        async def stubborn(self) -> CycleOutcome:
            with contextlib.suppress(asyncio.CancelledError):  # what a swallowing fetch does
                await asyncio.sleep(30)
            return CycleOutcome(quiet=True)

    host = EngineHost(Stubborn(settings), settings)
    await host.open()
    try:
        started = time.perf_counter()
        reply, _ = await ask(nc, "aoc.ctl.deploy.stop")
        assert reply.state == "stopped" and time.perf_counter() - started < 2.5
        reply, _ = await ask(nc, "aoc.ctl.deploy.start")  # the engine still takes commands
        assert reply.state == "running" and host.loops.active("stubborn")
    finally:
        await host.close()
