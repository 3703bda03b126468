"""Restarts in constant time: a real gateway killed -9 and started again, at two stream
sizes, and the activity-log queries at both.

One nats-server, one stream that grows: for each size (10k and 200k events, or 10k and
1M with --million), the stream is filled to that size with realistic events, then

  raw        a bare nats-py ordered consumer reads the whole stream (the fastest read
             path, NATS-NOTES.md): the baseline for replay speed;
  full       `python -m gateway` with AOC_SNAPSHOTS=false: every start replays the whole
             stream, as every start did before snapshots; ready = GET /health/details
             says replayed with lag 0;
  running    the gateway with snapshots (the shipped defaults) starts, writes its
             snapshot, takes a steady trickle of events (--trickle at --rate/s), and is
             killed -9 at an arbitrary point of that;
  restarted  started again: it loads the snapshot and replays the tail. Its ready time,
             the tail it read, and its RSS are the figures; then the queries:
             activity-log?limit=100, ...&system=deploy&q=<no match>, and one page below
             the in-memory window (the bounded stream scan), p50/p99.

Targets (issue 17): ready(large) / ready(10k) <= 1.5 after a kill -9; RSS <= 250 MB at
1M; each activity-log query at the large size <= 1.5x the same query at 10k.

    .venv/bin/python bench/replay.py              # 10k and 200k events
    .venv/bin/python bench/replay.py --million    # 10k and 1M (the fill takes minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import time

import httpx
import nats
from _common import (
    AUTH,
    Children,
    ForeignCpu,
    child_env,
    fill_stream,
    interrupt_on_sigterm,
    load_average,
    machine_facts,
    nats_server,
    percentile,
    print_table,
    rss_mb,
    verdict,
    wait_for_health,
)
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import subjects
from contracts.settings import Settings
from contracts.streams import ensure_all
from services.launcher.natsserver import free_port

RATIO_TARGET = 1.5
RSS_TARGET_MB = 250.0
RSS_TARGET_EVENTS = 1_000_000
STREAM_MAX_BYTES = 8 * 1024**3  # 1M events are ~0.8 GB; never let discard=old drop any
FILL_SYNC_INTERVAL = "2m"  # filling with fsync 'always' takes ages; reads don't fsync
NO_MATCH = "xylophone"
QUERIES = {
    "plain": {"limit": 100},
    "deploy+no match": {"limit": 100, "system": "deploy", "q": NO_MATCH},
}


async def raw_replay(url: str) -> tuple[float, int]:
    """Seconds to read the whole stream with a bare ordered consumer, and events read."""
    nc = await nats.connect(url)
    done = asyncio.Event()
    count = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal count
        meta = msg.metadata
        count += 1
        if meta.num_pending == 0:
            done.set()

    started = time.perf_counter()
    sub = await nc.jetstream().subscribe(
        subjects.EVENTS_SUBJECTS,
        ordered_consumer=True,
        cb=on_msg,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    await done.wait()
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    await nc.close()
    return elapsed, count


class Gateway:
    """One `python -m gateway` process."""

    def __init__(self, children: Children, url: str, workdir, name: str, **env: str) -> None:
        self.port = free_port()
        self.env = child_env(
            url,
            workdir / "data",
            AOC_HTTP_PORT=str(self.port),
            AOC_STREAM_MAX_BYTES=str(STREAM_MAX_BYTES),
            **env,
        )
        self.children, self.name = children, name
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=30, headers=AUTH)

    async def start(self, timeout: float) -> float:
        """Seconds from spawning the process to 'replayed, lag 0' (imports, connect, load)."""
        started = time.perf_counter()
        self.proc = self.children.spawn(self.name, "gateway", self.env)
        await wait_for_health(self.http, self.proc, timeout)
        return time.perf_counter() - started

    async def health(self) -> dict:
        return (await self.http.get("/health/details")).json()

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    async def stop(self) -> None:
        self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 60)
        await self.http.aclose()

    async def latency(self, params: dict, count: int) -> tuple[float, float]:
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            response = await self.http.get("/api/v1/admin/activity-log", params=params)
            samples.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
        return percentile(samples, 50), percentile(samples, 99)


async def trickle(js, count: int, rate: float) -> None:
    """``count`` more events at about ``rate`` a second: a stream that keeps moving."""
    step = max(int(rate / 10), 1)
    sent = 0
    while sent < count:
        started = time.perf_counter()
        await fill_stream(js, min(step, count - sent), batch=step)
        sent += step
        await asyncio.sleep(max(0.1 - (time.perf_counter() - started), 0))


async def until_snapshot(gateway: Gateway, seq: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        written = (await gateway.health())["snapshot"].get("last_written") or {}
        if written.get("events_seq", 0) >= seq:
            return written
        await asyncio.sleep(0.5)
    raise TimeoutError(f"no snapshot at seq >= {seq} within {timeout:g} s")


async def measure_size(args, server, workdir, children, js, size: int) -> dict:
    info = await js.stream_info(subjects.EVENTS_STREAM)
    fill_s = await fill_stream(js, size - info.state.messages)
    print(f"\n== {size:,} events (filled {size - info.state.messages:,} in {fill_s:.1f} s)")
    row: dict = {"size": size}

    seconds, read = await raw_replay(server.url)
    row["raw_rate"] = read / seconds
    print(f"raw ordered consumer: {read:,} events in {seconds:.2f} s ({read / seconds:,.0f} ev/s)")

    full = Gateway(children, server.url, workdir, f"full-{size}", AOC_SNAPSHOTS="false")
    row["full_ready"] = await full.start(args.timeout)
    row["full_rate"] = size / row["full_ready"]
    await full.stop()
    print(f"full replay (no snapshot, as before): ready after {row['full_ready']:.1f} s")

    running = Gateway(children, server.url, workdir, f"running-{size}")
    await running.start(args.timeout)
    written = await until_snapshot(running, size, args.snapshot_wait)
    row["snapshot"] = written
    print(
        f"snapshot written at seq {written['events_seq']:,}: {written['bytes'] / 2**20:.1f} MB, "
        f"cut {written['cut_ms']:.1f} ms on the loop, encode {written['encode_ms']:.0f} ms in a thread "
        f"(longest loop stall meanwhile {written['loop_stall_ms']:.1f} ms), put {written['put_ms']:.0f} ms"
    )
    await trickle(js, args.trickle, args.rate)
    running.kill9()
    print(f"{args.trickle:,} more events at ~{args.rate:.0f}/s, then kill -9")

    restarted = Gateway(children, server.url, workdir, f"restarted-{size}")
    row["ready"] = await restarted.start(args.timeout)
    health = await restarted.health()
    await asyncio.sleep(0.5)  # let the allocator settle before reading RSS
    row["rss"], row["peak"] = rss_mb(restarted.proc.pid)
    row["loaded"] = health["snapshot"]
    row["tail"] = health["projection"]["replayed_events"]
    print(
        f"restarted: ready after {row['ready']:.2f} s, snapshot loaded: {health['snapshot']['loaded']} "
        f"({health['snapshot'].get('load_ms', 0):.0f} ms), tail {row['tail']:,} events; "
        f"RSS {row['rss']:.0f} MB (peak {row['peak']:.0f})"
    )
    for name, params in QUERIES.items():
        await restarted.latency(params, 20)  # warm up
        row[name] = await restarted.latency(params, args.requests)
    page = (await restarted.http.get("/api/v1/admin/activity-log", params={"limit": 1})).json()
    oldest = page["oldest_seq_in_memory"]
    if oldest > 1:
        params = {"limit": 100, "before": oldest}
        row["stream page"] = await restarted.latency(params, max(args.requests // 10, 5))
        scanned = (await restarted.http.get("/api/v1/admin/activity-log", params=params)).json()["scanned"]
        row["scanned"] = scanned["to_seq"] - scanned["from_seq"] + 1
    await restarted.stop()
    return row


async def main(args: argparse.Namespace) -> None:
    sizes = args.sizes or ([10_000, 1_000_000] if args.million else [10_000, 200_000])
    print(f"AOC restart benchmark: stream sizes {', '.join(f'{s:,}' for s in sizes)}")
    print(f"machine: {machine_facts()}; load average {load_average()}")
    settings = Settings(stream_max_bytes=STREAM_MAX_BYTES)
    rows = []
    with (
        nats_server(FILL_SYNC_INTERVAL, keep=args.keep) as (server, workdir),
        Children(workdir) as children,
        ForeignCpu() as foreign,
    ):
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_all(js, settings)
        for size in sizes:
            rows.append(await measure_size(args, server, workdir, children, js, size))
        await nc.close()
        slow = (workdir / "nats.log").read_text(errors="replace").count("Slow Consumer")
    print(f"\nnoise: {foreign}; load average now {load_average()}")
    if slow:
        print(f"note: nats-server saw {slow} slow consumer(s)")

    base = rows[0]
    print()
    print_table(
        ["events", "raw ev/s", "full replay s", "kill -9 -> ready s", "tail", "RSS MB (peak)"],
        [
            [
                f"{r['size']:,}",
                f"{r['raw_rate']:,.0f}",
                f"{r['full_ready']:.1f}",
                f"{r['ready']:.2f}",
                f"{r['tail']:,}",
                f"{r['rss']:.0f} ({r['peak']:.0f})",
            ]
            for r in rows
        ],
    )
    print()
    header = ["events", *(f"{name} p50/p99 ms" for name in QUERIES), "stream page p50/p99 ms"]
    table = []
    for r in rows:
        cells = [f"{r['size']:,}"] + [f"{r[name][0]:.2f} / {r[name][1]:.2f}" for name in QUERIES]
        page = r.get("stream page")
        cells.append(f"{page[0]:.1f} / {page[1]:.1f} ({r['scanned']:,} seqs)" if page else "—")
        table.append(cells)
    print_table(header, table)

    print()
    for r in rows[1:]:
        ratio = r["ready"] / base["ready"]
        full_ratio = r["full_ready"] / base["full_ready"]
        rss_note = "" if r["size"] >= RSS_TARGET_EVENTS else f" (target is for {RSS_TARGET_EVENTS:,})"
        print(
            f"RESULT {r['size']:,} vs {base['size']:,} events: ready after kill -9 {r['ready']:.2f} s vs "
            f"{base['ready']:.2f} s = x{ratio:.2f} (<= {RATIO_TARGET}: {verdict(ratio <= RATIO_TARGET)}); "
            f"a full replay would be x{full_ratio:.1f} ({r['full_ready']:.1f} s); "
            f"RSS {r['rss']:.0f} MB (peak {r['peak']:.0f}) <= {RSS_TARGET_MB:.0f}: "
            f"{verdict(r['peak'] <= RSS_TARGET_MB)}{rss_note}"
        )
        for name in QUERIES:
            q_ratio = r[name][0] / base[name][0]
            print(
                f"RESULT activity-log {name}: p50 {r[name][0]:.2f} ms vs {base[name][0]:.2f} ms at "
                f"{base['size']:,} = x{q_ratio:.2f} (<= {RATIO_TARGET}: {verdict(q_ratio <= RATIO_TARGET)})"
            )
        print(
            f"       full replay {r['full_rate']:,.0f} ev/s incl. start-up vs raw consumer "
            f"{r['raw_rate']:,.0f} ev/s (x{r['full_rate'] / r['raw_rate']:.2f})"
        )
    print(f"median restart {statistics.median(r['ready'] for r in rows):.2f} s")


def parse_args() -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--million", action="store_true", help="sizes 10k and 1M")
    parser.add_argument("--sizes", type=int, nargs="+", help="stream sizes, smallest first")
    parser.add_argument("--trickle", type=int, default=2000, help="events between snapshot and kill -9")
    parser.add_argument("--rate", type=float, default=400.0, help="events per second of the trickle")
    parser.add_argument("--requests", type=int, default=300, help="requests per query")
    parser.add_argument("--timeout", type=float, default=900.0, help="max seconds for a gateway to be ready")
    parser.add_argument("--snapshot-wait", type=float, default=120.0, help="max seconds for its snapshot")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (store and logs)")
    return parser.parse_args()


if __name__ == "__main__":
    interrupt_on_sigterm()
    try:
        asyncio.run(main(parse_args()))
    except KeyboardInterrupt:
        print("\ninterrupted; nats-server and children stopped")
