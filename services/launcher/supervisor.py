"""`aoc up`: the embedded stack, and the supervisor that keeps its children running.

One asyncio loop owns everything: a task per child process waits for it to exit and
starts it again after a backoff; a signal sets one event and the shutdown runs in
order (children first, so engines can still publish their last events, then the
embedded nats-server).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
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

from contracts.settings import Settings
from contracts.systems import SYSTEMS
from gateway.security.tokens import admin_token_notice
from services.launcher.crashes import CrashReporter
from services.launcher.natsserver import NatsServer

STOP_GRACE_S = 10.0  # SIGTERM, then this long before SIGKILL
HEALTH_TIMEOUT_S = 60.0


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
    env["NATS_URL"] = settings.effective_nats_url
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the log files as they happen
    return env


def child_specs(settings: Settings) -> list[ChildSpec]:
    env = child_env(settings)
    logs = settings.data_dir / "logs"
    specs = [
        ChildSpec(slug, [sys.executable, "-m", f"services.{info.module}"], env, logs / f"{slug}.log")
        for slug, info in SYSTEMS.items()
    ]
    specs.append(ChildSpec("gateway", [sys.executable, "-m", "gateway"], env, logs / "gateway.log"))
    # not an engine: SIEM export and control-plane alerts (docs/siem.md)
    specs.append(ChildSpec("siem", [sys.executable, "-m", "services.siem"], env, logs / "siem.log"))
    return specs


def public_base_url(settings: Settings) -> str:
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):  # bound to every interface: loopback reaches it
        host = "127.0.0.1"
    return f"http://{host}:{settings.http_port}"


def start_nats(settings: Settings) -> NatsServer:
    if port_in_use("127.0.0.1", settings.nats_port):
        raise LaunchError(
            f"port {settings.nats_port} is already in use (another `aoc up` or nats-server?). "
            "Set AOC_NATS_PORT to another port, or NATS_URL to use the server that is running."
        )
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
    """The embedded server is a child too: restart it if it dies (engines reconnect)."""
    backoff = Backoff()
    started = time.monotonic()
    while not stopping.is_set():
        await sleep_unless(stopping, 1.0)
        process = server.process
        if stopping.is_set() or process is None or process.poll() is None:
            continue
        delay = backoff.delay_after(time.monotonic() - started)
        say(f"nats-server exited with {describe_exit(process.returncode)}; restarting in {delay:g}s")
        await asyncio.sleep(delay)
        try:
            await asyncio.to_thread(server.start)
            started = time.monotonic()
        except (RuntimeError, TimeoutError) as exc:
            say(f"nats-server did not restart: {exc}")


async def announce_when_healthy(settings: Settings) -> None:
    base = public_base_url(settings)
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base}/health")).status_code == 200:
                    print(
                        f"AOC is up: dashboard {base}/admin-ops  (API {base}/api/v1/admin/dashboard)",
                        flush=True,
                    )
                    return
            await asyncio.sleep(0.25)
    say(f"the gateway is not healthy after {HEALTH_TIMEOUT_S:g}s; see {settings.data_dir / 'logs'}")


async def run_up(settings: Settings) -> int:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)

    lock = lock_data_dir(settings.data_dir)
    if port_in_use(settings.http_host, settings.http_port):
        raise LaunchError(f"HTTP port {settings.http_port} is already in use; set AOC_HTTP_PORT")
    (settings.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    server: NatsServer | None = None
    if settings.embedded:
        server = await asyncio.to_thread(start_nats, settings)
        mode = f"users in {server.credentials_dir}" if server.secure else "no auth: AOC_NATS_SECURE=false"
        say(f"embedded nats-server on {server.url} (store {server.data_dir}; {mode})")
    else:
        say(f"using NATS at {settings.effective_nats_url}")
    for line in admin_token_notice(settings, public_base_url(settings)):
        say(line)

    reporter = CrashReporter(settings, say)

    async def report_exit(child: Child, code: int, uptime: float, delay: float) -> None:
        assert child.process is not None
        await reporter.report(
            child.spec.name,
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
    if server is not None:
        helpers.append(asyncio.create_task(watch_nats(server, supervisor.stopping)))

    await stop_requested.wait()
    say("stopping ...")
    for task in helpers:
        task.cancel()
    await asyncio.gather(*helpers, return_exceptions=True)
    await supervisor.stop()
    await reporter.close()
    if server is not None:
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
