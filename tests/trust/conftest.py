"""Fixtures for the trust tests (issue 11): callers of every role, the secure server,
engines as real processes, and helpers to wait for what the stream says."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.systems import SYSTEMS
from tests.browser.conftest import browser
from tests.security.conftest import bearer, callers, secure_nats, secure_settings


async def until(condition: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition", step=None):
    """Poll ``condition`` (running the async ``step`` between polls) until it holds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                if step is not None:
                    await step()
                value = condition()
                if value:
                    return value
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}") from None


def spawn_engine(slug: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """One engine as its own process, as `aoc up` or compose runs it."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{SYSTEMS[slug].module}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


async def answering(nc, slug: str, timeout: float = 30.0) -> dict:
    """Wait until an engine answers status; returns its reply."""
    from contracts.commands import reply_decoder

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with contextlib.suppress(Exception):
            msg = await nc.request(f"aoc.ctl.{slug}.status", b"", timeout=0.5)
            reply = reply_decoder.decode(msg.data)
            if reply.ok and reply.state == "running":
                return reply.result or {}
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{slug} never answered status")
        await asyncio.sleep(0.1)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


__all__ = [
    "answering",
    "bearer",
    "browser",
    "callers",
    "secure_nats",
    "secure_settings",
    "spawn_engine",
    "until",
]
