"""Failover: how long a 3-node cluster takes to answer commands and ack writes again after
a node is killed (-9), against the same round trips on the healthy cluster, same run.

Starts a real 3-node JetStream cluster (R3 streams and buckets, fsync always) and the
deploy engine as a process attached to aoc-n1 (its NATS_URL names only that node; it
learns the others from the server). Baseline, healthy cluster:

  status    raw NATS request aoc.ctl.deploy.status (answered from memory, no write)
  command   aoc.ctl.deploy.stop / start alternately (one acked lifecycle event carrying its audit)
  write     one acked event publish with Nats-Msg-Id (services/runtime/bus.py)

Then --kills rounds, alternating two faults:

  leader    kill -9 the member leading AOC_EVENTS, while the engine's node stays
  node      kill -9 aoc-n1, the engine's own node, which first takes AOC_EVENTS' lead

From the kill, concurrently: time until a status request is answered again (0.25 s
tries), until a stop/start sent at the kill is answered (it waits for its writes,
retried by the engine; sent again while no instance answers at all), and until a write
started at the kill is acked. The killed node
is restarted and every replica is current again before the next round (not timed).

Then --takeovers rounds on the same cluster (issue 13 §8): the deploy engine again, now
as two instances (deploy-a, deploy-b; lease TTL AOC_LEASE_TTL, 5 s by default). Each
round kills (-9) the active instance, sends a stop or start at the kill (one command
id, sent again every 0.5 s until answered, as an operator would), and times until a
status is answered by the other instance as active (the takeover) and until the
command is answered. A command is lost when it is never answered, or when its answer is
not what the durable desired state says afterwards. The killed instance is started
again as a standby before the next round (not timed).

    .venv/bin/python bench/failover.py
    .venv/bin/python bench/failover.py --kills 10 --samples 300 --takeovers 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time

import nats
import structlog
from _common import (
    Children,
    ForeignCpu,
    add_stack_options,
    child_env,
    load_average,
    machine_facts,
    nats_cluster,
    parse_stack_args,
    percentile,
    print_table,
    run_stack_benchmark,
)
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts import subjects
from contracts.events import CycleCompleted, Summary, encode, new_event
from contracts.settings import Settings
from contracts.streams import ensure_all
from services.launcher.natsserver import NatsCluster
from services.runtime.bus import publish_with_retry

ENGINE = "deploy"
READY_S = 120.0


async def connect(servers: list[str]) -> Client:
    async def quiet(_exc: Exception) -> None:
        return None

    return await nats.connect(
        servers=servers, max_reconnect_attempts=-1, reconnect_time_wait=0.05, error_cb=quiet
    )


def test_event(n: int):
    payload = CycleCompleted(
        loop="bench", run_id=f"failover-{n}", ok=True, result="success", detail="", duration_ms=0
    )
    return new_event(system=ENGINE, payload=payload, summary=Summary(action="bench_cycle"))


async def write(js: JetStreamContext, n: int) -> None:
    event = test_event(n)
    await publish_with_retry(
        js, subjects.evt(ENGINE, event.type), encode(event), msg_id=event.id, deadline=120
    )


async def command(nc: Client, verb: str, timeout: float) -> None:
    reply = await nc.request(f"aoc.ctl.{ENGINE}.{verb}", b'{"reason": "failover bench"}', timeout=timeout)
    if b'"ok":true' not in reply.data:
        raise RuntimeError(reply.data.decode()[:200])


async def status(nc: Client, timeout: float = 1.0) -> None:
    await command(nc, "status", timeout)


async def timed(action) -> float:
    started = time.perf_counter()
    await action()
    return (time.perf_counter() - started) * 1000


async def baseline(nc: Client, js: JetStreamContext, samples: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"status": [], "command": [], "write": []}
    for n in range(samples):
        figures["status"].append(await timed(lambda: status(nc)))
        figures["write"].append(await timed(lambda n=n: write(js, n)))
        if n < samples // 4:  # a command is three acked writes: fewer samples will do
            verb = "stop" if n % 2 == 0 else "start"
            figures["command"].append(await timed(lambda verb=verb: command(nc, verb, 10)))
    if len(figures["command"]) % 2:
        await command(nc, "start", 10)  # leave it running
    return figures


async def stream_leader(js: JetStreamContext, stream: str) -> str | None:
    info = await js.stream_info(stream)
    return info.cluster.leader if info.cluster else None


async def move_leader(nc: Client, stream: str, to: str, timeout: float = 60.0) -> None:
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await stream_leader(js, stream) == to:
            return
        request = json.dumps({"placement": {"preferred": to}}).encode()
        with contextlib.suppress(Exception):  # a step-down in progress: ask again
            await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", request, timeout=5)
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{stream} would not move its leader to {to}")


async def whole(js: JetStreamContext, size: int) -> bool:
    """Every stream has a leader and all its replicas current."""
    infos = await js.streams_info()
    for info in infos:
        replicas = info.cluster.replicas or [] if info.cluster else []
        if not info.cluster or not info.cluster.leader or len(replicas) != size - 1:
            return False
        if not all(peer.current and not peer.lag for peer in replicas):
            return False
    return bool(infos)


async def until(probe, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await probe():
                return
        except Exception:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"not {what} within {timeout:g}s")


async def recovery_after_kill(cluster: NatsCluster, victim: str, verb: str, n: int) -> dict[str, float]:
    """Kill ``victim``; ms until status, a command and a write succeed again."""
    survivors = [node.url for node in cluster.nodes if node.server_name != victim]
    nc = await connect(survivors)  # the operator's side stays connected: not part of the figure
    js = nc.jetstream()
    try:
        killed = time.perf_counter()
        cluster.node(victim).kill()

        async def status_back() -> float:
            while True:
                try:
                    await status(nc, timeout=0.25)
                    return (time.perf_counter() - killed) * 1000
                except Exception:
                    await asyncio.sleep(0.02)

        async def command_back() -> float:
            # sent at once and waited for (the engine retries its writes for up to 10 s);
            # sent again, as an operator would, while no instance answers at all (its
            # node died with it connected, or the request went to the dead node)
            while True:
                try:
                    await command(nc, verb, timeout=10)
                    return (time.perf_counter() - killed) * 1000
                except nats.errors.NoRespondersError:
                    await asyncio.sleep(0.02)
                except nats.errors.TimeoutError:
                    print(f"  {verb} unanswered for 10 s after killing {victim}; sending it again")

        async def write_back() -> float:
            await write(js, 10_000 + n)
            return (time.perf_counter() - killed) * 1000

        figures = await asyncio.gather(status_back(), command_back(), write_back())
        return dict(zip(("status", "command", "write"), figures, strict=True))
    finally:
        await nc.close()


INSTANCES = ("deploy-a", "deploy-b")


async def active_instance(nc: Client, timeout: float = 1.0) -> str | None:
    reply = json.loads((await nc.request(f"aoc.ctl.{ENGINE}.status", b"", timeout=timeout)).data)
    result = reply.get("result") or {}
    return result.get("instance") if result.get("role") == "active" else None


async def desired_state(js: JetStreamContext) -> str:
    stored = await js.get_last_msg(subjects.EVENTS_STREAM, subjects.evt(ENGINE, "lifecycle_changed"))
    return json.loads(stored.data)["data"]["desired"]


async def takeover_rounds(
    nc: Client, js: JetStreamContext, children: Children, env: dict[str, str], rounds: int
) -> tuple[list[dict[str, float]], int]:
    """Kill the active instance ``rounds`` times; per round, ms from the kill until the
    standby answers as active and until the command sent at the kill is answered."""
    for name in INSTANCES:
        children.spawn(name, f"services.{ENGINE}", {**env, "AOC_INSTANCE_ID": name})
    await until(lambda: _known(active_instance(nc)), READY_S, "an active deploy instance")
    figures: list[dict[str, float]] = []
    lost = 0
    for n in range(rounds):
        victim = await active_instance(nc)
        assert victim is not None
        survivor = next(name for name in INSTANCES if name != victim)
        await until(lambda s=survivor: _beating(js, s), 60, f"{survivor} beating as a standby")
        verb = "stop" if n % 2 == 0 else "start"
        body = json.dumps({"reason": "failover bench", "command_id": f"takeover-{n}-{time.time_ns()}"})
        killed = time.perf_counter()
        children.procs[victim].kill()

        async def takeover(survivor: str = survivor, killed: float = killed) -> float:
            while True:
                with contextlib.suppress(Exception):
                    if await active_instance(nc, timeout=0.25) == survivor:
                        return (time.perf_counter() - killed) * 1000
                await asyncio.sleep(0.02)

        async def answered(verb: str = verb, body: str = body, killed: float = killed) -> float | None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    msg = await nc.request(f"aoc.ctl.{ENGINE}.{verb}", body.encode(), timeout=0.5)
                except Exception:
                    continue  # no instance answered (yet): send it again, same id
                reply = json.loads(msg.data)
                if reply.get("ok"):
                    return (time.perf_counter() - killed) * 1000
                await asyncio.sleep(0.1)  # refused while the survivor comes up: ask again
            return None

        took, done = await asyncio.gather(takeover(), answered())
        expected = "stopped" if verb == "stop" else "running"
        if done is None or await desired_state(js) != expected:
            lost += 1
        figures.append({"takeover": took, "command": done if done is not None else float("nan")})
        children.procs[victim].wait()
        children.spawn(victim, f"services.{ENGINE}", {**env, "AOC_INSTANCE_ID": victim})
    return figures, lost


async def _known(awaitable) -> bool:
    return bool(await awaitable)


async def _beating(js: JetStreamContext, instance: str) -> bool:
    """The instance's standby heartbeat is fresh (it is up and would take over)."""
    stored = await js.get_last_msg(subjects.HEARTBEATS_STREAM, subjects.hb(ENGINE, instance))
    return stored.time is not None and time.time() - stored.time.timestamp() < 3.0


async def main(args: argparse.Namespace) -> None:
    # the publish retries during an election are the point, not news: keep errors only
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    print(f"machine: {machine_facts()}; load {load_average()}")
    with nats_cluster(args.sync, keep=args.keep) as (cluster, workdir), Children(workdir) as children:
        settings = Settings(nats_url=cluster.url, stream_replicas=3)
        nc = await connect(cluster.servers)
        js = nc.jetstream()
        await ensure_all(js, settings)
        n1 = cluster.nodes[0]
        env = child_env(n1.url, workdir / "data", AOC_STREAM_REPLICAS="3", **args.env)
        children.spawn(ENGINE, f"services.{ENGINE}", env)
        await until(lambda: _ok(status(nc)), READY_S, f"{ENGINE} answering")

        with ForeignCpu() as foreign:
            base = await baseline(nc, js, args.samples)
            rounds: dict[str, list[dict[str, float]]] = {"leader": [], "node": []}
            for n in range(args.kills):
                fault = "leader" if n % 2 == 0 else "node"
                if fault == "node":
                    await move_leader(nc, subjects.EVENTS_STREAM, n1.server_name)
                    victim = n1.server_name
                else:
                    others = [node.server_name for node in cluster.nodes[1:]]
                    await move_leader(nc, subjects.EVENTS_STREAM, others[n // 2 % len(others)])
                    victim = await stream_leader(js, subjects.EVENTS_STREAM)
                verb = "stop" if n % 2 == 0 else "start"
                rounds[fault].append(await recovery_after_kill(cluster, victim, verb, n))
                cluster.start_node(victim)
                await until(lambda: whole(js, len(cluster.nodes)), 120, "every replica current again")
                await until(lambda: _ok(status(nc)), 60, f"{ENGINE} answering")
            takeovers, lost = [], 0
            if args.takeovers:
                children.procs.pop(ENGINE).terminate()  # now as two instances
                takeovers, lost = await takeover_rounds(nc, js, children, env, args.takeovers)
        await nc.close()
        report(args, base, rounds, foreign)
        report_takeovers(takeovers, lost, float(env.get("AOC_LEASE_TTL", Settings().lease_ttl)))


async def _ok(awaitable) -> bool:
    await awaitable
    return True


def report(args, base: dict[str, list[float]], rounds: dict[str, list[dict[str, float]]], foreign) -> None:
    print(
        f"\n3-node cluster, R3, sync_interval={args.sync}; "
        f"{args.samples} baseline samples, {args.kills} kills"
    )
    rows = []
    for what in ("status", "command", "write"):
        rows.append(
            [
                f"{what} (healthy)",
                f"{percentile(base[what], 50):.1f}",
                f"{percentile(base[what], 99):.1f}",
                "",
                "",
            ]
        )
    for fault, samples in rounds.items():
        for what in ("status", "command", "write"):
            values = [sample[what] for sample in samples]
            if not values:
                continue
            ratio = percentile(values, 50) / max(percentile(base[what], 50), 0.001)
            rows.append(
                [
                    f"{what} after {fault} kill",
                    f"{percentile(values, 50):.0f}",
                    f"{percentile(values, 99):.0f}",
                    f"{max(values):.0f}",
                    f"x{ratio:,.0f}",
                ]
            )
    print_table(["what", "p50 ms", "p99 ms", "max ms", "p50 vs healthy"], rows)
    print(f"during the run: {foreign}; load {load_average()}")


def report_takeovers(figures: list[dict[str, float]], lost: int, ttl: float) -> None:
    if not figures:
        return
    took = [f["takeover"] for f in figures]
    answered = [f["command"] for f in figures if f["command"] == f["command"]]  # not NaN
    print(f"\nlease takeovers: {len(figures)} kills of the active instance, lease TTL {ttl:g} s")
    rows = [
        ["takeover (kill -> the standby answers as active)", f"{percentile(took, 50):.0f}",
         f"{percentile(took, 99):.0f}", f"{max(took):.0f}", f"{ttl * 1000 + 1000:.0f}"],
    ]  # fmt: skip
    if answered:
        rows.append(
            ["command sent at the kill, answered", f"{percentile(answered, 50):.0f}",
             f"{percentile(answered, 99):.0f}", f"{max(answered):.0f}", ""]
        )  # fmt: skip
    print_table(["what", "p50 ms", "p99 ms", "max ms", "target p99 (TTL + 1 s)"], rows)
    verdict_text = "PASS" if percentile(took, 99) <= ttl * 1000 + 1000 else "MISS"
    print(f"takeover p99 vs TTL + 1 s: {verdict_text}; commands lost: {lost} (must be 0)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=6, help="node kills, alternating leader / engine's node")
    parser.add_argument(
        "--samples", type=int, default=200, help="baseline round trips on the healthy cluster"
    )
    parser.add_argument("--sync", default="always", help="nats-server sync_interval")
    parser.add_argument("--takeovers", type=int, default=20, help="kills of the active instance (0: none)")
    add_stack_options(parser)
    run_stack_benchmark(main, parse_stack_args(parser))
