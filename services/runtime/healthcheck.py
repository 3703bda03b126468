"""Container health probe: ``python -m services.runtime.healthcheck <slug|gateway>``.

An engine is healthy when it answers a NATS micro PING on its service name ``aoc-<slug>``
(what ``nats micro ping aoc-<slug>`` does). That proves the process is alive *and* on the
bus; an engine an operator stopped still answers, so Docker never restarts a deliberate
stop. The gateway is healthy when ``GET /health`` answers 200. Exit 0 healthy, else 1 with
one line on stderr — the contract of a compose/Dockerfile HEALTHCHECK.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.request

import nats
from nats.errors import NoServersError
from nats.micro.service import ServiceVerb, control_subject

from contracts.settings import Settings
from contracts.systems import SYSTEMS
from services.runtime.bus import connect_options

GATEWAY = "gateway"
TIMEOUT = 2.0


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
    try:  # only the service of that name answers this subject: any reply is a pong
        await nc.request(control_subject(ServiceVerb.PING, f"aoc-{slug}"), b"", timeout=TIMEOUT)
    finally:
        await nc.close()


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
            asyncio.run(asyncio.wait_for(ping_engine(settings, target), 2 * TIMEOUT + 1))
    except Exception as exc:
        reason = " ".join(str(exc).split())  # one line, even for a multi-line validation error
        print(f"unhealthy: {target}: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
