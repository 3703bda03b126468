"""Two real processes of every engine (`python -m services.<engine>` with their own
AOC_INSTANCE_ID): kill -9 the active instance of each engine in turn; a standby takes
over, later commands work, the desired state is kept, counters do not go backwards, and
the takeover is on record with both instance ids (issue 13 §7b)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from contracts.commands import reply_decoder
from contracts.events import command_of
from contracts.streams import leases_bucket
from contracts.systems import SYSTEMS
from services.runtime.lease import Holder

LEASE_TTL = "3"
pytestmark = pytest.mark.timeout(240)


def spawn(module: str, env: dict[str, str], instance: str) -> subprocess.Popen:
    log = open(Path(env["AOC_DATA_DIR"]).parent / f"{instance}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{module}"],
        env={**env, "AOC_INSTANCE_ID": instance, "AOC_LEASE_TTL": LEASE_TTL},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


async def ask(nc, subject: str, body: bytes = b"", timeout: float = 3.0):
    return reply_decoder.decode((await nc.request(subject, body, timeout=timeout)).data)


async def eventually(probe, timeout: float = 30.0, step: float = 0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            value = await probe()
            if value:
                return value
        except Exception:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("not in time")
        await asyncio.sleep(step)


async def holder(nc, settings, slug: str) -> Holder | None:
    kv = await nc.jetstream().key_value(leases_bucket(settings).bucket)
    try:
        entry = await kv.get(slug)
    except Exception:
        return None
    return msgspec.json.decode(entry.value, type=Holder) if entry.value else None


async def test_kill_9_of_each_active_instance_hands_over_to_its_standby(settings_env, settings, nc, tap):
    processes: dict[str, subprocess.Popen] = {}
    try:
        for slug, info in SYSTEMS.items():
            processes[f"{slug}-1"] = spawn(info.module, settings_env, f"{slug}-1")
        for slug in SYSTEMS:  # the first instance of each is active before the second starts
            await eventually(lambda slug=slug: ask(nc, f"aoc.ctl.{slug}.status"), timeout=60)
        for slug, info in SYSTEMS.items():
            processes[f"{slug}-2"] = spawn(info.module, settings_env, f"{slug}-2")
        # an operator's stop before the failover must hold after it
        assert (await ask(nc, "aoc.ctl.deploy.stop", b'{"reason":"freeze"}')).state == "stopped"

        for slug in SYSTEMS:
            await eventually(lambda slug=slug: ask(nc, f"aoc.ctl.{slug}.status"), timeout=60)
            before = await ask(nc, f"aoc.ctl.{slug}.status")
            active = await holder(nc, settings, slug)
            assert active is not None and active.instance == f"{slug}-1"
            victim = processes[active.instance]
            victim.send_signal(signal.SIGKILL)
            victim.wait(5)

            took = await tap.wait_for(
                lambda e, slug=slug: e.type == "instance_took_over" and e.system == slug, timeout=30
            )
            assert (took.payload().previous_instance, took.payload().instance) == (f"{slug}-1", f"{slug}-2")

            async def settled(slug=slug):
                reply = await ask(nc, f"aoc.ctl.{slug}.status")
                return reply if reply.result["role"] == "active" else None

            after = await eventually(settled, timeout=30)
            assert after.result["instance"] == f"{slug}-2"
            assert after.result["total_runs"] >= before.result["total_runs"], slug  # never backwards
            expected = "stopped" if slug == "deploy" else "running"
            assert (after.state, after.desired) == (expected, expected)

        # commands reach the new active instances
        reply = await ask(nc, "aoc.ctl.deploy.start", b'{"reason":"thaw"}')
        assert reply.ok and reply.changed and reply.state == "running"
        started = await tap.wait_for(
            lambda e: command_of(e) is not None and command_of(e).verb == "start" and e.system == "deploy"
        )
        assert started.instance == "deploy-2" and started.epoch > 0
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)
