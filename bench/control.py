"""Control latency: HTTP emergency stop until the dashboard shows it, against raw NATS.

Starts the real stack as processes (nats-server, the seven engines, the gateway), waits
until the dashboard shows all seven running, then measures, interleaved:

  stop      POST /api/v1/admin/emergency-stop/<system> (rotating through the systems),
            timed from sending the POST until GET /api/v1/admin/dashboard first shows the
            system 'stopped'; baseline: the raw NATS request aoc.ctl.<system>.stop.
            Timed with a lean keep-alive HTTP/1.1 client (_common.LeanHttp), as a browser
            or curl would ask; the same through httpx is a reference row (httpx adds ~4 ms
            of client Python per request here).
  kill-all  POST /api/v1/admin/emergency-stop-all until the dashboard shows all seven
            stopped; baseline: seven raw stop requests in parallel.

  floor     after the same idle time as each stop: a NATS request/reply to a responder in
            this process, and one fsynced 800-byte JetStream write (what a stop cannot
            do without: the command in, its event stored).

Restarting between iterations is not timed. Targets (first wave): stop p99 <= 25 ms,
kill-all p99 <= 100 ms; issue 17: raw stop p50 <= 2 ms, HTTP stop p99 <= 10 ms, kill-all
p99 <= 25 ms; judged with the shipped fsync policy (sync_interval=always).

    .venv/bin/python bench/control.py                  # always, then 2m for comparison
    .venv/bin/python bench/control.py --sync always --stops 500
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import msgspec
import nats
from _common import (
    AUTH,
    Children,
    ForeignCpu,
    LeanHttp,
    add_stack_options,
    child_env,
    load_average,
    machine_facts,
    nats_server,
    parse_stack_args,
    percentile,
    print_table,
    run_stack_benchmark,
    verdict,
)
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import Command, reply_decoder
from contracts.systems import SYSTEMS
from services.launcher.natsserver import free_port

STOP_TARGET_MS = 25.0
KILL_ALL_TARGET_MS = 100.0
# issue 17's: raw stop p50, HTTP stop p99, kill-switch-all p99
RAW_STOP_P50_MS, HTTP_STOP_P99_MS, KILL_ALL_P99_MS = 2.0, 10.0, 25.0
FLOOR_STREAM, FLOOR_SUBJECT = "BENCH_FLOOR", "bench.floor"
ADMIN = "/api/v1/admin"
SLUGS = list(SYSTEMS)
RAW_BODY = msgspec.json.encode(Command(actor="bench", reason="benchmark"))

Systems = dict[str, dict[str, Any]]
Http = httpx.AsyncClient | LeanHttp


async def dashboard_until(
    http: Http, done: Callable[[Systems], bool], *, timeout: float = 10.0, pause: float = 0.0
) -> None:
    """GET the dashboard until ``done(systems)``. Timed waits (pause=0) poll back to back
    and fail on any error; untimed ones (booting, restarting) pause and tolerate refusals."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = await http.get(f"{ADMIN}/dashboard")
            if response.status_code == 200 and done(response.json()["systems"]):
                return
            if response.status_code != 200 and not pause:
                raise RuntimeError(f"dashboard answered {response.status_code}: {response.text[:200]}")
        except (httpx.TransportError, OSError, asyncio.IncompleteReadError):
            if not pause:
                raise
        await asyncio.sleep(pause)
    raise TimeoutError(f"dashboard did not reach the expected state within {timeout:g}s")


def all_in(state: str, names: list[str] = SLUGS) -> Callable[[Systems], bool]:
    return lambda systems: all(systems[name]["state"] == state for name in names)


async def raw_request(nc: Client, system: str, verb: str) -> None:
    reply = reply_decoder.decode((await nc.request(subjects.ctl(system, verb), RAW_BODY, timeout=5)).data)
    assert reply.ok and reply.changed, f"raw {verb} {system}: {reply.message}"


async def timed(action) -> float:
    started = time.perf_counter()
    await action
    return (time.perf_counter() - started) * 1000


async def http_stop(http: Http, system: str) -> None:
    response = await http.post(f"{ADMIN}/emergency-stop/{system}", json={"reason": "benchmark"})
    assert response.status_code == 200 and response.json()["changed"], response.text
    await dashboard_until(http, all_in("stopped", [system]))


async def http_stop_all(http: Http) -> None:
    response = await http.post(f"{ADMIN}/emergency-stop-all", json={"reason": "benchmark"})
    assert response.json()["succeeded"] == len(SLUGS), response.text
    await dashboard_until(http, all_in("stopped"))


async def raw_stop_all(nc: Client) -> None:
    await asyncio.gather(*(raw_request(nc, system, "stop") for system in SLUGS))


async def floor_actions(nc: Client, url: str) -> tuple[Callable[[], Any], ...]:
    """The floor of a stop on this machine, timed at the same spacing as the stops: a
    request/reply through the server (a responder in this process), and one acked,
    fsynced 800-byte JetStream write with a Nats-Msg-Id (a scratch file stream). And the
    floor of the kill switch's seven stops: seven such writes at once, one from each of
    seven connections (as seven engines write), timed until the last is acked."""
    js = nc.jetstream()
    seven = [(await nats.connect(url)).jetstream() for _ in SLUGS]
    await js.add_stream(name=FLOOR_STREAM, subjects=[f"{FLOOR_SUBJECT}.>"], storage="file")

    async def echo(msg) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(f"{FLOOR_SUBJECT}.echo", cb=echo)
    payload = b"x" * 800
    counter = iter(range(1_000_000_000))

    def request() -> Any:
        return nc.request(f"{FLOOR_SUBJECT}.echo", RAW_BODY, timeout=5)

    def write(writer=js) -> Any:
        headers = {"Nats-Msg-Id": f"floor-{next(counter)}"}
        return writer.publish(f"{FLOOR_SUBJECT}.w", payload, headers=headers)

    def writes_x7() -> Any:
        return asyncio.gather(*(write(writer) for writer in seven))

    return request, write, writes_x7


async def measure(
    nc: Client, url: str, http: httpx.AsyncClient, lean: LeanHttp, args: argparse.Namespace
) -> dict[str, list[float]]:
    names = (
        "raw stop",
        "http stop",
        "http stop httpx",
        "raw stop x7",
        "http stop-all",
        "http stop-all httpx",
        "get dashboard",
        "get 404",
        "get 404 httpx",
        "floor request",
        "floor write",
        "floor writes x7",
    )
    samples: dict[str, list[float]] = {name: [] for name in names}
    floor_request, floor_write, floor_writes_x7 = await floor_actions(nc, url)

    async def settle(systems: list[str]) -> None:
        # untimed: back to running in the dashboard, then let the start-up cycles finish
        await dashboard_until(http, all_in("running", systems), pause=0.005)
        await asyncio.sleep(args.settle)

    for index in range(args.warmup + args.stops):
        system = SLUGS[index % len(SLUGS)]
        paths = [
            ("raw stop", partial(raw_request, nc, system, "stop")),
            ("http stop", partial(http_stop, lean, system)),
            ("http stop httpx", partial(http_stop, http, system)),
        ]
        for name, action in rotated(paths, index):  # each goes first in turn
            elapsed = await timed(action())
            if index >= args.warmup:
                samples[name].append(elapsed)
                samples.setdefault(f"{name}:{system}", []).append(elapsed)
            await raw_request(nc, system, "start")
            await settle([system])
        for name, action in (("floor request", floor_request), ("floor write", floor_write)):
            elapsed = await timed(action())  # after the same idle time as a stop
            if index >= args.warmup:
                samples[name].append(elapsed)

    for _ in range(args.stops):  # for reference: what one HTTP read costs here, client included
        samples["get dashboard"].append(await timed(lean.get(f"{ADMIN}/dashboard")))
        samples["get 404"].append(await timed(lean.get("/no-such-page")))
        samples["get 404 httpx"].append(await timed(http.get("/no-such-page")))

    for index in range(args.warmup // 4 + args.kills):
        paths = [
            ("raw stop x7", partial(raw_stop_all, nc)),
            ("http stop-all", partial(http_stop_all, lean)),
            ("http stop-all httpx", partial(http_stop_all, http)),
        ]
        for name, action in rotated(paths, index):
            elapsed = await timed(action())
            if index >= args.warmup // 4:
                samples[name].append(elapsed)
            response = await http.post(f"{ADMIN}/restart-all", json={"reason": "benchmark"})
            assert response.json()["succeeded"] == len(SLUGS), response.text
            await settle(SLUGS)
        elapsed = await timed(floor_writes_x7())  # after the same idle time as a kill switch
        if index >= args.warmup // 4:
            samples["floor writes x7"].append(elapsed)
    return samples


def rotated(paths: list[Any], index: int) -> list[Any]:
    """The paths starting with a different one each iteration: none always runs first."""
    shift = index % len(paths)
    return paths[shift:] + paths[:shift]


async def run_stack(sync_interval: str, args: argparse.Namespace) -> dict[str, list[float]]:
    print(f"\n== nats-server sync_interval={sync_interval}: starting nats-server, 7 engines, gateway")
    with nats_server(sync_interval, keep=args.keep) as (server, workdir), Children(workdir) as children:
        port = free_port()
        env = child_env(server.url, workdir / "data", AOC_HTTP_PORT=str(port))
        env.update(args.env)
        for slug, info in SYSTEMS.items():
            children.spawn(slug, f"services.{info.module}", env)
        children.spawn("gateway", "gateway", env)
        nc = await nats.connect(server.url)
        limits = httpx.Limits(max_keepalive_connections=4)
        base = f"http://127.0.0.1:{port}"
        try:
            lean = LeanHttp(base, headers=AUTH)
            async with httpx.AsyncClient(base_url=base, headers=AUTH, limits=limits, timeout=10) as http:
                started = time.monotonic()
                await dashboard_until(http, all_in("running"), timeout=120, pause=0.2)
                print(f"all seven running in the dashboard after {time.monotonic() - started:.1f} s")
                health = (await http.get("/health/details")).json()
                assert health["nats"]["url"] == server.url, f"port {port} is another gateway's: {health}"
                with ForeignCpu() as foreign:
                    samples = await measure(nc, server.url, http, lean, args)
                await lean.aclose()
                print(f"noise: {foreign}")
        finally:
            await nc.close()
    report(sync_interval, samples)
    return samples


LABELS = {
    "raw stop": "raw NATS aoc.ctl.<system>.stop (baseline)",
    "http stop": "HTTP emergency-stop -> dashboard",
    "http stop httpx": "  the same through httpx (reference)",
    "raw stop x7": "raw NATS 7 stops in parallel (baseline)",
    "http stop-all": "HTTP emergency-stop-all -> dashboard",
    "http stop-all httpx": "  the same through httpx (reference)",
    "get dashboard": "for reference: GET dashboard alone",
    "get 404": "for reference: GET 404 (client + uvicorn floor)",
    "get 404 httpx": "  the same through httpx",
    "floor request": "floor: a NATS request/reply, same spacing",
    "floor write": "floor: one fsynced 800 B JetStream write, same spacing",
    "floor writes x7": "floor: 7 such writes at once from 7 connections",
}


def report(sync_interval: str, samples: dict[str, list[float]]) -> None:
    def row(name: str) -> list[str]:
        values = samples[name]
        p50, p99 = percentile(values, 50), percentile(values, 99)
        return [LABELS[name], str(len(values)), f"{p50:.1f}", f"{p99:.1f}", f"{max(values):.1f}"]

    rows = []
    for http_name, raw_name in (("http stop", "raw stop"), ("http stop-all", "raw stop x7")):
        rows += [row(raw_name), row(http_name), row(f"{http_name} httpx")]
        p50_ratio = percentile(samples[http_name], 50) / percentile(samples[raw_name], 50)
        p99_ratio = percentile(samples[http_name], 99) / percentile(samples[raw_name], 99)
        rows.append(["  ratio HTTP/raw", "", f"{p50_ratio:.2f}", f"{p99_ratio:.2f}", ""])
    references = ("get dashboard", "get 404", "get 404 httpx")
    rows += [row(name) for name in (*references, "floor request", "floor write", "floor writes x7")]
    print(f"\nlatency in ms, sync_interval={sync_interval}")
    print_table(["path", "n", "p50", "p99", "max"], rows)
    print("HTTP emergency-stop by system, p50/max ms:")
    for system in SLUGS:
        values = samples[f"http stop:{system}"]
        print(f"  {system:18} {percentile(values, 50):7.1f} {max(values):7.1f}")


def result_line(sync_interval: str, samples: dict[str, list[float]]) -> str:
    stop_p99 = percentile(samples["http stop"], 99)
    kill_p99 = percentile(samples["http stop-all"], 99)
    judged = "judged" if sync_interval == "always" else "informative; targets are judged with 'always'"
    raw_p50 = percentile(samples["raw stop"], 50)
    floor_p50 = percentile(samples["floor request"], 50) + percentile(samples["floor write"], 50)
    return (
        f"RESULT sync_interval={sync_interval} ({judged}): "
        f"emergency-stop p99 {stop_p99:.1f} ms vs <= {STOP_TARGET_MS:.0f} ms: "
        f"{verdict(stop_p99 <= STOP_TARGET_MS)}; "
        f"kill-switch-all p99 {kill_p99:.1f} ms vs <= {KILL_ALL_TARGET_MS:.0f} ms: "
        f"{verdict(kill_p99 <= KILL_ALL_TARGET_MS)}\n"
        f"  issue 17: raw stop p50 {raw_p50:.1f} ms vs <= {RAW_STOP_P50_MS:.0f} ms: "
        f"{verdict(raw_p50 <= RAW_STOP_P50_MS)} "
        f"(floor here: request + fsynced write p50 {floor_p50:.1f} ms); "
        f"HTTP stop p99 {stop_p99:.1f} ms vs <= {HTTP_STOP_P99_MS:.0f} ms: "
        f"{verdict(stop_p99 <= HTTP_STOP_P99_MS)}; "
        f"kill-switch-all p99 {kill_p99:.1f} ms vs <= {KILL_ALL_P99_MS:.0f} ms: "
        f"{verdict(kill_p99 <= KILL_ALL_P99_MS)} "
        f"(floor here: request + 7 fsynced writes at once p50 "
        f"{percentile(samples['floor request'], 50) + percentile(samples['floor writes x7'], 50):.1f} ms)\n"
        f"  (the same two through httpx: HTTP stop p99 {percentile(samples['http stop httpx'], 99):.1f} ms, "
        f"kill-switch-all p99 {percentile(samples['http stop-all httpx'], 99):.1f} ms)"
    )


async def main(args: argparse.Namespace) -> None:
    print(f"AOC control benchmark: {args.stops} stops, {args.kills} kill-all, warm-up {args.warmup}")
    print(f"machine: {machine_facts()}; load average {load_average()}")
    if args.env:
        print(f"NOT the shipped defaults: {args.env}")
    results = {sync: await run_stack(sync, args) for sync in args.sync.split(",")}
    print()
    for sync, samples in results.items():
        print(result_line(sync, samples))


def parse_args() -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--sync", default="always,2m", help="nats-server fsync policies to run, in order")
    parser.add_argument("--stops", type=int, default=200, help="timed single-system stops (default 200)")
    parser.add_argument("--kills", type=int, default=50, help="timed emergency-stop-all (default 50)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed stops first (a quarter as kill-all)")
    parser.add_argument("--settle", type=float, default=0.1, help="seconds idle after each restart")
    add_stack_options(parser)
    return parse_stack_args(parser)


if __name__ == "__main__":
    run_stack_benchmark(main, parse_args())
