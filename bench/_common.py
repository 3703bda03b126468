"""Helpers shared by bench/replay.py and bench/control.py: a throwaway nats-server,
child processes that are always cleaned up, realistic events, and small stats."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil
from nats.js import JetStreamContext

from contracts import subjects
from contracts.events import (
    CommandHandled,
    CycleCompleted,
    Envelope,
    LifecycleChanged,
    Summary,
    encode,
    new_event,
    new_id,
    utcnow,
)
from contracts.systems import SYSTEMS
from services.launcher.natsserver import NatsCluster, NatsServer, find_binary

ROOT = Path(__file__).resolve().parent.parent
SLUGS = list(SYSTEMS)
# A throwaway admin API token for the gateways these benchmarks start (never a secret).
ADMIN_TOKEN = "aoc_bench-admin-token-not-a-secret-00000000000000"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# --- machine and verdicts ---------------------------------------------------------------


def machine_facts() -> str:
    nats_version = subprocess.run(
        [str(find_binary()), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"{nats_version}, {platform.system()} {platform.release()}"
    )


def load_average() -> str:
    """The 1/5/15-minute load: other work on a 2-core box shows up in every figure."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


class ForeignCpu:
    """CPU seconds used by processes other than this one and its children while measuring:
    other engineers' test runs on the same 2 cores show up here, not in the figures."""

    def __enter__(self) -> ForeignCpu:
        self.started = time.monotonic()
        self._busy, self._ours = self._sample()
        return self

    def __exit__(self, *_: object) -> None:
        busy, ours = self._sample()
        self.wall = time.monotonic() - self.started
        self.seconds = max((busy - self._busy) - (ours - self._ours), 0.0)

    @staticmethod
    def _sample() -> tuple[float, float]:
        total = psutil.cpu_times()
        busy = sum(total) - total.idle - getattr(total, "iowait", 0.0)
        ours = 0.0
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                ours += times.user + times.system
        return busy, ours

    def __str__(self) -> str:
        share = self.seconds / self.wall * 100 if self.wall else 0.0
        return f"other processes used {self.seconds:.1f} CPU-s in {self.wall:.0f} s ({share:.0f}% of a core)"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in [header, ["-" * width for width in widths], *rows]:
        print("  ".join(str(cell).rjust(width) for cell, width in zip(line, widths, strict=True)))


# --- a lean HTTP client for timed requests ------------------------------------------------


class LeanReply(msgspec.Struct):
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return msgspec.json.decode(self.content)


class LeanHttp:
    """HTTP/1.1 over one kept-alive connection, for the requests a benchmark times. httpx
    adds ~4 ms of client-side Python per request on this machine (a GET 404 reads 6 ms
    through httpx and 2 ms through this, same server, same run; docs/performance.md): a
    browser or curl does not, so the latency an operator sees is measured with this, and
    httpx stays as a reference row. The server must send Content-Length (uvicorn does
    for every JSON response); GETs are sent again once on a dropped connection."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        url = httpx.URL(base_url)
        self.host, self.port = url.host, url.port or 80
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._head = f"Host: {self.host}:{self.port}\r\n{extra}"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> LeanReply:
        return await self.request("GET", path)

    async def post(self, path: str, json: Any = None) -> LeanReply:
        return await self.request("POST", path, b"" if json is None else msgspec.json.encode(json))

    async def request(self, method: str, path: str, body: bytes = b"") -> LeanReply:
        head = (
            f"{method} {path} HTTP/1.1\r\n{self._head}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        for attempt in (1, 2):
            if self._streams is None:
                self._streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self._streams
            try:
                writer.write(head + body)
                return await self._read(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.aclose()
                if method != "GET" or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _read(self, reader: asyncio.StreamReader) -> LeanReply:
        lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        fields = {
            name.strip().lower(): value.strip().lower()
            for name, value in (line.split(b":", 1) for line in lines[1:] if b":" in line)
        }
        length = fields.get(b"content-length")
        if length is None:
            raise ValueError(f"HTTP {status} without Content-Length: LeanHttp reads only those")
        content = await reader.readexactly(int(length))
        if fields.get(b"connection") == b"close":
            await self.aclose()
        return LeanReply(status, content)

    async def aclose(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


# --- a throwaway nats-server and child processes ------------------------------------------


@contextlib.contextmanager
def nats_server(sync_interval: str, *, keep: bool = False) -> Iterator[tuple[NatsServer, Path]]:
    """A fresh nats-server in its own temp dir (on the same disk as the repo's /tmp)."""
    workdir = Path(tempfile.mkdtemp(prefix="aoc-bench-"))
    server = NatsServer(workdir / "nats", sync_interval=sync_interval, log_file=workdir / "nats.log")
    try:
        yield server.start(), workdir
    finally:
        server.stop()
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def nats_cluster(
    sync_interval: str, size: int = 3, *, keep: bool = False
) -> Iterator[tuple[NatsCluster, Path]]:
    """A fresh loopback JetStream cluster (members aoc-n1..), meta leader elected."""
    workdir = Path(tempfile.mkdtemp(prefix="aoc-bench-cluster-"))
    cluster = NatsCluster(workdir / "nats", size=size, sync_interval=sync_interval, log_dir=workdir)
    try:
        yield cluster.start(timeout=60), workdir
    finally:
        cluster.stop()
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def child_env(nats_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any AOC_* or NATS_URL, then ours. The gateway's
    rate limiter still runs on every request, but its limit is raised so a benchmark's
    hundreds of commands a minute are not refused (429)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOC_") and k != "NATS_URL"}
    env.update(
        NATS_URL=nats_url,
        AOC_DATA_DIR=str(data_dir),
        AOC_ADMIN_TOKEN=ADMIN_TOKEN,
        AOC_RATE_LIMIT_PER_MINUTE="1000000",
        AOC_RATE_LIMIT_BURST="100000",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _die_with_parent() -> None:  # runs in the forked child
    # should this benchmark be SIGKILLed, its children get SIGTERM (PR_SET_PDEATHSIG)
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def interrupt_on_sigterm() -> None:
    """SIGTERM behaves like Ctrl-C, so the context managers still stop every child."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    """--keep and --env, for the benchmarks that start the stack as processes."""
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (store and logs)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="AOC_X=V", help="extra setting for every process"
    )


def parse_stack_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    args.env = dict(item.split("=", 1) for item in args.env)
    return args


def run_stack_benchmark(
    main: Callable[[argparse.Namespace], Awaitable[None]], args: argparse.Namespace
) -> None:
    interrupt_on_sigterm()
    try:
        asyncio.run(main(args))
    except KeyboardInterrupt:
        print("\ninterrupted; engines, gateway and nats-server stopped")


class Children:
    """Child processes started by a benchmark; ``stop_all`` always runs (use as a context)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 — the child owns it
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,  # a terminal Ctrl-C reaches only us; we stop them in order
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.procs[name] = proc
        return proc

    def stop_all(self, grace: float = 10.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_all()


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS 'VmHWM') of a process, in MB."""
    current = psutil.Process(pid).memory_info().rss / 2**20
    peak = current
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return current, peak


async def replay_into(url: str, views: list) -> tuple[float, int]:
    """Replay AOC_EVENTS into ``views`` with the gateway's own feed (one ordered consumer,
    each event decoded once); seconds until caught up, and the last sequence applied."""
    import nats

    from gateway.readmodels.feed import EventFeed

    async def nothing() -> None:
        return None

    nc = await nats.connect(url)
    feed = EventFeed(nc, views, ensure=nothing, on_change=lambda: None)
    started = time.perf_counter()
    await feed.start()
    while not feed.ready:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    await feed.stop()
    await nc.close()
    return elapsed, feed.last_seq


async def wait_for_health(http: httpx.AsyncClient, proc: subprocess.Popen[bytes], timeout: float) -> dict:
    """Poll GET /health/details until the projection has replayed with no lag."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode} (see its log)")
        with contextlib.suppress(httpx.HTTPError):
            response = await http.get("/health/details", headers=AUTH)
            projection = response.json().get("projection", {})
            if projection.get("replayed") and projection.get("lag") == 0:
                return response.json()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"gateway not replayed within {timeout:g}s")


# --- realistic events -----------------------------------------------------------------------

ACTORS = ["alice@soc", "bob@platform", "oncall@sre", "nats:anonymous", "cli:carol"]
LOOPS = ["triage", "scan", "watch", "retrain", "refresh", "queue", "probe"]


def _cycle(rng: random.Random, system: str):
    alerts, resolved = rng.randint(0, 400), rng.randint(0, 50)
    detail = (
        f"{rng.choice(LOOPS)}: processed {alerts} items, auto-resolved {resolved}, "
        f"escalated {rng.randint(0, 5)} to a human; queue depth {rng.randint(0, 999)}, "
        f"p95 {rng.randint(5, 900)} ms"
    )
    ok = rng.random() > 0.05
    payload = CycleCompleted(
        loop=rng.choice(LOOPS),
        run_id=f"{rng.getrandbits(128):032x}",
        ok=ok,
        result="success" if ok else "failed",
        detail=detail,
        duration_ms=round(rng.uniform(2, 4000), 2),
        output={"alerts": alerts, "resolved": resolved},
        total_runs=rng.randint(1, 10**6),
        error_count=rng.randint(0, 500),
    )
    return payload, Summary(action=f"{payload.loop}_cycle", detail=detail, result=payload.result), system


def _command(rng: random.Random, system: str):
    verb = rng.choice(["stop", "start", "restart", "trigger"])
    actor = rng.choice(ACTORS)
    message = f"{SYSTEMS[system].label} {verb} accepted"
    detail = f"{verb} from http: {message} (reason: incident INC-{rng.randint(1000, 99999)} mitigation)"
    payload = CommandHandled(
        command_id=f"{rng.getrandbits(128):032x}",
        verb=verb,
        target=system,
        origin="http",
        outcome="accepted",
        message=message,
        reason=f"incident INC-{rng.randint(1000, 99999)} mitigation",
        subject=subjects.ctl(system, verb),
    )
    return payload, Summary(action=f"command_{verb}", detail=detail), actor


def _lifecycle(rng: random.Random, system: str):
    state, previous = rng.choice([("stopped", "running"), ("running", "stopped")])
    reason = f"{'stop' if state == 'stopped' else 'start'} by {rng.choice(ACTORS)} during change window"
    payload = LifecycleChanged(state=state, previous=previous, desired=state, reason=reason)
    detail = f"{SYSTEMS[system].label} {state} — {reason}"
    return payload, Summary(action=f"engine_{state}", detail=detail), system


def random_event(rng: random.Random) -> tuple[str, Envelope]:
    """(subject, envelope): 75% cycles, 17% commands, 8% lifecycle changes."""
    system = rng.choice(SLUGS)
    roll = rng.random()
    make = _cycle if roll < 0.75 else _command if roll < 0.92 else _lifecycle
    payload, summary, actor = make(rng, system)
    event = new_event(system=system, payload=payload, summary=summary, actor=actor)
    return subjects.evt(system, event.type), event


async def fill_stream(js: JetStreamContext, total: int, *, batch: int = 4000, variety: int = 4096) -> float:
    """Publish ``total`` events with publish_async in acked batches; returns seconds.

    ``variety`` distinct random events are drawn once; each publish is one of them with
    a fresh id (sent as Nats-Msg-Id) and time, so the fill is not bound by the RNG.
    """
    rng = random.Random(7)
    templates = [random_event(rng) for _ in range(variety)]
    started = time.perf_counter()
    done = 0
    while done < total:
        futures = []
        for index in range(done, min(done + batch, total)):
            subject, template = templates[index % variety]
            event = msgspec.structs.replace(template, id=new_id(), time=utcnow())
            headers = {"Nats-Msg-Id": event.id}
            futures.append(await js.publish_async(subject, encode(event), headers=headers))
        for future in futures:
            await future  # raises on a failed publish
        done += len(futures)
        if sys.stdout.isatty() and (done % 100_000 == 0 or done == total):
            print(f"  filled {done:,}/{total:,}", end="\r", flush=True)
    if sys.stdout.isatty():
        print()
    return time.perf_counter() - started
