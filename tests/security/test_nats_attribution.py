"""Raw NATS commands carry the NATS user they came from, a stored message can never be
replayed as a command, and one command can be followed end to end by its correlation
id (HTTP request -> NATS headers -> the engine's log lines and audit event).

These need the engine side of issue #7 in services/runtime/host.py: the
``aoc.ctl.<system>.<verb>.<user>`` endpoints, and refusing JetStream deliveries."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from contracts.commands import reply_decoder
from contracts.events import command_of
from contracts.settings import Settings
from services.launcher.natsserver import NatsServer
from services.runtime.testing import EventTap, running_engines
from tests.conftest import api_client, serve_gateway
from tests.security.test_nats_permissions import connected

API = "/api/v1/admin"


async def test_a_raw_nats_command_is_recorded_as_the_nats_user_that_sent_it(
    secure_nats: NatsServer, secure_settings: Settings
):
    async with (
        running_engines(secure_settings, ["deploy"]) as hosts,
        connected(secure_nats, "admin") as admin,
        connected(secure_nats, "operator", cli_inbox=True) as operator,  # as `nats req` sends it
    ):
        tap = await EventTap(admin.nc).start()
        # the body's claim is not what gets recorded: the server vouched for the subject
        body = b'{"actor": "alice", "reason": "patch window"}'
        answer = await operator.nc.request("aoc.ctl.deploy.stop.operator", body, timeout=2)
        reply = reply_decoder.decode(answer.data)
        assert reply.ok and reply.state == "stopped"
        audit = await tap.wait_for(lambda e: command_of(e) is not None and e.system == "deploy")
        assert audit.actor == "nats:operator" and command_of(audit).reason == "patch window"
        assert hosts["deploy"].lifecycle.state == "stopped"
        status = await operator.nc.request("aoc.ctl.all.status.operator", b"", timeout=2)
        assert reply_decoder.decode(status.data).system == "deploy"
        await tap.stop()


async def test_a_stored_message_delivered_to_a_control_subject_is_not_a_command(settings: Settings, tap):
    """nats-server does not check a push consumer's deliver subject against its
    creator's permissions (nats-server#8274), so an engine could try to have JetStream
    deliver a message it stored (say its own event, body {"actor": "alice"}) to
    aoc.ctl.*. Such a delivery keeps the stored subject and has a $JS.ACK reply
    subject; the engine refuses it and records the refusal."""
    async with running_engines(settings, ["deploy"]) as hosts:
        host = hosts["deploy"]
        deliveries = [
            ("aoc.evt.soc-cycle.stop", "$JS.ACK.AOC_EVENTS.c1.1.7.1.1795322755455343965.0"),
            ("aoc.ctl.deploy.stop", "$JS.ACK.AOC_ALERTS.c2.1.3.1.1795322755455343965.0"),
        ]
        for subject, reply_to in deliveries:
            reply = await host.handle(
                subject, b'{"actor": "alice", "reason": "forged"}', {}, reply_to=reply_to
            )
            assert not reply.ok and reply.error == "not_a_command"
        assert host.lifecycle.state == "running"
        await tap.wait_for(lambda e: len(tap.matching(lambda e: command_of(e) is not None)) >= 2)
        refusals = tap.matching(lambda e: command_of(e) is not None and e.system == "deploy")
        assert [e.summary.result for e in refusals] == ["rejected", "rejected"]
        assert all(e.actor == "nats:anonymous" for e in refusals)  # never the claimed "alice"


def spawn_engine(module: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{module}"], env=env, stdout=subprocess.DEVNULL, stderr=out
        )


async def test_one_command_followed_end_to_end_by_its_correlation_id(
    settings: Settings, settings_env: dict[str, str], tap, nc, api_headers, tmp_path: Path
):
    log = tmp_path / "deploy.log"
    engine = spawn_engine("deploy", settings_env, log)
    try:
        for _ in range(150):  # the process needs a moment to answer
            try:
                await nc.request("aoc.ctl.deploy.status", b"", timeout=0.5)
                break
            except Exception:
                await asyncio.sleep(0.1)
        async with serve_gateway(settings) as url, api_client(url, api_headers) as http:
            stop = await http.post(f"{API}/emergency-stop/deploy", headers={"X-Request-ID": "trace-me-42"})
            assert stop.status_code == 200 and stop.headers["x-request-id"] == "trace-me-42"
        audit = await tap.wait_for(lambda e: command_of(e) is not None and e.correlation_id == "trace-me-42")
        assert audit.actor == "admin" and audit.system == "deploy"
    finally:
        engine.terminate()
        engine.wait(10)
    # every line the engine wrote after its launcher banner is one JSON object
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    traced = [line for line in lines if line.get("correlation_id") == "trace-me-42"]
    assert traced, lines[-5:]
    assert all(line["service"] == "deploy" for line in traced)
    assert any(line["event"] == "command.received" and line["actor"] == "admin" for line in traced)
