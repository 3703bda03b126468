"""The embedded nats-server of `aoc up`: users, subject permissions, generated
credentials. Every refusal here is the server's, seen as the permissions violation it
reports to the client, and the thing it protects is checked to be untouched."""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from structlog.testing import capture_logs

from contracts import subjects
from contracts.events import command_of
from contracts.settings import Settings
from contracts.streams import ensure_all, events_stream
from services.launcher.natsserver import NatsServer
from services.runtime.bus import barrier, connect, connect_options
from services.runtime.testing import EventTap, running_engines
from tests.conftest import api_client, serve_gateway
from tests.security.conftest import violations


class Connection:
    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    async def refused(self, subject: str, timeout: float = 5.0) -> bool:
        """True once the server reported a permissions violation on ``subject``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if any("permissions violation" in e and f'"{subject.lower()}"' in e for e in self.errors):
                return True
            await asyncio.sleep(0.02)
        return False


@contextlib.asynccontextmanager
async def connected(server: NatsServer, user: str, *, cli_inbox: bool = False) -> AsyncIterator[Connection]:
    """As ``user`` with its generated password; ``cli_inbox`` = the stock `nats` CLI's _INBOX."""
    errors: list[str] = []

    async def keep(exc: Exception) -> None:
        errors.append(str(exc).lower())

    credentials = server.credentials(user)
    options = {} if cli_inbox else {"inbox_prefix": credentials["inbox_prefix"]}
    nc = await nats.connect(
        server.url,
        user=user,
        password=credentials["password"],
        error_cb=keep,
        allow_reconnect=False,
        **options,
    )
    await barrier(nc)
    try:
        yield Connection(nc, errors)
    finally:
        await nc.close()


async def test_nobody_connects_without_credentials(secure_nats: NatsServer):
    with pytest.raises(nats.errors.Error):  # authorization violation
        await nats.connect(secure_nats.url, allow_reconnect=False, max_reconnect_attempts=0, error_cb=_quiet)
    with pytest.raises(nats.errors.Error):  # authorization violation
        await nats.connect(
            secure_nats.url,
            user="soc-cycle",
            password="guess",
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=_quiet,
        )


async def _quiet(_: Exception) -> None:
    pass


async def until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)


async def collect_subjects(nc: Client, subject: str) -> list[str]:
    seen: list[str] = []

    async def keep(msg) -> None:
        seen.append(msg.subject)

    await nc.subscribe(subject, cb=keep)
    await barrier(nc)  # the SUB is in before anyone publishes
    return seen


async def test_an_engine_cannot_send_control_commands(secure_nats: NatsServer, secure_settings: Settings):
    async with (
        running_engines(secure_settings, ["deploy"]) as hosts,
        connected(secure_nats, "admin") as admin,
    ):
        tap = await EventTap(admin.nc).start()
        async with connected(secure_nats, "soc-cycle") as engine:
            for subject in ("aoc.ctl.deploy.stop", "aoc.ctl.all.stop", "aoc.ctl.deploy.stop.operator"):
                await engine.nc.publish(subject, b'{"actor": "alice"}')
                assert await engine.refused(subject), subject
        await asyncio.sleep(0.3)
        assert hosts["deploy"].lifecycle.state == "running"
        assert not tap.matching(lambda e: command_of(e) is not None)
        await tap.stop()


async def test_an_engine_cannot_delete_purge_or_reconfigure_the_stream(
    secure_nats: NatsServer, secure_settings: Settings
):
    async with connected(secure_nats, "gateway") as gateway:
        await ensure_all(gateway.nc.jetstream(), secure_settings)  # the stream exists, as in production
        await gateway.nc.jetstream().publish(subjects.evt("gateway", "probe"), b"{}")
    async with connected(secure_nats, "soc-cycle") as engine:
        js = engine.nc.jetstream(timeout=0.5)
        short_retention = events_stream(secure_settings)
        short_retention.max_age = 1.0
        attempts = [
            (f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}", js.delete_stream(subjects.EVENTS_STREAM)),
            (f"$JS.API.STREAM.PURGE.{subjects.EVENTS_STREAM}", js.purge_stream(subjects.EVENTS_STREAM)),
            (f"$JS.API.STREAM.UPDATE.{subjects.EVENTS_STREAM}", js.update_stream(short_retention)),
            (f"$JS.API.STREAM.MSG.DELETE.{subjects.EVENTS_STREAM}", js.delete_msg(subjects.EVENTS_STREAM, 1)),
        ]
        for subject, attempt in attempts:
            with pytest.raises(TimeoutError):  # the request never reaches JetStream: no answer
                await asyncio.wait_for(attempt, 0.5)
            assert await engine.refused(subject), subject
        # what an engine needs still works: create (a no-op on an existing stream) and read
        await ensure_all(js, secure_settings)
        info = await js.stream_info(subjects.EVENTS_STREAM)
    assert info.state.messages == 1 and info.config.max_age == events_stream(secure_settings).max_age


async def test_an_engine_publishes_only_its_own_events_and_heartbeat(secure_nats: NatsServer):
    async with connected(secure_nats, "soc-cycle") as engine:
        for subject in (
            "aoc.evt.deploy.lifecycle_changed",
            "aoc.evt.gateway.command_handled",
            "aoc.hb.deploy",
        ):
            await engine.nc.publish(subject, b"{}")
            assert await engine.refused(subject), subject
        await engine.nc.publish("aoc.evt.soc-cycle.cycle_completed", b"{}")
        await engine.nc.publish("aoc.hb.soc-cycle", b"{}")
        await barrier(engine.nc)
        await asyncio.sleep(0.2)
        assert not any("soc-cycle" in error for error in engine.errors), engine.errors


async def test_heal_check_restarts_one_engine_but_stops_nothing(secure_nats: NatsServer):
    async with connected(secure_nats, "admin") as admin, connected(secure_nats, "heal-check") as healer:
        seen = await collect_subjects(admin.nc, "aoc.ctl.>")
        await healer.nc.publish("aoc.ctl.deploy.restart", b"")
        for refused in ("aoc.ctl.deploy.stop", "aoc.ctl.all.restart", "aoc.ctl.deploy.trigger"):
            await healer.nc.publish(refused, b"")
            assert await healer.refused(refused), refused
        await until(lambda: seen)
        await asyncio.sleep(0.1)
    assert seen == ["aoc.ctl.deploy.restart"]


async def test_operators_send_commands_under_their_own_name_only(secure_nats: NatsServer):
    """aoc.ctl.<system>.<verb>.<user>: the server checks the last token is the sender."""
    async with (
        connected(secure_nats, "admin") as admin,
        connected(secure_nats, "operator", cli_inbox=True) as operator,
        connected(secure_nats, "gateway") as gateway,
    ):
        seen = await collect_subjects(admin.nc, "aoc.ctl.>")
        await operator.nc.publish("aoc.ctl.deploy.stop.operator", b"")
        for refused in ("aoc.ctl.deploy.stop", "aoc.ctl.deploy.stop.alice"):
            await operator.nc.publish(refused, b"")
            assert await operator.refused(refused), refused
        # the gateway relays people it authenticated, with 4 tokens; it cannot pose as a NATS user
        await gateway.nc.publish("aoc.ctl.deploy.stop.operator", b"")
        assert await gateway.refused("aoc.ctl.deploy.stop.operator")
        # admin maintains JetStream; commands and events are not its business
        for refused in ("aoc.ctl.deploy.stop.admin", "aoc.evt.deploy.forged"):
            await admin.nc.publish(refused, b"")
            assert await admin.refused(refused), refused
        await until(lambda: seen)
        await asyncio.sleep(0.1)  # anything refused would have arrived by now too
    assert seen == ["aoc.ctl.deploy.stop.operator"]


async def test_the_whole_stack_runs_on_the_secure_server_without_a_violation(
    secure_nats: NatsServer, secure_settings: Settings, api_headers
):
    slugs = ["deploy", "soc-cycle", "heal-check"]
    async with (
        serve_gateway(secure_settings) as url,
        api_client(url, api_headers) as http,
        running_engines(secure_settings, slugs),
    ):
        for verb in ("emergency-stop", "start", "restart", "trigger"):
            path = f"/api/v1/admin/{verb}/{'soc-cycle' if verb == 'trigger' else 'deploy'}"
            response = await http.post(path, json={"reason": "secure drill"})
            assert response.status_code == 200, response.text
        detail = await http.get("/health/details")
        assert detail.json()["nats"]["connected"] is True
    assert violations(secure_nats) == []


def test_credentials_and_config_are_private_and_stable(secure_nats: NatsServer):
    directory = secure_nats.credentials_dir
    files = sorted(path.name for path in directory.glob("*.json"))
    assert {"gateway.json", "soc-cycle.json", "operator.json", "admin.json"} <= set(files)
    for path in [*directory.glob("*.json"), secure_nats.data_dir / "nats-server.conf"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    before = secure_nats.credentials("gateway")["password"]
    secure_nats.stop()
    secure_nats.start()  # a restarted server keeps the passwords the services hold
    assert secure_nats.credentials("gateway")["password"] == before


def test_monitoring_binds_to_loopback_only(tmp_path):
    server = NatsServer(tmp_path / "n", secure=True, monitor_port=0)
    server.monitor_port = 18222
    server.start()
    try:
        config = (server.data_dir / "nats-server.conf").read_text()
    finally:
        server.stop()
    assert "http: 127.0.0.1:18222" in config and "host: 127.0.0.1" in config


def test_services_find_their_credentials_only_for_the_server_that_made_them(
    secure_nats: NatsServer, secure_settings: Settings
):
    options = connect_options(secure_settings, "soc-cycle")
    assert options["user"] == "soc-cycle" and options["inbox_prefix"] == "_INBOX_soc-cycle"
    elsewhere = secure_settings.model_copy(update={"nats_url": "nats://127.0.0.1:1"})
    assert "user" not in connect_options(elsewhere, "soc-cycle")  # leftovers of another server


async def test_a_service_says_which_subject_it_was_refused(
    secure_nats: NatsServer, secure_settings: Settings
):
    with capture_logs() as logs:
        nc = await connect(secure_settings, "aoc-soc-cycle")  # the engine's own generated user
        try:
            await nc.publish("aoc.ctl.deploy.stop", b"")
            await until(lambda: any(entry["event"] == "nats.permission_denied" for entry in logs))
        finally:
            await nc.close()
    denied = next(entry for entry in logs if entry["event"] == "nats.permission_denied")
    assert denied["user"] == "soc-cycle" and "aoc.ctl.deploy.stop" in denied["error"]
