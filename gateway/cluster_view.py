"""The nats-servers behind the gateway, as an operator needs to see them: which servers
there are, whether each is reachable, which streams each leads, and which replicas are
current or lagging.

Built from what a normal (non-system) user may ask: JetStream's stream list, whose
``cluster`` block names each stream's leader and its replicas (``current``, ``lag``,
``active``, ``offline``), and the client's own server pool (configured and discovered
URLs) and the INFO of the server it is connected to. The ``$SYS`` account's server list
is not available to the services' users, so a member no stream is placed on (a fresh
server with only R1 streams elsewhere) shows up by URL only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

NS_PER_MS = 1_000_000
# A replica the stream leader has not heard from for this long is taken as gone. RAFT
# heartbeats come about every second; the leader itself keeps a dead peer "current" for
# ~10 s (its lost-quorum check), which would hide a dead server that long.
SILENT_REPLICA_MS = 4000.0


@dataclass
class ServerView:
    name: str
    leads: list[str] = field(default_factory=list)
    current_in: list[str] = field(default_factory=list)
    lagging_in: list[str] = field(default_factory=list)
    offline_in: list[str] = field(default_factory=list)
    connected: bool = False

    @property
    def reachable(self) -> bool:
        # a leader is alive by definition (it was elected and answers for its stream); a
        # replica is reachable while its leader hears from it; the gateway's own server is
        return self.connected or bool(self.leads) or bool(self.current_in) or bool(self.lagging_in)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reachable": self.reachable,
            "connected": self.connected,
            "leads": sorted(self.leads),
            "replica_current": sorted(self.current_in),
            "replica_lagging": sorted(self.lagging_in),
            "replica_offline": sorted(self.offline_in),
        }


def _peer(peer: Any) -> dict[str, Any]:
    active = peer.active
    return {
        "name": peer.name,
        "current": bool(peer.current),
        "offline": bool(peer.offline),
        "lag": peer.lag or 0,
        # how long ago the leader last heard from this replica
        "active_ms": round(active / NS_PER_MS, 1) if active is not None else None,
    }


async def nats_servers(nc: Client, js: JetStreamContext) -> dict[str, Any]:
    """The cluster as the gateway sees it now (one JetStream API request)."""
    info = nc._server_info if nc.is_connected else {}
    connected_name = info.get("server_name")
    servers: dict[str, ServerView] = {}

    def server(name: str) -> ServerView:
        return servers.setdefault(name, ServerView(name))

    if connected_name:
        server(connected_name).connected = True
    result: dict[str, Any] = {
        "cluster": info.get("cluster"),
        "connected_server": connected_name,
        "connected_url": nc.connected_url.geturl() if nc.is_connected and nc.connected_url else None,
        "known_urls": sorted({srv.geturl() for srv in nc.servers}),
        "discovered_urls": sorted({srv.geturl() for srv in nc.discovered_servers}),
    }
    streams: list[dict[str, Any]] = []
    try:
        infos = await js.streams_info()
    except Exception as exc:  # report, don't fail the view (e.g. during a leader election)
        result["error"] = type(exc).__name__
        infos = []
    for stream in sorted(infos, key=lambda s: s.config.name or ""):
        name = stream.config.name or "?"
        cluster = stream.cluster
        leader = cluster.leader if cluster else None
        peers = [_peer(peer) for peer in (cluster.replicas or [])] if cluster else []
        if leader:
            server(leader).leads.append(name)
        for peer in peers:
            view = server(peer["name"])
            # never heard from (a new leader reports 0), or not for longer than RAFT allows
            heard = peer["active_ms"] or 0.0
            silent = (not peer["current"] and heard == 0.0) or heard > SILENT_REPLICA_MS
            peer["state"] = (
                "offline"
                if peer["offline"] or silent
                else "current"
                if peer["current"] and not peer["lag"]
                else "lagging"
            )
            {"offline": view.offline_in, "current": view.current_in, "lagging": view.lagging_in}[
                peer["state"]
            ].append(name)
        replicas = stream.config.num_replicas or 1
        healthy = leader is not None and sum(p["state"] == "current" for p in peers) == replicas - 1
        streams.append(
            {
                "name": name,
                "replicas": replicas,
                "leader": leader,
                "peers": peers,
                "healthy": healthy,  # a leader and every other replica current
            }
        )
    result["servers"] = [servers[name].as_dict() for name in sorted(servers)]
    result["streams"] = streams
    return result
