"""Operator tools: what the jobs read model, annotations and the ask parser cost.

Fills AOC_EVENTS in a throwaway nats-server with N realistic events (the mix of
bench/_common.py: cycles, commands with audits, lifecycle changes), then in one run:

  raw       nats-py ordered consumer counting messages (the fastest read path): baseline;
  jobs      the jobs read model's replay (FollowedView: the same consumer, decoding only
            command_handled / cycle_completed / lifecycle_changed), what the gateway adds
            at boot for GET /api/v1/jobs;
  find      Projection.find(id) on a full in-memory window, the lookup of an annotation
            POST (a scan from the newest row), for the oldest row: the worst case;
  ask       the ask endpoint's intent parser over that window, per question.

    .venv/bin/python bench/ops.py              # 200k events
    .venv/bin/python bench/ops.py --events 50000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import nats
from _common import fill_stream, load_average, machine_facts, nats_server, print_table, replay_into
from replay import raw_replay

from contracts.settings import Settings
from contracts.streams import ensure_all
from gateway.ask import intents
from gateway.readmodels.activity import ActivityView
from gateway.readmodels.jobs import JobsView
from gateway.readmodels.systems import SystemsView

QUESTIONS = [
    "which engines are stopped?",
    "who stopped deploy and why?",
    "what happened to soc-cycle in the last hour?",
    "what failed in the last 2 days?",
]


async def jobs_replay(url: str) -> tuple[float, int, int]:
    view = JobsView()
    elapsed, applied = await replay_into(url, [view])
    return elapsed, applied, len(view.jobs)


async def projection(url: str, window: int) -> tuple[ActivityView, SystemsView]:
    activity, systems = ActivityView(window=window), SystemsView()
    await replay_into(url, [activity, systems])
    return activity, systems


def timed(fn, repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def main(args: argparse.Namespace) -> None:
    print(f"AOC operator-tools benchmark: {args.events:,} events, {args.rounds} rounds")
    print(f"machine: {machine_facts()}; load average {load_average()}")
    settings = Settings(stream_max_bytes=8 * 1024**3)
    with nats_server("2m") as (server, _):
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_all(js, settings)
        await fill_stream(js, args.events)
        await nc.close()
        rows = []
        rates: dict[str, list[float]] = {"raw": [], "jobs": []}
        for round_ in range(1, args.rounds + 1):
            raw_s, raw_n = await raw_replay(server.url)
            jobs_s, jobs_n, jobs = await jobs_replay(server.url)
            rates["raw"].append(raw_n / raw_s)
            rates["jobs"].append(jobs_n / jobs_s)
            rows.append([str(round_), f"{raw_n / raw_s:,.0f}", f"{jobs_n / jobs_s:,.0f}", f"{jobs:,}"])
        print_table(["round", "raw ev/s", "jobs model ev/s", "jobs in view"], rows)
        raw, jobs_rate = statistics.median(rates["raw"]), statistics.median(rates["jobs"])
        print(f"jobs model replay / raw consumer: {jobs_rate / raw:.2f} (median of {args.rounds})")

        view, systems = await projection(server.url, settings.activity_window)
        oldest = view.rows[0].id
        find_ms = timed(lambda: view.find(oldest), 20)
        newest_ms = timed(lambda: view.find(view.rows[-1].id), 20)
        print(
            f"annotation lookup over {len(view.rows):,} rows: "
            f"oldest {find_ms:.2f} ms, newest {newest_ms:.3f} ms"
        )
        sources = intents.Sources(activity=view, systems=systems, heartbeat_timeout=15.0)
        for question in QUESTIONS:
            ms = timed(lambda q=question: intents.answer(q, sources), 10)
            print(f"ask parser {ms:8.2f} ms  {question}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
