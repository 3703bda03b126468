"""Two instances of one engine on a real nats-server: exactly one is active (the lease
holder), the standby forwards commands to it, takes over when the lease runs out, and
obeys the durable desired state; a command sent while no instance is active is
recorded, and the next active instance comes up that way."""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
import pytest

from contracts.commands import reply_decoder
from contracts.events import ActivityRecorded, Summary, command_of
from contracts.settings import Settings
from contracts.streams import leases_bucket
from services.runtime import EngineHost
from services.runtime.context import Fenced
from services.runtime.testing import engine_class

TTL = 2.0


def instance_settings(settings: Settings, instance: str) -> Settings:
    return settings.model_copy(update={"instance_id": instance, "lease_ttl": TTL})


@contextlib.asynccontextmanager
async def two_instances(settings: Settings, slug: str = "deploy"):
    hosts = [
        EngineHost(engine_class(slug)(instance_settings(settings, name)), instance_settings(settings, name))
        for name in (f"{slug}-1", f"{slug}-2")
    ]
    for host in hosts:  # in order: the first one takes the free lease
        await host.open()
    try:
        yield hosts
    finally:
        await asyncio.gather(*(host.close() for host in hosts), return_exceptions=True)


async def until(condition, timeout: float = 10.0, step: float = 0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)


async def ask(nc, subject: str, body: bytes = b"", timeout: float = 3):
    return reply_decoder.decode((await nc.request(subject, body, timeout=timeout)).data)


@contextlib.asynccontextmanager
async def one_instance(settings: Settings, slug: str = "deploy"):
    own = instance_settings(settings, f"{slug}-1")
    host = EngineHost(engine_class(slug)(own), own)
    await host.open()
    try:
        yield host
    finally:
        await host.close()


def crash(host: EngineHost) -> asyncio.Future:
    """What kill -9 does to an in-process instance: it stops answering, renewing and
    beating at once, and releases nothing."""

    async def go() -> None:
        await host.keeper.stop()
        await host.control.stop()
        await host._forwarded.unsubscribe()
        await host.stop_heartbeats()
        await host.loops.stop()
        await host.engine.on_stop()
        if host.tenure.follower is not None:
            await host.tenure.follower.stop()
        host.role = "crashed"

    return asyncio.ensure_future(go())


async def test_one_active_one_standby_and_commands_reach_the_active(settings, nc, tap):
    async with two_instances(settings) as (first, second):
        assert (first.role, second.role) == ("active", "standby")
        assert first.lifecycle.state == "running" and second.lifecycle.state == "stopped"
        assert second.snapshot().role == "standby" and second.loops.describe()[0]["active"] is False
        # whichever instance the queue group picks, the active one acts, once per command
        for n in range(6):
            verb = "stop" if n % 2 == 0 else "start"
            reply = await ask(nc, f"aoc.ctl.deploy.{verb}", msgspec.json.encode({"reason": f"r{n}"}))
            assert reply.ok and reply.changed, reply
        assert first.lifecycle.state == "running" and second.lifecycle.state == "stopped"
        audits = tap.matching(lambda e: e.system == "deploy" and command_of(e) is not None)
        assert len(audits) == 6 and {e.instance for e in audits} == {"deploy-1"}
        assert {e.epoch for e in audits} == {first.lease.epoch} and first.lease.epoch > 0
        status = await ask(nc, "aoc.ctl.deploy.status")
        assert status.result["role"] == "active" and status.result["instance"] == "deploy-1"


async def test_a_clean_shutdown_hands_over_at_once_and_the_desired_state_holds(settings, nc, tap):
    async with two_instances(settings) as (first, second):
        assert (await ask(nc, "aoc.ctl.deploy.stop")).ok
        await first.close()
        await until(lambda: second.role == "active", timeout=TTL)  # released: no wait for expiry
        assert second.lifecycle.state == "stopped" and second.desired == "stopped"
        took = await tap.wait_for(lambda e: e.type == "instance_took_over")
        payload = took.payload()
        assert (payload.instance, payload.previous_instance) == ("deploy-2", "deploy-1")
        assert payload.epoch > payload.previous_epoch and took.epoch == payload.epoch
        reply = await ask(nc, "aoc.ctl.deploy.start")
        assert reply.ok and reply.changed and second.lifecycle.state == "running"


async def test_a_crashed_active_is_replaced_after_the_lease_time(settings, nc, tap):
    async with two_instances(settings) as (first, second):
        await crash(first)
        await until(lambda: second.role == "active", timeout=TTL * 3)
        assert second.lifecycle.state == "running"
        took = await tap.wait_for(lambda e: e.type == "instance_took_over")
        assert took.payload().previous_instance == "deploy-1"
        assert (await ask(nc, "aoc.ctl.deploy.stop")).changed


async def test_a_stop_during_failover_is_recorded_and_the_new_active_comes_up_stopped(settings, nc, tap):
    async with two_instances(settings) as (first, second):
        await crash(first)
        # the lease still names the crashed instance: the standby cannot forward, so it records
        reply = await ask(nc, "aoc.ctl.deploy.stop", b'{"reason":"incident 7"}')
        assert reply.ok and reply.status == "recorded" and reply.desired == "stopped", reply
        recorded = await tap.wait_for(lambda e: command_of(e) is not None and e.instance == "deploy-2")
        assert command_of(recorded).reason == "incident 7"
        await until(lambda: second.role == "active", timeout=TTL * 3)
        assert second.lifecycle.state == "stopped" and second.desired == "stopped"
        assert second.loops.describe()[0]["active"] is False


async def test_an_active_that_loses_its_lease_stops_its_loops_first(settings, nc):
    async with two_instances(settings) as (first, _second):
        assert first.lifecycle.state == "running"
        kv = await nc.jetstream().key_value(leases_bucket(settings).bucket)
        await kv.put("deploy", b'{"instance":"usurper","boot_id":"x","pid":1,"host":"h","since":""}')
        await asyncio.wait_for(first.deposed.wait(), TTL * 2)  # set once fenced
        assert first.role == "standby" and first.lifecycle.state == "stopped"
        assert not any(loop["active"] for loop in first.loops.describe())


@pytest.mark.parametrize("verb", ["trigger"])
async def test_a_trigger_with_no_active_instance_is_refused_and_audited(settings, nc, tap, verb):
    async with two_instances(settings) as (first, _second):
        await crash(first)
        reply = await ask(nc, f"aoc.ctl.deploy.{verb}")
        assert not reply.ok and reply.error == "no_active_instance"
        await tap.wait_for(
            lambda e: (
                command_of(e) is not None and command_of(e).outcome == "failed" and e.instance == "deploy-2"
            )
        )


async def test_an_instance_cut_off_from_the_bus_fences_then_resumes(settings, nats_server, nc):
    async with one_instance(settings) as host:
        assert host.role == "active" and host.lifecycle.state == "running"
        nats_server.stop()
        await until(lambda: host.role == "suspended" and host.lifecycle.state == "stopped", timeout=TTL * 3)
        assert not any(loop["active"] for loop in host.loops.describe())
        await asyncio.sleep(TTL)  # past the lease time: the lease expired with the server down
        nats_server.start()
        await until(lambda: host.role == "active", timeout=TTL * 10)
        assert host.lifecycle.state == "running" and not host.deposed.is_set()
        for _ in range(100):  # the test's own connection reconnects too
            try:
                reply = await ask(nc, "aoc.ctl.deploy.stop")
                break
            except Exception:
                await asyncio.sleep(0.1)
        assert reply.ok and reply.changed


async def test_everywhere_loops_run_on_standbys_by_the_desired_state(settings, nc):
    """A loop marked ``everywhere`` (shared work, like triage from one work queue) runs on
    every instance while the engine should run; a stop stops it on all of them."""
    from services.runtime import CycleOutcome, Loop

    ran: dict[str, int] = {}

    class Shared(engine_class("deploy")):
        def loops(self) -> list[Loop]:
            return [*super().loops(), Loop("shared", 0.05, self.shared, everywhere=True)]

        async def shared(self) -> CycleOutcome:
            ran[self.ctx.instance] = ran.get(self.ctx.instance, 0) + 1
            return CycleOutcome(quiet=True)

    hosts = [
        EngineHost(Shared(instance_settings(settings, name)), instance_settings(settings, name))
        for name in ("deploy-1", "deploy-2")
    ]
    for host in hosts:
        await host.open()
    try:
        first, second = hosts
        assert (first.role, second.role) == ("active", "standby")
        await until(lambda: ran.get("deploy-1", 0) > 2 and ran.get("deploy-2", 0) > 2)
        assert not second.loops.active("watch")  # the active-only loop stays with the active one
        assert (await ask(nc, "aoc.ctl.deploy.stop")).changed
        await until(lambda: not first.loops.active("shared") and not second.loops.active("shared"))
        counted = dict(ran)
        await asyncio.sleep(0.3)
        assert ran == counted  # nobody runs it while stopped
        assert (await ask(nc, "aoc.ctl.deploy.start")).changed
        await until(lambda: second.loops.active("shared") and ran["deploy-2"] > counted["deploy-2"])
    finally:
        await asyncio.gather(*(host.close() for host in hosts), return_exceptions=True)


async def test_a_change_sent_while_fenced_waits_for_the_lease_and_is_applied(settings, nc):
    """A stop that reaches an instance fenced by a failed renewal (a leader election, a
    lost server) is applied once the instance holds the lease again: answered, not
    refused as "suspended" while the cluster heals."""
    async with one_instance(settings) as host:
        await host.tenure.suspend("test: the renewal failed")
        assert host.role == "suspended" and host.lifecycle.state == "stopped"
        pending = asyncio.ensure_future(ask(nc, "aoc.ctl.deploy.stop"))
        await asyncio.sleep(0.5)
        assert not pending.done(), "answered while fenced"
        await host.tenure.resume()  # what the lease keeper does once it renews again
        reply = await pending
        assert reply.ok and reply.changed, reply
        assert host.role == "active" and host.lifecycle.state == "stopped" and host.desired == "stopped"


async def test_a_change_refused_by_a_fenced_instance_is_in_the_audit_trail(settings, nc, tap):
    """A fenced instance that never gets its lease back refuses the change after waiting
    for it; the refusal is recorded (a background write, bounded), not only answered."""
    async with one_instance(settings) as host:
        await host.tenure.suspend("test: the renewal failed")
        body = msgspec.json.encode({"actor": "ops-7", "reason": "incident 9"})
        reply = await ask(nc, "aoc.ctl.deploy.stop", body, timeout=TTL * 4)
        assert not reply.ok and reply.error == "suspended", reply

        def refused_stop(event) -> bool:
            found = command_of(event)
            return found is not None and (found.outcome, found.verb) == ("rejected", "stop")

        recorded = await tap.wait_for(refused_stop)
        audit = command_of(recorded)
        assert recorded.actor == "ops-7" and audit.reason == "incident 9"
        assert "fenced" in audit.message and recorded.instance == "deploy-1"


async def test_a_start_under_way_when_the_instance_is_fenced_leaves_no_loop_running(settings, nc):
    """Fencing does not wait for the transition lock (it must act at once). A start whose
    engine set-up was still running when the instance was fenced must not go on to start
    the loops afterwards: the instance stays stopped and the start is not answered ok."""
    async with one_instance(settings) as host:
        assert (await ask(nc, "aoc.ctl.deploy.stop")).ok
        entered, gate = asyncio.Event(), asyncio.Event()
        on_start = host.engine.on_start

        async def slow_on_start() -> None:
            entered.set()
            await gate.wait()
            await on_start()

        host.engine.on_start = slow_on_start
        pending = asyncio.ensure_future(ask(nc, "aoc.ctl.deploy.start"))
        await asyncio.wait_for(entered.wait(), 3)
        await host.tenure.suspend("test: the renewal failed during a start")
        gate.set()
        reply = await pending
        assert not reply.ok and reply.error == "suspended", reply
        assert host.lifecycle.state == "stopped"
        assert not any(host.loops.active(loop.name) for loop in host.engine.loops()), (
            "a fenced instance runs loops"
        )


def activity(action: str) -> Summary:
    return Summary(action=action, detail="", result="success")


async def test_a_holder_frozen_past_its_lease_window_writes_nothing_until_it_renews(settings, nc, tap):
    # a frozen process (SIGSTOP, a VM pause) is a loop that runs nothing: here, one blocked
    async with one_instance(settings) as host:
        assert host.role == "active" and host.keeper.fresh()
        time.sleep(TTL * 0.75)  # past 2/3 TTL: another instance may hold the lease by now
        # what woke first on the loop: still "active" as far as it knows, the keeper not yet run
        assert host.role == "active"
        with pytest.raises(Fenced, match="has not renewed its lease"):
            await host.ctx.publish(ActivityRecorded(), activity("stale_write"))
        # the keeper then renews (the lease was still its own) or fences; never both stale and active
        await until(lambda: host.keeper.fresh() or host.role != "active", timeout=TTL * 2)
        if host.keeper.fresh() and host.role == "active":
            await host.ctx.publish(ActivityRecorded(), activity("fresh_write"))
            await tap.wait_for(lambda e: e.summary.action == "fresh_write")
        assert not tap.matching(lambda e: e.summary.action == "stale_write")


async def test_a_long_rebuild_renews_the_lease_before_the_instance_writes_as_active(settings, nc, tap):
    # the keeper does not renew while an activation runs: a rebuild past 2/3 TTL renews at
    # its end, so the first writes of the active instance are not refused as stale
    ttl = 4.0  # room between 2/3 of it (the rebuild outlasts that) and all of it (the lease holds)
    own = settings.model_copy(update={"instance_id": "deploy-1", "lease_ttl": ttl})
    engine = engine_class("deploy")(own)
    setup = engine.setup

    async def slow_setup() -> None:
        await asyncio.sleep(ttl * 0.72)
        await setup()

    engine.setup = slow_setup  # type: ignore[method-assign]
    host = EngineHost(engine, own)
    await host.open()
    try:
        assert host.role == "active" and host.keeper.fresh()
        await host.ctx.publish(ActivityRecorded(), activity("first_write"))
        await tap.wait_for(lambda e: e.summary.action == "first_write")
    finally:
        await host.close()
