"""The cluster fixtures themselves (the lease tests build on them): three members with
their own stores and names, routed into one JetStream cluster with a meta leader, R3
streams across all three; the secure one with `aoc up`'s users and permissions."""

from __future__ import annotations

import nats
from nats.aio.client import Client

from contracts import subjects
from contracts.settings import Settings
from contracts.streams import ensure_all
from services.launcher.natsserver import NatsCluster
from services.runtime.bus import barrier, connect_options
from tests.cluster.conftest import connect_to


async def peers_of(js, stream: str) -> set[str]:
    info = await js.stream_info(stream)
    return {info.cluster.leader, *(peer.name for peer in info.cluster.replicas or [])}


async def test_plain_cluster_places_every_stream_on_all_three(
    nats_cluster: NatsCluster, cluster_settings
) -> None:
    stores = {node.data_dir for node in nats_cluster.nodes}
    assert len(stores) == 3 and len({node.port for node in nats_cluster.nodes}) == 3
    nc = await connect_to(nats_cluster.servers)
    try:
        js = nc.jetstream()
        await ensure_all(js, cluster_settings)
        for stream in (
            subjects.EVENTS_STREAM,
            subjects.HEARTBEATS_STREAM,
            subjects.AUDIT_STREAM,
            f"KV_{subjects.LEASES_BUCKET}",
        ):
            assert await peers_of(js, stream) == {"aoc-n1", "aoc-n2", "aoc-n3"}, stream
        assert nc._server_info.get("cluster") == "aoc"
    finally:
        await nc.close()


async def test_secure_cluster_has_the_users_and_permissions_of_aoc_up(
    secure_cluster: NatsCluster, tmp_path
) -> None:
    settings = Settings(
        nats_url=secure_cluster.url, nats_credentials_dir=secure_cluster.credentials_dir, data_dir=tmp_path
    )
    assert settings.stream_replicas == 1  # the default follows AOC_NATS_CLUSTER, not the URL
    settings = settings.model_copy(update={"stream_replicas": 3})
    refused: list[str] = []

    async def keep(exc: Exception) -> None:
        refused.append(str(exc).lower())

    # services find their generated credentials for the whole server list
    gateway: Client = await nats.connect(**connect_options(settings, "gateway"), error_cb=keep)
    engine: Client = await nats.connect(**connect_options(settings, "soc-cycle"), error_cb=keep)
    try:
        await ensure_all(gateway.jetstream(), settings)
        assert await peers_of(gateway.jetstream(), subjects.EVENTS_STREAM) == {"aoc-n1", "aoc-n2", "aoc-n3"}
        await engine.jetstream().publish("aoc.evt.soc-cycle.probe", b"{}", timeout=5)
        await engine.publish("aoc.evt.deploy.forged", b"{}")
        await barrier(engine)
        assert any("aoc.evt.deploy.forged" in error for error in refused), refused
        anonymous_refused = False
        try:
            await nats.connect(servers=secure_cluster.servers, allow_reconnect=False, connect_timeout=2)
        except nats.errors.Error:
            anonymous_refused = True
        assert anonymous_refused, "nobody connects without a user"
    finally:
        await gateway.close()
        await engine.close()
