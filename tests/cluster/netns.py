"""One nats-server in its own network namespace, joined to the host by a veth pair, so a
test can cut it off from the rest of its cluster (``ip link set ... down``) and heal it.

Needs Linux, the ``ip`` tool and CAP_NET_ADMIN (root here: the machines allow network
namespaces for the project's own test hosts). ``netns_unavailable()`` says why not
where it is not permitted; tests skip with that reason.

    with IsolatedHost.create() as host, PartitionableCluster(tmp, host).start() as cluster:
        host.cut()     # aoc-n3 (inside) loses its routes and its clients
        host.heal()

Engine processes can run inside too: ``host.exec_prefix`` before their argv.

A cut is a link down, not a reset: TCP connections across it stay open and deliver what
was queued in them once the link heals (seen here: a publish the cut-off side never got
an ack for was stored after the heal). Only acks tell what was stored.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.launcher.natsserver import (
    ClusterRoutes,
    NatsServer,
    free_port,
    route_password,
    wait_for_meta_leader,
)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def netns_unavailable() -> str | None:
    """None when network namespaces work here, else the reason they do not."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux only (this is {sys.platform})"
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    probe = f"aoc-probe-{os.getpid()}"
    result = _ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"`ip netns add` is not permitted here: {result.stderr.strip() or result.returncode}"
    _ip("netns", "del", probe, check=False)
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 in 10.200.0.0/13 that no interface here uses."""
    used = _ip("-o", "-4", "addr").stdout
    for _ in range(100):
        network = ipaddress.ip_network(f"10.{random.randrange(200, 208)}.{random.randrange(256)}.0/30")
        if str(network.network_address)[:-1] not in used:
            return network
    raise RuntimeError("no free /30 for a veth pair")


@dataclass
class IsolatedHost:
    """A network namespace and the veth pair that joins it to the host."""

    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str

    @classmethod
    @contextlib.contextmanager
    def create(cls):
        tag = f"{os.getpid() % 100000}{random.randrange(100):02d}"
        subnet = _free_subnet()
        host_ip, ns_ip = (str(address) for address in subnet.hosts())
        host = cls(f"aoc-ns-{tag}", f"aoch{tag}", f"aocn{tag}", host_ip, ns_ip)
        try:
            host._build()
            yield host
        finally:
            host.destroy()

    def _build(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        self.inside("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        self.inside("ip", "link", "set", self.ns_if, "up")
        self.inside("ip", "link", "set", "lo", "up")

    @property
    def exec_prefix(self) -> tuple[str, ...]:
        """Run a command inside: ``[*host.exec_prefix, "nats-server", ...]``."""
        return ("ip", "netns", "exec", self.name)

    def inside(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [*self.exec_prefix, *argv]
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30)

    def cut(self) -> None:
        """The partition: the link goes down, nothing crosses it either way."""
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def destroy(self) -> None:
        _ip("link", "del", self.host_if, check=False)  # takes its peer with it
        _ip("netns", "del", self.name, check=False)


@dataclass
class PartitionableCluster:
    """A 3-node JetStream cluster whose last member runs inside ``host``'s namespace.

    The two outside members listen on the host's veth address (so the inside member can
    reach them), the inside one on its own; a client on the host reaches all three while
    the link is up."""

    data_dir: Path
    host: IsolatedHost
    name: str = "aoc"
    nodes: list[NatsServer] = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password = route_password(self.data_dir / "cluster-route.json")
        addresses = [self.host.host_ip, self.host.host_ip, self.host.ns_ip]
        routes = [free_port() for _ in addresses]
        clients = [free_port() for _ in addresses]
        peers = tuple(f"{address}:{port}" for address, port in zip(addresses, routes, strict=True))
        self.nodes = []
        for index, address in enumerate(addresses):
            server_name = f"{self.name}-n{index + 1}"
            inside = index == len(addresses) - 1
            self.nodes.append(
                NatsServer(
                    self.data_dir / server_name,
                    port=clients[index],
                    log_file=self.data_dir / f"{server_name}.log",
                    server_name=server_name,
                    host=address,
                    cluster=ClusterRoutes(self.name, f"{address}:{routes[index]}", peers, password),
                    command_prefix=self.host.exec_prefix if inside else (),
                )
            )

    @property
    def inside(self) -> NatsServer:
        return self.nodes[-1]

    @property
    def outside(self) -> list[NatsServer]:
        return self.nodes[:-1]

    @property
    def servers(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        return ",".join(self.servers)

    def connect_options(self) -> dict[str, Any]:
        return {"servers": self.servers}

    def start(self, timeout: float = 60.0) -> PartitionableCluster:
        for node in self.nodes:
            node.spawn()
        try:
            for node in self.nodes:
                node.wait_listening(timeout)
            wait_for_meta_leader(self.connect_options(), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> PartitionableCluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
