"""NATS micro discovery as an operator meets it (issue 13 §5), under `aoc up` itself.

The bug: right after `aoc up` printed "AOC is up", `nats micro ls` listed 5 of 7 engines.
The engines that load scikit-learn (soc-cycle, ml-retrain) register seconds after the
others, and the launcher announced the stack once the *gateway* was healthy. natscli
stops collecting 300 ms after the last reply, so a late registrant is simply not listed,
and `nats micro info aoc-soc-cycle` answers "no micro instances found". The launcher now
says "AOC is up" once every engine instance answers discovery. These tests ask, the
moment it says so, what natscli asks, as the operator user of the secure embedded server,
and check every reply against natscli's schemas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import psutil
import pytest

from contracts.systems import SYSTEMS
from services.launcher.natsserver import free_port
from tests.cluster.conftest import ROOT, eventually
from tests.cluster.micro_client import collect, schema_errors
from tests.conftest import ADMIN_TOKEN

UP_TIMEOUT = 150.0
VERBS = ("PING", "INFO", "STATS")


def free_port_block(size: int) -> int:
    """A base port with ``size`` free consecutive ports (the cluster's +1, +2 layout)."""
    start = random.randrange(20000, 60000)
    for base in range(start, 65000 - size, 7):
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + size):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no block of free ports")


class Up:
    """`aoc up` as a child process; ``announced`` waits for its "AOC is up" line."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.env = env
        self.data_dir = data_dir
        self.process: asyncio.subprocess.Process | None = None
        self.stderr_file = data_dir.parent / "up.err"

    async def start(self) -> Up:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.stderr_file, "wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.launcher", "up",
                env=self.env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=err,
            )  # fmt: skip
        return self

    async def announced(self, timeout: float = UP_TIMEOUT) -> str:
        assert self.process is not None and self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.process.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"aoc up ended before it was up: {self.stderr()}")
                if line.startswith("AOC is up"):
                    return line

    def nats_pid(self, server_name: str) -> int:
        """The pid of the launcher's nats-server child named ``server_name``."""
        assert self.process is not None
        for child in psutil.Process(self.process.pid).children():
            with contextlib.suppress(psutil.Error):
                if any(arg.endswith(f"/{server_name}/nats-server.conf") for arg in child.cmdline()):
                    return child.pid
        raise LookupError(server_name)

    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        tree = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 40)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        for child in tree:  # nothing outlives the test
            with contextlib.suppress(psutil.Error):
                child.kill()


def up_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOC_") and k != "NATS_URL"}
    env.update(
        AOC_DATA_DIR=str(tmp_path / "aoc"),
        AOC_NATS_PORT=str(free_port_block(1)),
        AOC_HTTP_PORT=str(free_port()),
        AOC_ADMIN_TOKEN=ADMIN_TOKEN,
        AOC_HEARTBEAT_INTERVAL="0.5",
    )
    return {**env, **extra}


@contextlib.asynccontextmanager
async def launched(env: dict[str, str], tmp_path: Path) -> AsyncIterator[Up]:
    up = await Up(env, tmp_path / "aoc").start()
    try:
        yield up
    finally:
        await up.stop()


async def operator_connection(data_dir: Path) -> nats.aio.client.Client:
    """As the stock `nats` CLI would connect: the operator user, the default _INBOX."""
    record = json.loads((data_dir / "nats" / "credentials" / "operator.json").read_text())
    return await nats.connect(servers=record["url"].split(","), user="operator", password=record["password"])


def check_schema(verb: str, replies: list[dict]) -> None:
    for reply in replies:
        assert schema_errors(verb, reply) == [], (verb, reply.get("name"), schema_errors(verb, reply))


async def run_probe(env: dict[str, str], slug: str, instance_id: str | None = None) -> tuple[int, str]:
    probe_env = {k: v for k, v in env.items() if k != "AOC_INSTANCE_ID"}
    if instance_id:
        probe_env["AOC_INSTANCE_ID"] = instance_id
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.runtime.healthcheck", slug,
        env=probe_env, cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, stderr.decode()


async def probe_with_retries(
    env: dict[str, str], slug: str, instance_id: str | None = None, retries: int = 3
) -> tuple[int, str]:
    """The probe as a container runtime runs it: unhealthy only after ``retries`` failures
    in a row."""
    for _ in range(retries):
        code, why = await run_probe(env, slug, instance_id)
        if code == 0:
            return code, why
    return code, why


@pytest.mark.timeout(240)
async def test_every_engine_is_discoverable_the_moment_aoc_up_says_it_is_up(tmp_path: Path):
    env = up_env(tmp_path)
    async with launched(env, tmp_path) as up:
        await up.announced()
        nc = await operator_connection(up.data_dir)
        try:
            # `nats micro ls` and `nats micro stats`: adaptive collection, schema checked
            listed = {verb: await collect(nc, f"$SRV.{verb}") for verb in ("INFO", "STATS")}
            listed["PING"] = await collect(nc, "$SRV.PING", timeout=2.0, adaptive=False)  # `nats micro ping`
            for verb, replies in listed.items():
                assert sorted(r["name"] for r in replies) == sorted(f"aoc-{slug}" for slug in SYSTEMS), verb
                check_schema(verb, replies)
            ids = {r["name"]: r["id"] for r in listed["INFO"]}
            # `nats micro info aoc-<slug>` and the per-instance subjects, for all seven
            for slug in SYSTEMS:
                name = f"aoc-{slug}"
                for verb in VERBS:
                    for subject in (f"$SRV.{verb}.{name}", f"$SRV.{verb}.{name}.{ids[name]}"):
                        replies = await collect(nc, subject, timeout=2.0, expect=1)
                        await asyncio.sleep(0.05)  # a second instance answering would be late, not absent
                        assert [r["id"] for r in replies] == [ids[name]], subject
                        check_schema(verb, replies)
                metadata = next(r for r in listed["INFO"] if r["name"] == name)["metadata"]
                assert metadata["system"] == slug and metadata["instance"] == f"{slug}-1"
        finally:
            await nc.close()
        # the container probe of one engine pings its own instance
        assert await probe_with_retries(env, "soc-cycle") == (0, "")  # by host name: no AOC_INSTANCE_ID given


@pytest.mark.timeout(420)
async def test_aoc_up_with_a_3_node_cluster_and_two_instances_of_every_engine(tmp_path: Path):
    client_base = free_port_block(6)
    route_base = client_base + 3
    env = up_env(
        tmp_path,
        AOC_NATS_CLUSTER="3",
        AOC_INSTANCES="2",
        AOC_NATS_PORT=str(client_base),
        AOC_NATS_ROUTE_PORT=str(route_base),
    )
    nats_url = ",".join(f"nats://127.0.0.1:{client_base + n}" for n in range(3))
    async with launched(env, tmp_path) as up:
        await up.announced()
        logs = up.data_dir / "logs"
        assert {f"{slug}-{n}.log" for slug in SYSTEMS for n in (1, 2)} <= {p.name for p in logs.iterdir()}
        assert {f"nats-aoc-n{n}.log" for n in (1, 2, 3)} <= {p.name for p in logs.iterdir()}

        nc = await operator_connection(up.data_dir)
        try:
            infos = await collect(nc, "$SRV.INFO")
            check_schema("INFO", infos)
            assert Counter(r["name"] for r in infos) == {f"aoc-{slug}": 2 for slug in SYSTEMS}
            instances = {(r["name"], r["metadata"]["instance"]) for r in infos}
            assert instances == {(f"aoc-{slug}", f"{slug}-{n}") for slug in SYSTEMS for n in (1, 2)}
            for reply in infos:  # each instance answers under its own micro id, and only it
                for _ in range(3):  # `nats micro ping` waits 2 s: a busy start (the bootstrap
                    # training, fourteen engines on two cores) can miss one, not three
                    answered = await collect(nc, f"$SRV.PING.{reply['name']}.{reply['id']}", timeout=2.0)
                    if answered:
                        break
                assert [(r["id"], r["metadata"]["instance"]) for r in answered] == [
                    (reply["id"], reply["metadata"]["instance"])
                ]
        finally:
            await nc.close()

        probe_env = {**env, "NATS_URL": nats_url}
        # as Docker judges it (compose's `retries: 3`): fourteen engines on two cores can
        # keep one from answering a single 2 s ping, never three in a row
        assert await probe_with_retries(probe_env, "soc-cycle", "soc-cycle-2") == (0, "")
        code, why = await run_probe(probe_env, "soc-cycle", "soc-cycle-7")
        assert code == 1 and "no $SRV.PING reply from instance soc-cycle-7" in why, why

        base = f"http://127.0.0.1:{env['AOC_HTTP_PORT']}"
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:

            async def cluster_healthy() -> dict | None:
                details = (await http.get("/health/details")).json()["nats"]
                names = {server["name"]: server["reachable"] for server in details["servers"]}
                streams = details["streams"]
                whole = all(s["replicas"] == 3 and s["leader"] and s["healthy"] for s in streams)
                good = names == {"aoc-n1": True, "aoc-n2": True, "aoc-n3": True} and whole
                return details if good and streams else None

            details = await eventually(cluster_healthy, 60, "3 reachable servers and R3 streams")
            stream_names = {s["name"] for s in details["streams"]}
            core = {"AOC_EVENTS", "AOC_HEARTBEATS", "AOC_AUDIT", "KV_aoc_leases", "KV_aoc_command_ids"}
            assert core <= stream_names
            assert {"AOC_ALERTS", "AOC_FEEDBACK", "OBJ_aoc_models"} <= stream_names  # SOC and ML stores too
            metrics = (await http.get("/api/v1/admin/metrics")).json()
            assert {s["name"] for s in metrics["nats"]["servers"]} == {"aoc-n1", "aoc-n2", "aoc-n3"}

            # the supervisor watches every member: kill -9 the events leader, it comes back
            leader = next(s["leader"] for s in details["streams"] if s["name"] == "AOC_EVENTS")
            os.kill(up.nats_pid(leader), signal.SIGKILL)
            await eventually(
                lambda: asyncio.sleep(0, f"nats-server {leader} exited with signal SIGKILL" in up.stderr()),
                30,
                "the launcher to notice the dead member",
            )
            await eventually(cluster_healthy, 90, f"{leader} to rejoin and every stream to be whole")
            assert (await http.get("/api/v1/admin/dashboard")).status_code == 200
