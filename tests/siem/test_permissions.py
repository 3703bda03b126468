"""The SIEM service's NATS user on the secure embedded server (what `aoc up` runs): it can
do its whole job — follow the streams, keep its durable consumers, publish its alerts,
write its status — and nothing else. Every refusal is the server's."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from contracts.siem import SIEM_STATUS_BUCKET, STATUS_KEY, durable_name
from contracts.streams import ensure_all
from services.launcher.natsserver import NatsServer
from services.runtime.bus import EventPublisher, connect
from services.runtime.testing import EventTap
from tests.security.test_nats_permissions import connected
from tests.siem.conftest import Hec, read_status, siem_settings, until
from tests.siem.test_alerts import event
from tests.siem.test_sinks import HEC_TOKEN, publish, running_siem

ROOT = Path(__file__).resolve().parents[2]


async def test_the_siem_user_does_its_job(secure_nats: NatsServer, secure_settings, http_receivers):
    hec = Hec(HEC_TOKEN)
    receiver = await http_receivers(hec)
    sink = {"name": "splunk", "kind": "hec", "url": receiver.url, "allow_http": True, "token": HEC_TOKEN}
    settings = siem_settings(secure_settings, [sink])
    async with connected(secure_nats, "admin") as admin:
        await ensure_all(admin.nc.jetstream(), settings)
        tap = await EventTap(admin.nc).start()
        gateway = await connect(settings, "aoc-gateway")  # publishes as the gateway would
        engine = await connect(settings, "aoc-soc-cycle")  # and as an engine
        try:
            async with running_siem(settings) as service:  # connects as user "siem"
                assert service.nc.options["user"] == "siem"
                await until(lambda: service.follower.ready.is_set(), what="rules ready")
                await until(lambda: service.runners[0].status.state == "idle", what="the sink bound")
                await publish(engine, 4)
                await until(lambda: len(hec.events) >= 4, what="delivery as user siem")
                await EventPublisher(gateway.jetstream()).publish(
                    event(
                        "kill_switch_engaged", "gateway", {"succeeded": 7, "failed": 0}, at=datetime.now(UTC)
                    )
                )
                fired = await tap.wait_for(lambda e: e.type == "alert_fired", timeout=10)
                assert fired.source == "siem"
                await service.write_status()
                status = await read_status(admin.nc)
                # the four, and maybe already the kill switch event and its alert behind them
                assert status is not None and status.sinks[0].delivered >= 4
            assert not [
                line for line in _violations(secure_nats) if '"siem"' in line.lower() or "siem" in line
            ]
        finally:
            await gateway.close()
            await engine.close()
            await tap.stop()


def _violations(server: NatsServer) -> list[str]:
    assert server.log_file is not None
    return [line for line in server.log_file.read_text().splitlines() if "Violation" in line]


async def test_the_siem_user_can_do_nothing_else(secure_nats: NatsServer, secure_settings):
    async with connected(secure_nats, "admin") as admin:
        await ensure_all(admin.nc.jetstream(), secure_settings)
        await admin.nc.jetstream().create_key_value(bucket=SIEM_STATUS_BUCKET)
    async with connected(secure_nats, "siem") as siem:
        nc = siem.nc
        forbidden = [
            "aoc.evt.soc-cycle.alerts_triaged",  # another service's events
            "aoc.evt.gateway.kill_switch_engaged",
            "aoc.hb.deploy",  # heartbeats
            "aoc.ctl.deploy.stop",  # control commands
            "aoc.ctl.all.stop",
            "aoc.in.soc.alerts",  # inputs
            "$KV.aoc_desired_state.deploy",  # others' buckets
            "$JS.API.STREAM.DELETE.AOC_EVENTS",
            "$JS.API.STREAM.PURGE.AOC_EVENTS",
            "$JS.API.STREAM.UPDATE.AOC_EVENTS",
            f"$JS.API.CONSUMER.DELETE.AOC_EVENTS.{durable_name('x')}",
            "$JS.API.STREAM.MSG.DELETE.AOC_EVENTS",
        ]
        for subject in forbidden:
            await nc.publish(subject, b"{}")
            assert await siem.refused(subject), subject
        # it may write its own status
        kv = await nc.jetstream().key_value(SIEM_STATUS_BUCKET)
        await kv.put(STATUS_KEY, msgspec.json.encode({"probe": True}))
        # and it cannot listen to control subjects or inputs
        await nc.subscribe("aoc.ctl.>")
        assert await siem.refused("aoc.ctl.>")


async def test_the_health_probe_runs_as_the_siem_user(secure_nats: NatsServer, secure_settings, settings_env):
    import asyncio

    env = {
        **settings_env,
        "NATS_URL": secure_nats.url,
        "AOC_NATS_CREDENTIALS_DIR": str(secure_nats.credentials_dir),
    }

    async def probe() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.siem",
            "--health",
            env=env,
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode or 0, err.decode()

    code, err = await probe()
    assert code == 1 and err.count("\n") == 1 and "unhealthy: siem" in err  # never ran
    async with running_siem(siem_settings(secure_settings, [])):
        assert await probe() == (0, "")
