"""SIEM export speed: events/s each sink kind delivers, against the raw consumer, and how
long a sink takes to catch up after its receiver was down.

One throwaway nats-server, AOC_EVENTS filled with N realistic events, and in the same run:

  raw          a durable pull consumer over the stream, fetch(batch) + AckAll confirmed by
               the server, no receiver: what the delivery loop costs without a sink
  syslog-tcp   SinkRunner + RFC 5424 over TCP with octet counting (the kernel-ack check)
  syslog-udp   SinkRunner + RFC 5424 datagrams
  hec          SinkRunner + Splunk HEC batches over HTTP
  webhook      SinkRunner + HMAC-signed JSON batches over HTTP

Receivers run in a child process (so they do not share the service's event loop on a
2-core box) and only read and answer: the figures are the sender's.

Catch-up: the receiver of one sink (``--catchup-kind``, default hec) is down; 50,000
events are published; the outage lasts ``--outage`` seconds (default 600, as issue 15
says), during which the sink retries with its backoff (capped at 30 s); then the
receiver comes back and the clock runs until the receiver has accepted every event. The
figure is split into the wait for the next retry and the drain itself.

    .venv/bin/python bench/siem.py                      # 100k events, 10-minute outage
    .venv/bin/python bench/siem.py --outage 60 --events 50000
    .venv/bin/python bench/siem.py --skip-catchup
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time

import nats
from _common import ForeignCpu, fill_stream, load_average, machine_facts, nats_server, print_table
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import subjects
from contracts.settings import Settings
from contracts.siem import parse_sinks
from contracts.streams import ensure_all
from services.launcher.natsserver import free_port
from services.shared.egress import AddressPolicy, UrlGuard
from services.siem.delivery import SinkRunner
from services.siem.transports import transport_for

BATCH = 200
TOKEN = "bench-hec-token"
SECRET = "bench-webhook-secret"
CATCHUP_EVENTS = 50_000

RECEIVER = r"""
import asyncio, socket, sys
kind, port = sys.argv[1], int(sys.argv[2])

async def tcp():
    async def handle(reader, writer):
        while await reader.read(1 << 16):
            pass
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()

def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", port))
    while True:
        sock.recv(65536)

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"text":"Success","code":0}'})

if kind == "tcp":
    asyncio.run(tcp())
elif kind == "udp":
    udp()
else:
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
"""


class Receiver:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Receiver:
        protocol = {"syslog-tcp": "tcp", "syslog-udp": "udp"}.get(self.kind, "http")
        self.process = subprocess.Popen([sys.executable, "-c", RECEIVER, protocol, str(self.port)])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if protocol == "udp":
                time.sleep(0.3)  # nothing to probe: give it a moment to bind
                return self
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.kind} receiver did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def sink(self, name: str, **extra) -> dict:
        base = {"name": name, "batch": BATCH, "start": "all", **extra}
        if self.kind == "syslog-tcp":
            return {
                **base,
                "kind": "syslog",
                "url": f"tcp://127.0.0.1:{self.port}",
                "max_message_bytes": 65536,
            }
        if self.kind == "syslog-udp":
            return {**base, "kind": "syslog", "url": f"udp://127.0.0.1:{self.port}"}
        url = f"http://127.0.0.1:{self.port}/services/collector/event"
        if self.kind == "hec":
            return {**base, "kind": "hec", "url": url, "allow_http": True, "token": TOKEN}
        return {**base, "kind": "webhook", "url": url, "allow_http": True, "secret": SECRET}


def guard() -> UrlGuard:
    return UrlGuard(
        frozenset({"127.0.0.1"}), AddressPolicy.from_strings(["127.0.0.0/8"]), allow_plain_http=True
    )


async def raw_rate(js, total: int, name: str) -> float:
    await js.add_consumer(
        subjects.EVENTS_STREAM,
        ConsumerConfig(
            durable_name=name,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.ALL,
            max_ack_pending=BATCH,
            filter_subject=subjects.EVENTS_SUBJECTS,
        ),
    )
    sub = await js.pull_subscribe_bind(name, stream=subjects.EVENTS_STREAM)
    started = time.perf_counter()
    done = 0
    while done < total:
        msgs = await sub.fetch(BATCH, timeout=5)
        await msgs[-1].ack_sync()
        done += len(msgs)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return total / elapsed


async def sink_rate(js, kind: str, total: int) -> float:
    receiver = Receiver(kind).start()
    try:
        config = parse_sinks(json.dumps([receiver.sink(f"bench-{kind}")]))[0]
        runner = SinkRunner(js, config, transport_for(config, guard()))
        started = time.perf_counter()
        runner.start()
        while runner.status.delivered < total:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        await runner.stop()
        return total / elapsed
    finally:
        receiver.stop()


async def catchup(js, kind: str, outage: float, events: int) -> dict[str, float]:
    receiver = Receiver(kind).start()
    config = parse_sinks(json.dumps([receiver.sink(f"catchup-{kind}", start="new")]))[0]
    runner = SinkRunner(js, config, transport_for(config, guard()))
    runner.start()
    while runner.status.state == "starting":
        await asyncio.sleep(0.05)
    receiver.stop()  # the receiver goes away ...
    down_at = time.monotonic()
    await fill_stream(js, events)  # ... while the control plane keeps talking
    while runner.status.consecutive_failures < 1:
        await asyncio.sleep(0.05)
    print(f"  receiver down; {events:,} events waiting; outage {outage:g} s ...", flush=True)
    await asyncio.sleep(max(0.0, outage - (time.monotonic() - down_at)))
    failures = runner.status.consecutive_failures
    receiver.start()
    up_at = time.perf_counter()
    base = runner.status.delivered
    first_at = None
    while runner.status.delivered - base < events:
        if first_at is None and runner.status.delivered > base:
            first_at = time.perf_counter()
        await asyncio.sleep(0.01)
    done_at = time.perf_counter()
    await runner.stop()
    receiver.stop()
    first_at = first_at or done_at
    return {
        "outage_s": outage,
        "failed_attempts": failures,
        "retry_wait_s": first_at - up_at,
        "drain_s": done_at - first_at,
        "total_s": done_at - up_at,
        "drain_rate": events / max(done_at - first_at, 1e-9),
    }


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine_facts()}; load {load_average()}")
    with nats_server("2m") as (server, _workdir):
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        settings = Settings(nats_url=server.url, stream_max_bytes=8 * 1024**3)
        await ensure_all(js, settings)
        fill_s = await fill_stream(js, args.events)
        print(f"filled AOC_EVENTS with {args.events:,} events in {fill_s:.1f} s (batch {BATCH})")
        rows = []
        with ForeignCpu() as foreign:
            raw = await raw_rate(js, args.events, "bench-raw")
            rows.append(["raw consumer (fetch + AckAll)", f"{raw:,.0f}", "1.00"])
            for kind in args.kinds:
                rate = await sink_rate(js, kind, args.events)
                rows.append([kind, f"{rate:,.0f}", f"{rate / raw:.2f}"])
        print_table(["path", "events/s", "vs raw"], rows)
        print(f"other processes used {foreign.seconds:.1f} CPU-s during {foreign.wall:.1f} s of measuring")
        if not args.skip_catchup:
            figures = await catchup(js, args.catchup_kind, args.outage, CATCHUP_EVENTS)
            print(
                f"catch-up ({args.catchup_kind}): {CATCHUP_EVENTS:,} events after a "
                f"{figures['outage_s']:g} s outage "
                f"({figures['failed_attempts']} failed attempts, backoff capped at 30 s): "
                f"{figures['total_s']:.1f} s after the receiver came back = "
                f"{figures['retry_wait_s']:.1f} s waiting for the next retry + "
                f"{figures['drain_s']:.1f} s draining ({figures['drain_rate']:,.0f} events/s)"
            )
        await nc.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in the stream for the rates")
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["syslog-tcp", "syslog-udp", "hec", "webhook"],
        help="sink kinds to measure",
    )
    parser.add_argument(
        "--outage", type=float, default=600.0, help="receiver outage in seconds (issue: 10 min)"
    )
    parser.add_argument("--catchup-kind", default="hec", choices=["syslog-tcp", "hec", "webhook"])
    parser.add_argument("--skip-catchup", action="store_true")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
