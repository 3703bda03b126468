"""`aoc up`: the embedded stack, and the supervisor that keeps its children running.

One asyncio loop owns everything: a task per child process waits for it to exit and
starts it again after a backoff; a signal sets one event and the shutdown runs in
order (children first, so engines can still publish their last events, then the
embedded nats-server(s)).

Topology comes from settings: ``AOC_NATS_CLUSTER`` embedded nats-servers (1, or a
loopback cluster of 3 whose JetStream meta leader is elected before any service starts),
``AOC_INSTANCES`` processes per engine and of the SIEM service (each with its own
``AOC_INSTANCE_ID`` and log).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import httpx
import nats
from nats.aio.msg import Msg
from nats.micro.service import ServiceVerb, control_subject

from contracts.settings import Settings
from contracts.siem import SIEM
from contracts.systems import SYSTEMS
from services.launcher.crashes import CrashReporter
from services.launcher.natsauth import LAUNCHER
from services.launcher.natsserver import NatsCluster, NatsServer, consecutive_ports
from services.runtime.bus import connect_options
from services.shared.tokens import admin_token_notice

STOP_GRACE_S = 10.0  # SIGTERM, then this long before SIGKILL
HEALTH_TIMEOUT_S = 60.0
CLUSTER_READY_S = 60.0  # every member listening and a JetStream meta leader elected


def say(line: str) -> None:
    """Launcher messages: one readable line each, on stderr (stdout is for the URL)."""
    print(f"aoc: {line}", file=sys.stderr, flush=True)


# --- supervision --------------------------------------------------------------------------


@dataclass
class Backoff:
    """0.5 s, 1 s, 2 s ... capped at 30 s; a child that stayed up a minute starts over."""

    initial: float = 0.5
    cap: float = 30.0
    reset_after: float = 60.0
    _next: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._next = self.initial

    def delay_after(self, uptime: float) -> float:
        if uptime >= self.reset_after:
            self._next = self.initial
        delay = self._next
        self._next = min(delay * 2, self.cap)
        return delay


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_file: Path
    system: str | None = None  # the engine slug, or "siem" (None: the gateway)
    instance_id: str | None = None  # AOC_INSTANCE_ID of an engine or SIEM process


async def sleep_unless(event: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when ``event`` is set (shutdown began)."""
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _die_with_launcher() -> None:  # pragma: no cover - runs in the forked child
    # Linux: should the launcher itself be SIGKILLed, its children get SIGTERM instead
    # of running on as orphans holding ports and the store.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


# told of every exit outside shutdown: (child, exit code, uptime, delay before the restart)
ExitHook = Callable[["Child", int, float, float], Awaitable[None]]


class Child:
    """One supervised process: started, watched, restarted with backoff until stopping."""

    def __init__(
        self,
        spec: ChildSpec,
        stopping: asyncio.Event,
        log: Callable[[str], None] = say,
        on_exit: ExitHook | None = None,
    ) -> None:
        self.spec = spec
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = stopping
        self._backoff = Backoff()
        self._log = log
        self._on_exit = on_exit
        self._reports: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def supervise(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.process = await self._spawn()
            except OSError as exc:
                self._log(f"{self.spec.name} could not start: {exc}")
                await self._pause(self._backoff.delay_after(0.0))
                continue
            if self._stopping.is_set():  # shutdown began while it was starting
                self.terminate()
            code = await self.process.wait()
            if self._stopping.is_set():
                return
            uptime = time.monotonic() - started
            delay = self._backoff.delay_after(uptime)
            self.restarts += 1
            self._log(
                f"{self.spec.name} (pid {self.process.pid}) exited with {describe_exit(code)} "
                f"after {uptime:.1f}s; restart #{self.restarts} in {delay:g}s (log: {self.spec.log_file})"
            )
            if self._on_exit is not None:  # at once, not after the backoff: the crash is news now
                task = asyncio.create_task(self._on_exit(self, code, uptime, delay))
                self._reports.add(task)
                task.add_done_callback(self._reports.discard)
            await self._pause(delay)

    def _open_log(self) -> BinaryIO:
        """The child's log, appended to, with a line marking each start."""
        self.spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.spec.log_file, "ab")  # noqa: SIM115 — closed by _spawn once the child has it
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"--- aoc: starting {self.spec.name} at {stamp}\n".encode())
        log.flush()
        return log

    async def _spawn(self) -> asyncio.subprocess.Process:
        with self._open_log() as log:
            return await asyncio.create_subprocess_exec(
                *self.spec.argv,
                env=self.spec.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                # own process group: a terminal Ctrl-C reaches only the launcher, which
                # then stops the children in order instead of all at once
                process_group=0,
                preexec_fn=_die_with_launcher if sys.platform == "linux" else None,
            )

    async def _pause(self, seconds: float) -> None:
        await sleep_unless(self._stopping, seconds)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)


class Supervisor:
    def __init__(
        self, specs: list[ChildSpec], log: Callable[[str], None] = say, on_exit: ExitHook | None = None
    ) -> None:
        self.stopping = asyncio.Event()
        self.children = [Child(spec, self.stopping, log, on_exit) for spec in specs]
        self._tasks: dict[asyncio.Task[None], Child] = {}
        self._log = log

    def start(self) -> None:
        for child in self.children:
            task = asyncio.create_task(child.supervise(), name=f"supervise-{child.spec.name}")
            self._tasks[task] = child

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM every child, give them ``grace`` seconds, SIGKILL the rest."""
        self.stopping.set()
        for child in self.children:
            child.terminate()
        if not self._tasks:
            return
        _, stragglers = await asyncio.wait(self._tasks, timeout=grace)
        for task in stragglers:
            child = self._tasks[task]
            self._log(f"{child.spec.name} (pid {child.pid}) still up {grace:g}s after SIGTERM; killing it")
            child.kill()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# --- aoc up -------------------------------------------------------------------------------


class LaunchError(Exception):
    """Something that stops `aoc up` before it starts anything (exit 1)."""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # as the servers themselves do: a port left in TIME_WAIT by the last run is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def lock_data_dir(data_dir: Path) -> BinaryIO:
    """One `aoc up` per data dir: two nats-servers on one store would corrupt it.
    The lock lives as long as the returned file stays open (the launcher's lifetime)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = open(data_dir / "aoc-up.pid", "a+b")  # noqa: SIM115 — held until the process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().decode().strip() or "?"
        lock.close()
        raise LaunchError(f"another `aoc up` (pid {holder}) is using {data_dir}; set AOC_DATA_DIR") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()).encode())
    lock.flush()
    return lock


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["NATS_URL"] = settings.effective_nats_url  # a cluster: every member, comma-separated
    # the replicas the launcher chose (e.g. from --nats-cluster), not a default of their own
    env["AOC_STREAM_REPLICAS"] = str(settings.stream_replicas)
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the log files as they happen
    return env


def instance_ids(slug: str, settings: Settings) -> list[str]:
    """<slug>-1 ... <slug>-N: stable across restarts, so logs and discovery name them."""
    return [f"{slug}-{number}" for number in range(1, settings.instances + 1)]


def engine_specs(settings: Settings, env: dict[str, str]) -> list[ChildSpec]:
    """One process per engine instance, each with its own AOC_INSTANCE_ID and log file
    (``<slug>.log`` when there is one instance, as before; ``<slug>-<n>.log`` otherwise)."""
    logs = settings.data_dir / "logs"
    specs = []
    for slug, info in SYSTEMS.items():
        for instance in instance_ids(slug, settings):
            name = slug if settings.instances == 1 else instance
            specs.append(
                ChildSpec(
                    name,
                    [sys.executable, "-m", f"services.{info.module}"],
                    {**env, "AOC_INSTANCE_ID": instance},
                    logs / f"{name}.log",
                    system=slug,
                    instance_id=instance,
                )
            )
    return specs


def child_specs(settings: Settings) -> list[ChildSpec]:
    env = child_env(settings)
    specs = engine_specs(settings, env)
    gateway_log = settings.data_dir / "logs" / "gateway.log"
    specs.append(ChildSpec("gateway", [sys.executable, "-m", "gateway"], env, gateway_log))
    specs += siem_specs(settings, env)
    return specs


def siem_specs(settings: Settings, env: dict[str, str]) -> list[ChildSpec]:
    """Not an engine: SIEM export and control-plane alerts (docs/siem.md). As many processes
    as an engine has, single-active by the same lease (key ``siem`` in aoc_leases): ids
    ``siem-<n>``, logs ``siem-<n>.log`` (``siem.log`` with one instance)."""
    logs = settings.data_dir / "logs"
    specs = []
    for instance in instance_ids(SIEM, settings):
        name = SIEM if settings.instances == 1 else instance
        specs.append(
            ChildSpec(
                name,
                [sys.executable, "-m", "services.siem"],
                {**env, "AOC_INSTANCE_ID": instance},
                logs / f"{name}.log",
                system=SIEM,
                instance_id=instance,
            )
        )
    return specs


def public_base_url(settings: Settings) -> str:
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):  # bound to every interface: loopback reaches it
        host = "127.0.0.1"
    return f"http://{host}:{settings.http_port}"


def embedded_ports(settings: Settings) -> dict[str, list[int]]:
    """Client, route and monitor ports of the embedded server(s): a base each, +1 per member."""
    size = settings.nats_cluster
    ports = {"client": consecutive_ports(settings.nats_port, size)}
    if size > 1:
        ports["route"] = consecutive_ports(settings.nats_route_port, size)
    if settings.nats_monitor_port:
        ports["monitor"] = consecutive_ports(settings.nats_monitor_port, size)
    return ports


def check_ports_free(settings: Settings) -> dict[str, list[int]]:
    ports = embedded_ports(settings)
    taken = [port for numbers in ports.values() for port in numbers] + [settings.http_port]
    clashes = sorted({port for port in taken if taken.count(port) > 1})
    if clashes:
        raise LaunchError(
            f"ports {clashes} are given twice: AOC_NATS_PORT, AOC_NATS_ROUTE_PORT and AOC_NATS_MONITOR_PORT "
            f"each take {settings.nats_cluster} consecutive ports, and AOC_HTTP_PORT one"
        )
    variables = {
        "client": "AOC_NATS_PORT",
        "route": "AOC_NATS_ROUTE_PORT",
        "monitor": "AOC_NATS_MONITOR_PORT",
    }
    for kind, numbers in ports.items():
        for port in numbers:
            if port > 65535 or port_in_use("127.0.0.1", port):
                raise LaunchError(
                    f"port {port} is already in use (another `aoc up` or nats-server?). "
                    f"Set {variables[kind]} to another (base) port, or NATS_URL to use the server "
                    "that is running."
                )
    return ports


def start_nats(settings: Settings) -> list[NatsServer]:
    """The embedded nats-server(s), ready for the services: one server, or a cluster with
    its meta leader elected."""
    ports = check_ports_free(settings)
    if settings.nats_cluster > 1:
        return start_cluster(settings, ports).nodes
    return [start_single(settings)]


def start_cluster(settings: Settings, ports: dict[str, list[int]]) -> NatsCluster:
    nats_dir = settings.data_dir / "nats"
    if (nats_dir / "jetstream").exists():
        say(f"note: the single server's store {nats_dir / 'jetstream'} is not part of the cluster's stores")
    cluster = NatsCluster(
        nats_dir,
        size=settings.nats_cluster,
        name=settings.nats_cluster_name,
        ports=ports["client"],
        route_ports=ports["route"],
        monitor_ports=ports.get("monitor"),
        sync_interval=settings.nats_sync_interval,
        log_dir=settings.data_dir / "logs",
        secure=settings.nats_secure,
        credentials_dir=settings.effective_nats_credentials_dir,
        operators=settings.nats_operators,
    )
    try:
        return cluster.start(timeout=CLUSTER_READY_S)
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
        raise LaunchError(f"embedded NATS cluster did not start: {exc}") from None


def start_single(settings: Settings) -> NatsServer:
    server = NatsServer(
        settings.data_dir / "nats",
        port=settings.nats_port,
        sync_interval=settings.nats_sync_interval,
        monitor_port=settings.nats_monitor_port,
        log_file=settings.data_dir / "logs" / "nats-server.log",
        # users and subject permissions (docs/security.md §3); children find their
        # generated credentials in this directory
        secure=settings.nats_secure,
        credentials_dir=settings.effective_nats_credentials_dir,
        operators=settings.nats_operators,
    )
    try:
        return server.start()
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
        raise LaunchError(f"embedded nats-server did not start: {exc}") from None


async def watch_nats(server: NatsServer, stopping: asyncio.Event) -> None:
    """An embedded server is a child too: restart it if it dies (engines reconnect; a
    cluster member catches up from its peers)."""
    backoff = Backoff()
    started = time.monotonic()
    while not stopping.is_set():
        await sleep_unless(stopping, 1.0)
        process = server.process
        if stopping.is_set() or process is None or process.poll() is None:
            continue
        delay = backoff.delay_after(time.monotonic() - started)
        name = server.server_name
        say(f"nats-server {name} exited with {describe_exit(process.returncode)}; restarting in {delay:g}s")
        await asyncio.sleep(delay)
        try:
            await asyncio.to_thread(server.start)
            started = time.monotonic()
        except (RuntimeError, TimeoutError) as exc:
            say(f"nats-server {name} did not restart: {exc}")


# --- readiness ----------------------------------------------------------------------------


async def discoverable_engines(settings: Settings, wait: float = 0.5) -> dict[str, set[str]]:
    """slug -> the micro service ids that answered one ``$SRV.PING`` within ``wait``."""
    found: dict[str, set[str]] = {}
    nc = await nats.connect(
        **connect_options(settings, LAUNCHER),
        name="aoc-launcher",
        connect_timeout=2,
        allow_reconnect=False,
        max_reconnect_attempts=1,
        error_cb=_ignore_error,
    )
    try:
        inbox = nc.new_inbox()

        async def pong(msg: Msg) -> None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                reply = json.loads(msg.data)
                found.setdefault(reply["name"].removeprefix("aoc-"), set()).add(reply["id"])

        sub = await nc.subscribe(inbox, cb=pong)
        await nc.publish(control_subject(ServiceVerb.PING), b"", reply=inbox)
        await asyncio.sleep(wait)
        await sub.unsubscribe()
    finally:
        await nc.close()
    return found


async def _ignore_error(_exc: Exception) -> None:  # the default callback prints tracebacks
    return None


def missing_engines(settings: Settings, found: dict[str, set[str]]) -> list[str]:
    """Engines with fewer discoverable instances than AOC_INSTANCES, as 'slug (n/N)'."""
    expected = settings.instances
    return [
        f"{slug} ({len(found.get(slug, ()))}/{expected})" if expected > 1 else slug
        for slug in SYSTEMS
        if len(found.get(slug, ())) < expected
    ]


async def wait_for_engines(settings: Settings, timeout: float) -> list[str]:
    """Until every engine instance answers discovery; returns those still missing."""
    deadline = time.monotonic() + timeout
    missing = list(SYSTEMS)
    while time.monotonic() < deadline:
        try:
            missing = missing_engines(settings, await discoverable_engines(settings))
        except Exception as exc:  # NATS refused the launcher: say so once, don't block the start
            say(f"cannot check engine discovery ({type(exc).__name__}: {exc})")
            return []
        if not missing:
            return []
        await asyncio.sleep(0.25)
    return missing


async def gateway_healthy(settings: Settings, timeout: float) -> bool:
    base = public_base_url(settings)
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base}/health")).status_code == 200:
                    return True
            await asyncio.sleep(0.25)
    return False


async def announce_when_healthy(settings: Settings) -> None:
    """ "AOC is up" once the gateway is healthy *and* every engine instance answers NATS
    discovery: the engines that load scikit-learn start seconds after the others, and an
    operator who ran `nats micro ls` at the first healthy /health saw 5 of 7."""
    base = public_base_url(settings)
    if not await gateway_healthy(settings, HEALTH_TIMEOUT_S):
        say(f"the gateway is not healthy after {HEALTH_TIMEOUT_S:g}s; see {settings.data_dir / 'logs'}")
        return
    missing = await wait_for_engines(settings, HEALTH_TIMEOUT_S)
    if missing:
        say(f"not answering NATS discovery after {HEALTH_TIMEOUT_S:g}s: {', '.join(missing)}")
    mcp = f", MCP {base}/mcp" if settings.mcp_http else ""
    print(f"AOC is up: dashboard {base}/admin-ops  (API {base}/api/v1/admin/dashboard{mcp})", flush=True)


async def run_up(settings: Settings) -> int:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)

    lock = lock_data_dir(settings.data_dir)
    if port_in_use(settings.http_host, settings.http_port):
        raise LaunchError(f"HTTP port {settings.http_port} is already in use; set AOC_HTTP_PORT")
    (settings.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    servers: list[NatsServer] = []
    if settings.embedded:
        servers = await asyncio.to_thread(start_nats, settings)
        first = servers[0]
        mode = f"users in {first.credentials_dir}" if first.secure else "no auth: AOC_NATS_SECURE=false"
        if len(servers) == 1:
            say(f"embedded nats-server on {first.url} (store {first.data_dir}; {mode})")
        else:
            say(
                f"embedded NATS cluster {settings.nats_cluster_name!r} of {len(servers)}: "
                f"{', '.join(f'{s.server_name} {s.url}' for s in servers)} "
                f"(stores in {first.data_dir.parent}; {settings.stream_replicas} replicas; {mode})"
            )
    else:
        say(f"using NATS at {settings.effective_nats_url}")
    if settings.instances > 1:
        say(
            f"{settings.instances} instances of each engine and of the SIEM service: "
            "one active (its lease), the others standby"
        )
    for line in admin_token_notice(settings, public_base_url(settings)):
        say(line)

    reporter = CrashReporter(settings, say)

    async def report_exit(child: Child, code: int, uptime: float, delay: float) -> None:
        assert child.process is not None
        await reporter.report(
            child.spec.system or child.spec.name,  # an engine instance's crash is its engine's
            pid=child.process.pid,
            returncode=code,
            uptime_s=uptime,
            restarts=child.restarts,
            restart_in_s=delay,
        )

    supervisor = Supervisor(child_specs(settings), on_exit=report_exit)
    supervisor.start()
    say(f"started {len(supervisor.children)} services; logs in {settings.data_dir / 'logs'}")
    helpers = [asyncio.create_task(announce_when_healthy(settings))]
    helpers += [asyncio.create_task(watch_nats(server, supervisor.stopping)) for server in servers]

    await stop_requested.wait()
    say("stopping ...")
    for task in helpers:
        task.cancel()
    await asyncio.gather(*helpers, return_exceptions=True)
    await supervisor.stop()
    await reporter.close()
    for server in servers:
        await asyncio.to_thread(server.stop)
    say("stopped")
    lock.close()
    return 0


def up(settings: Settings) -> int:
    try:
        return asyncio.run(run_up(settings))
    except LaunchError as exc:
        say(f"error: {exc}")
        return 1
