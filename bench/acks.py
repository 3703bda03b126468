"""Client CPU per batched JetStream write: our AckInbox (what WriteBatch uses) against
nats-py's publish_async (the baseline), in the same run, against one real nats-server.

Each round sends --writes writes in batches of --batch (sent back to back, then every ack
awaited), alternating the two ways; it prints the client's CPU and the wall time per
write. The server's fsync policy is `1s` by default so the server is not what limits the
client; `--sync always` shows the same with the server's fsync per write.

    .venv/bin/python bench/acks.py
    .venv/bin/python bench/acks.py --sync always --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import nats
import uvloop
from _common import machine_facts, nats_server
from nats.js.api import StreamConfig

from contracts.events import new_id
from services.runtime.bus import AckInbox

PAYLOAD = b'{"event":"' + b"x" * 600 + b'"}'  # about a playbook run's size


async def with_publish_async(js, subjects: list[str], batch: int) -> None:
    for start in range(0, len(subjects), batch):
        futures = [
            await js.publish_async(subject, PAYLOAD, headers={"Nats-Msg-Id": new_id()})
            for subject in subjects[start : start + batch]
        ]
        for future in futures:
            await future


async def with_ack_inbox(inbox: AckInbox, subjects: list[str], batch: int) -> None:
    for start in range(0, len(subjects), batch):
        sent = [
            await inbox.send(subject, PAYLOAD, {"Nats-Msg-Id": new_id()})
            for subject in subjects[start : start + batch]
        ]
        for _reply, future in sent:
            await future


async def main(args: argparse.Namespace) -> None:
    print(machine_facts())
    with nats_server(args.sync) as (server, _workdir):
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="ACKS", subjects=["acks.>"]))
        inbox = AckInbox(nc)
        subjects = [f"acks.evt.{n % 7}" for n in range(args.writes)]
        ways = {
            "publish_async (nats-py, baseline)": lambda: with_publish_async(js, subjects, args.batch),
            "AckInbox (WriteBatch)": lambda: with_ack_inbox(inbox, subjects, args.batch),
        }
        cpu: dict[str, list[float]] = {name: [] for name in ways}
        wall: dict[str, list[float]] = {name: [] for name in ways}
        for way in ways.values():  # warm both
            await way()
        for _ in range(args.rounds):
            for name, way in ways.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                await way()
                wall[name].append(1e6 * (time.perf_counter() - started) / args.writes)
                cpu[name].append(1e6 * (time.process_time() - cpu_started) / args.writes)
        await nc.close()
    print(f"sync_interval={args.sync}, {args.writes} writes in batches of {args.batch}, {args.rounds} rounds")
    print(f"{'':36} {'client CPU µs/write':>22} {'wall µs/write':>16}")
    for name in ways:
        runs = "/".join(f"{value:.0f}" for value in cpu[name])
        median_cpu, median_wall = statistics.median(cpu[name]), statistics.median(wall[name])
        print(f"{name:36} {median_cpu:8.1f} ({runs:>11}) {median_wall:12.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sync", default="1s", help="nats-server sync_interval (default 1s)")
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_400)
    parser.add_argument("--rounds", type=int, default=3)
    uvloop.run(main(parser.parse_args()))
