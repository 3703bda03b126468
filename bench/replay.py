"""Replay speed: the gateway's projection replay against a raw nats-py ordered consumer.

Fills AOC_EVENTS in a throwaway nats-server with N realistic events, then, in one run
and over the same stream, alternates:

  raw      nats-py ordered consumer, callback that only counts and reads the stream
           sequence, until num_pending == 0 (the fastest read path, NATS-NOTES.md);
  gateway  ProjectionFeed(nc, Projection(window=activity_window)).start() and await
           feed.replayed, exactly what the gateway does at boot.

Then starts the real gateway process (python -m gateway) on the filled stream, waits
for GET /health/details to say replayed with lag 0 and reads its RSS. (The real
gateway also replays its other areas, e.g. the SOC view: its time and RSS include them.)

Targets (issue): gateway/raw >= 0.6; gateway RSS <= 250 MB at 1M events.

    .venv/bin/python bench/replay.py              # 200k events
    .venv/bin/python bench/replay.py --million    # 1M events
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time

import httpx
import nats
from _common import (
    Children,
    ForeignCpu,
    child_env,
    fill_stream,
    interrupt_on_sigterm,
    load_average,
    machine_facts,
    nats_server,
    print_table,
    replay_into,
    rss_mb,
    verdict,
    wait_for_health,
)
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import subjects
from contracts.settings import Settings
from contracts.streams import ensure_all
from gateway.readmodels.registry import ReadModels
from services.launcher.natsserver import free_port

RATIO_TARGET = 0.6
RSS_TARGET_MB = 250.0
RSS_TARGET_EVENTS = 1_000_000
STREAM_MAX_BYTES = 8 * 1024**3  # 1M events are ~0.7 GB; never let discard=old drop any
FILL_SYNC_INTERVAL = "2m"  # filling with fsync 'always' takes ages; reads don't fsync


async def raw_replay(url: str) -> tuple[float, int]:
    """Seconds to read the whole stream with a bare ordered consumer, and events read."""
    nc = await nats.connect(url)
    done = asyncio.Event()
    count = 0
    last_seq = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal count, last_seq
        meta = msg.metadata
        last_seq = meta.sequence.stream
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


async def gateway_replay(url: str, settings: Settings) -> tuple[float, int]:
    """Seconds for the gateway's own replay path (in this process): every view the event
    feed hands events to, and the last sequence applied."""
    nc = await nats.connect(url)
    views = ReadModels(nc, settings).fed_views()
    await nc.close()
    return await replay_into(url, views)


async def gateway_process_rss(url: str, children: Children, workdir, timeout: float) -> tuple[float, ...]:
    """Start `python -m gateway` on the filled stream; (seconds to ready, RSS, peak RSS)."""
    port = free_port()
    env = child_env(
        url, workdir / "data", AOC_HTTP_PORT=str(port), AOC_STREAM_MAX_BYTES=str(STREAM_MAX_BYTES)
    )
    started = time.perf_counter()
    proc = children.spawn("gateway", "gateway", env)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        await wait_for_health(http, proc, timeout)
    ready = time.perf_counter() - started
    await asyncio.sleep(0.5)  # let the allocator settle before reading RSS
    return (ready, *rss_mb(proc.pid))


async def main(args: argparse.Namespace) -> None:
    events = 1_000_000 if args.million else args.events
    print(f"AOC replay benchmark: {events:,} events, {args.rounds} rounds")
    print(f"machine: {machine_facts()}; load average {load_average()}")
    settings = Settings(stream_max_bytes=STREAM_MAX_BYTES)
    with nats_server(FILL_SYNC_INTERVAL, keep=args.keep) as (server, workdir), Children(workdir) as children:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_all(js, settings)
        fill_s = await fill_stream(js, events)
        info = await js.stream_info(subjects.EVENTS_STREAM)
        await nc.close()
        assert info.state.messages == events, f"stream holds {info.state.messages} events, not {events}"
        print(
            f"filled {events:,} events ({info.state.bytes / 2**20:.0f} MB, "
            f"{info.state.bytes / events:.0f} B/event) in {fill_s:.1f} s ({events / fill_s:,.0f} ev/s), "
            f"nats-server sync_interval={FILL_SYNC_INTERVAL} (replay reads do not depend on it)"
        )

        rates: dict[str, list[float]] = {"raw": [], "gateway": []}
        table = []
        with ForeignCpu() as foreign:
            for round_no in range(1, args.rounds + 1):
                for name in ("raw", "gateway"):
                    gc.collect()
                    if name == "raw":
                        seconds, seen = await raw_replay(server.url)
                    else:
                        seconds, seen = await gateway_replay(server.url, settings)
                    assert seen == events, f"{name} read {seen} of {events} events"
                    rates[name].append(events / seconds)
                    table.append([str(round_no), name, f"{seconds:.2f}", f"{events / seconds:,.0f}"])
        print()
        print_table(["round", "path", "seconds", "events/s"], table)
        print(f"noise: {foreign}")

        print()
        summary = []
        for name, label in (("raw", "raw ordered consumer"), ("gateway", "gateway ProjectionFeed")):
            best, median = max(rates[name]), statistics.median(rates[name])
            summary.append([label, f"{best:,.0f}", f"{median:,.0f}"])
        # best vs best: the least disturbed run of each; per round: neighbours in time
        best_ratio = max(rates["gateway"]) / max(rates["raw"])
        round_ratio = statistics.median(g / r for g, r in zip(rates["gateway"], rates["raw"], strict=True))
        summary.append(["ratio gateway/raw", f"{best_ratio:.2f}", f"{round_ratio:.2f} (per round)"])
        print_table(["events/s", "best", "median"], summary)

        print()
        print("starting `python -m gateway` on the filled stream ...")
        ready_s, rss, peak = await gateway_process_rss(server.url, children, workdir, args.timeout)
        print(
            f"gateway process: /health/details replayed with lag 0 after {ready_s:.1f} s "
            f"(imports + connect + replay); RSS {rss:.0f} MB, peak {peak:.0f} MB"
        )
        slow = (workdir / "nats.log").read_text(errors="replace").count("Slow Consumer")
        drops = (workdir / "gateway.log").read_text(errors="replace").count("nats.disconnected")
        if slow or drops:
            print(f"  note: nats-server saw {slow} slow consumer(s); the gateway lost NATS {drops} time(s)")

    rss_note = "" if events >= RSS_TARGET_EVENTS else f" (target is for {RSS_TARGET_EVENTS:,} events)"
    print(
        f"\nRESULT {events:,} events: ratio {best_ratio:.2f} (best vs best; per-round median "
        f"{round_ratio:.2f}) vs >= {RATIO_TARGET}: {verdict(best_ratio >= RATIO_TARGET)}; "
        f"gateway RSS {rss:.0f} MB (peak {peak:.0f}) vs <= {RSS_TARGET_MB:.0f} MB: "
        f"{verdict(peak <= RSS_TARGET_MB)}{rss_note}"
    )


def parse_args() -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--events", type=int, default=200_000, help="events to fill (default 200000)")
    parser.add_argument("--million", action="store_true", help="fill 1,000,000 events")
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw/gateway rounds (default 3)")
    parser.add_argument("--timeout", type=float, default=600.0, help="max seconds for the gateway to boot")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (store and logs)")
    return parser.parse_args()


if __name__ == "__main__":
    interrupt_on_sigterm()
    try:
        asyncio.run(main(parse_args()))
    except KeyboardInterrupt:
        print("\ninterrupted; nats-server and children stopped")
