"""Browser fixtures: Playwright for Python driving Debian's Chromium (DESIGN.md §7).

One browser and one real stack (a nats-server, the seven engines in-process and the
gateway on a free port) per session; every test gets a fresh browser context (no shared
storage, cookies or cache) and starts with all seven systems running. Sharing the
stack keeps the suite well inside its time budget; tests leave the systems as they
found them, and ``all_systems_running`` puts them back if a test failed half-way.

Playwright never downloads a browser here. Without Chromium the browser tests skip
with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from contracts.settings import Settings
from services.launcher.natsserver import NatsServer
from services.runtime.testing import connect_plain, running_engines
from tests.conftest import FAST, api_client, serve_gateway

CHROMIUM = os.environ.get("AOC_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN_KEY = "aoc.token"  # gateway/static/js/api.js keeps the bearer token here
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _chromium_present() -> bool:
    return Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)


def _missing(reason: str):
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: the browser suite must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
async def browser():
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed: make test installs it (.[test])")
    if not _chromium_present():
        _missing(f"no Chromium at {CHROMIUM}: run scripts/ensure-chromium.sh (apt-get install chromium)")
    from playwright.async_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield chromium
        await chromium.close()


@dataclass
class Stack:
    url: str
    nats_url: str


@pytest.fixture(scope="session")
async def stack(browser, tmp_path_factory):
    """nats-server + seven engines + the gateway, shared by the browser tests."""
    tmp = tmp_path_factory.mktemp("browser-stack")
    server = NatsServer(tmp / "nats").start()
    # heartbeats a little slower than FAST: pages stay open for seconds on a busy CI box
    # and must not see an engine flicker to "unreachable"
    liveness = {**FAST, "heartbeat_interval": 0.5, "heartbeat_timeout": 3.0}
    # the factory's queue pass would generate submitted requirements by itself: the
    # browser tests click Generate, so the pass waits an hour
    schedules = {"frontend-factory.queue": 3600}
    # one admin clicks through every browser test on this one gateway: the per-identity
    # rate limit (tested in tests/security) would otherwise cut the later tests short
    limits = {"rate_limit_burst": 10_000, "rate_limit_per_minute": 10_000.0}
    settings = Settings(nats_url=server.url, data_dir=tmp / "data", schedules=schedules, **liveness, **limits)
    try:
        async with running_engines(settings), serve_gateway(settings) as url:
            yield Stack(url, server.url)
    finally:
        server.stop()


@pytest.fixture
async def nc(stack: Stack):
    """A bare NATS connection to the shared stack's server (like the `nats` CLI)."""
    conn = await connect_plain(stack.nats_url)
    yield conn
    await conn.close()


@pytest.fixture
async def http(stack: Stack, api_headers: dict[str, str]):
    async with api_client(stack.url, api_headers) as client:
        yield client


@pytest.fixture
async def all_systems_running(stack: Stack, api_headers: dict[str, str]):
    """Every test starts with the seven systems running, whatever the last one did."""
    import asyncio

    async with api_client(stack.url, api_headers) as client:
        for _ in range(100):
            board = (await client.get("/api/v1/admin/dashboard")).json()
            down = [s for s, v in board["systems"].items() if v["state"] != "running"]
            if not down:
                break
            if any(board["systems"][s]["state"] == "stopped" for s in down):
                await client.post("/api/v1/admin/start-all", json={"reason": "browser test setup"})
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"systems not running before the test: {down}")
    yield


@dataclass
class Tab:
    """A page plus what it must not do: throw, break the CSP, or open a JS dialog."""

    page: object
    base_url: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def open(self, path: str):
        response = await self.page.goto(self.base_url + path)
        assert response is not None and response.ok, f"GET {path}: {response and response.status}"
        return response


def bearer_token(headers: dict[str, str]) -> str | None:
    """The token in the test suite's API headers (None while the gateway runs without auth)."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or not token.strip():
        return None
    return token.strip()


async def _tab(browser, base_url: str, viewport: dict[str, int], token: str | None):
    context = await browser.new_context(viewport=viewport, accept_downloads=True)
    if token:
        # signed in the way the page signs in: the token in this tab's sessionStorage
        await context.add_init_script(f"sessionStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(token)})")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    tab = Tab(page, base_url)
    page.on("pageerror", lambda error: tab.errors.append(f"pageerror: {error}"))

    def on_console(message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            tab.errors.append(f"CSP: {message.text}")

    async def on_dialog(dialog) -> None:
        tab.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    page.on("console", on_console)
    page.on("dialog", on_dialog)
    return context, tab


@pytest.fixture
async def tab(browser, stack: Stack, api_headers: dict[str, str], all_systems_running):
    """A fresh browser context at desktop width, signed in with the suite's credentials."""
    context, tab = await _tab(browser, stack.url, DESKTOP, bearer_token(api_headers))
    yield tab
    await context.close()
    assert not tab.errors, tab.errors
    assert not tab.dialogs, tab.dialogs


@pytest.fixture
async def phone_tab(browser, stack: Stack, api_headers: dict[str, str], all_systems_running):
    """The same at a phone's width."""
    context, tab = await _tab(browser, stack.url, PHONE, bearer_token(api_headers))
    yield tab
    await context.close()
    assert not tab.errors, tab.errors


@pytest.fixture
async def signed_out_tab(browser, stack: Stack, all_systems_running):
    """A fresh context with no token stored: what a new visitor sees."""
    context, tab = await _tab(browser, stack.url, DESKTOP, None)
    yield tab
    await context.close()
    assert not tab.errors, tab.errors
