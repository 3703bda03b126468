"""heal-check and advisory-refresh under the NATS permissions `aoc up` runs with
(services/launcher/natsauth.py): the probes, the restart command and the advisory
buckets all work as their own NATS users."""

from __future__ import annotations

from contracts.healing import HEALTHY
from contracts.settings import Settings
from services.launcher.natsserver import NatsServer
from services.runtime.testing import running_engines
from tests.conftest import FAST
from tests.healing.conftest import healer, healing_config, stalling_deploy, until


async def test_probes_restart_and_advisory_buckets_work_as_their_own_nats_users(tmp_path):
    server = NatsServer(tmp_path / "secure-nats", secure=True).start()
    try:
        settings = Settings(
            nats_url=server.url,
            data_dir=tmp_path / "data",
            nats_credentials_dir=server.credentials_dir,
            **FAST,
        )
        async with (
            running_engines(settings, ["advisory-refresh"]) as engines,
            stalling_deploy(settings, hang_times=1),
            healer(settings, healing_config(watched=["deploy"])) as host,
        ):
            healing = host.engine
            await healing.check_subsystems()
            checks = healing.checks
            assert (checks["jetstream"].status, checks["kv_object_store"].status) == ("ok", "ok"), checks
            await until(
                lambda: engines["advisory-refresh"].engine.feed_states, what="a refresh as its own user"
            )
            assert engines["advisory-refresh"].snapshot().extras["total_advisories"] == 13

            await until(lambda: healing.engines["deploy"].health == "stalled", step=healing.watch_engines)
            await healing.remediate()  # heal-check may send restart commands; the engine obeys
            await until(lambda: healing.engines["deploy"].health == HEALTHY, step=healing.watch_engines)
            await healing.remediate()
            assert [e.event for e in healing.healing_log if e.target == "deploy"][-1] == "remediated"
    finally:
        server.stop()
