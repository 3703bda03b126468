"""Container health probe: ``python -m services.runtime.healthcheck <slug|gateway>``.

An engine is healthy when *its own instance* answers a NATS micro PING: the probe asks
``$SRV.PING.aoc-<slug>``, picks the reply of the process it belongs to (micro metadata
``instance`` = this ``AOC_INSTANCE_ID``, else ``host`` = this host name: one engine per
container), and pings that instance on ``$SRV.PING.aoc-<slug>.<id>``. With two replicas
of an engine, another replica's answer must not make a dead one look healthy. That
proves the process is alive *and* on the bus; an engine an operator stopped still
answers, so Docker never restarts a deliberate stop. ``NATS_URL`` may list a cluster's
servers. The gateway is healthy when ``GET /health`` answers 200. Exit 0 healthy, else 1
with one line on stderr — the contract of a compose/Dockerfile HEALTHCHECK.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import time
import urllib.request
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoServersError
from nats.micro.service import ServiceVerb, control_subject

from contracts.settings import Settings
from contracts.systems import SYSTEMS
from services.runtime.bus import connect_options

GATEWAY = "gateway"
TIMEOUT = 2.0
HOST_MATCH_GRACE = 0.3


def parse_args(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m services.runtime.healthcheck")
    parser.add_argument("target", choices=[*SYSTEMS, GATEWAY], help="engine slug, or 'gateway'")
    return parser.parse_args(argv).target


async def ping_engine(settings: Settings, slug: str) -> None:
    errors: list[Exception] = []

    async def keep_error(exc: Exception) -> None:  # the default callback prints tracebacks
        errors.append(exc)

    try:  # two tries per server at most, no reconnects: a probe must fail fast
        nc = await nats.connect(
            **connect_options(settings, slug),  # the engine's own user on the secure server
            name=f"healthcheck-{slug}",
            connect_timeout=TIMEOUT,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            error_cb=keep_error,
        )
    except NoServersError:
        why = errors[-1] if errors else "no server"
        raise ConnectionError(f"cannot reach NATS at {settings.effective_nats_url}: {why}") from None
    try:
        own = await find_own_instance(nc, settings, slug)
        # the instance's own subject: only that process answers it
        await nc.request(control_subject(ServiceVerb.PING, f"aoc-{slug}", own["id"]), b"", timeout=TIMEOUT)
    finally:
        await nc.close()


def is_own(reply: dict[str, Any], instance_id: str | None, host: str) -> str | None:
    """'instance' / 'host' when ``reply`` is from this probe's process, else None.
    ``instance_id`` None: no AOC_INSTANCE_ID was given, so the host name decides."""
    metadata = reply.get("metadata") or {}
    if instance_id is not None:
        return "instance" if metadata.get("instance") == instance_id else None
    return "host" if metadata.get("host") == host else None


async def find_own_instance(nc: Client, settings: Settings, slug: str) -> dict[str, Any]:
    """The PING reply of this container's (or this AOC_INSTANCE_ID's) instance of ``slug``."""
    host = socket.gethostname()
    # an explicit id names one process; the default (<host>-<pid>) is this probe's own pid
    instance_id = settings.instance_id if os.environ.get("AOC_INSTANCE_ID") else None
    replies: list[dict[str, Any]] = []
    exact = asyncio.Event()  # the reply of this AOC_INSTANCE_ID: no need to wait for more
    same_host = asyncio.Event()

    async def pong(msg: Msg) -> None:
        with contextlib.suppress(ValueError, TypeError):
            reply = json.loads(msg.data)
            if isinstance(reply, dict) and "id" in reply:
                replies.append(reply)
                match = is_own(reply, instance_id, host)
                if match == "instance":
                    exact.set()
                elif match == "host":
                    same_host.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=pong)
    await nc.publish(control_subject(ServiceVerb.PING, f"aoc-{slug}"), b"", reply=inbox)
    started = time.monotonic()
    waiters = [asyncio.ensure_future(exact.wait()), asyncio.ensure_future(same_host.wait())]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(TIMEOUT):
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if not exact.is_set():  # matched by host: a moment more to see whether it is the only one
                await asyncio.sleep(HOST_MATCH_GRACE)
    for waiter in waiters:
        waiter.cancel()
    await sub.unsubscribe()
    by_instance = [r for r in replies if is_own(r, instance_id, host) == "instance"]
    if by_instance:
        return by_instance[0]
    by_host = [r for r in replies if is_own(r, instance_id, host) == "host"]
    if len(by_host) == 1:
        return by_host[0]
    if len(by_host) > 1:
        raise LookupError(
            f"{len(by_host)} instances of aoc-{slug} run on host {host}; "
            "set AOC_INSTANCE_ID to tell them apart"
        )
    waited = time.monotonic() - started
    others = ", ".join(sorted(str((r.get("metadata") or {}).get("instance", r["id"])) for r in replies))
    which = f"instance {instance_id}" if instance_id else f"any instance on host {host}"
    raise LookupError(
        f"no $SRV.PING reply from {which} of aoc-{slug} within {waited:.1f}s"
        + (f"; other instances answered: {others}" if others else "")
    )


def get_gateway_health(settings: Settings) -> None:
    # urlopen raises HTTPError on 4xx/5xx, so reaching the check means 2xx/3xx
    url = f"http://127.0.0.1:{settings.http_port}/health"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered {response.status}")


def main(argv: list[str] | None = None) -> int:
    target = parse_args(argv)
    try:
        settings = Settings()
        if target == GATEWAY:
            get_gateway_health(settings)
        else:
            asyncio.run(asyncio.wait_for(ping_engine(settings, target), 3 * TIMEOUT + 1))
    except Exception as exc:
        reason = " ".join(str(exc).split())  # one line, even for a multi-line validation error
        print(f"unhealthy: {target}: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
