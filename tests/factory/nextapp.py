"""Helpers for the tests (and the bench) that build and serve a real Next.js app:
a release built by the deploy engine's own builder, ``next start`` on a free port, and
Debian's Chromium driven by Playwright (the flags of tests/browser/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from contracts.factory import tree_digest
from services.deploy.build import BuildOutcome, ReleaseBuilder
from services.deploy.releases import ReleaseStore, new_release_id
from services.launcher.natsserver import free_port
from services.shared.frontend_kit.files import scan_tree
from tests.browser.conftest import CHROMIUM, FLAGS, _chromium_present, _missing
from tests.factory.toolchain import NODE_ENV, ensure_toolchain


async def build_release(frontend: Path, releases: Path, *, timeout: float = 600) -> tuple[BuildOutcome, Path]:
    """Snapshot ``frontend`` as a release and build it exactly as the deploy engine
    does (its ReleaseBuilder), with the test toolchain as node_modules."""
    store = ReleaseStore(releases)
    files = await asyncio.to_thread(scan_tree, frontend)
    release = await asyncio.to_thread(
        store.build,
        frontend,
        new_release_id(tree_digest(files)),
        previous=None,
        info={"triggered_by": ["test"]},
    )
    builder = ReleaseBuilder(releases, node_modules=ensure_toolchain(), timeout=timeout)
    return await builder.build(release), release.path


@contextlib.asynccontextmanager
async def next_server(app: Path, api_url: str) -> AsyncIterator[str]:
    """``next start`` of a built app, forwarding /api to ``api_url``; yields its URL."""
    port = free_port()
    env = {**os.environ, **NODE_ENV, "AOC_API_URL": api_url, "PORT": str(port)}
    log = (app / "next-start.log").open("wb")
    process = subprocess.Popen(
        ["node", str(app / "node_modules/next/dist/bin/next"), "start", "-H", "127.0.0.1", "-p", str(port)],
        cwd=app,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(300):  # up to ~30 s on a loaded box
                if process.poll() is not None:
                    raise AssertionError(f"next start exited: {(app / 'next-start.log').read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url + "/")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("next start did not answer within 30 s")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait, 10)
        log.close()


@contextlib.asynccontextmanager
async def chromium():
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed: make test installs it (.[test])")
    if not _chromium_present():
        _missing(f"no Chromium at {CHROMIUM}: run scripts/ensure-chromium.sh (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


def nvd_feed(count: int) -> dict:
    """An NVD CVE JSON 2.0 document of ``count`` CVEs with CVSS scores from 2.0 to 9.8,
    so advisory-refresh synthesizes advisories of every priority."""
    vulnerabilities = []
    for index in range(count):
        score = round(2.0 + index * 7.8 / max(count - 1, 1), 1)
        severity = "CRITICAL" if score >= 9 else "HIGH" if score >= 7 else "MEDIUM" if score >= 4 else "LOW"
        product = "Zebra Gateway" if index == 17 else f"Acme Widget {index:02d}"
        vulnerabilities.append(
            {
                "cve": {
                    "id": f"CVE-2031-{1000 + index}",
                    "sourceIdentifier": "test@example.org",
                    "published": "2031-01-02T03:04:05.000",
                    "lastModified": "2031-01-03T03:04:05.000",
                    "vulnStatus": "Analyzed",
                    "descriptions": [
                        {"lang": "en", "value": f"{product} allows remote attackers to run code. More text."}
                    ],
                    "metrics": {
                        "cvssMetricV31": [
                            {
                                "source": "nvd@nist.gov",
                                "type": "Primary",
                                "cvssData": {"version": "3.1", "baseScore": score, "baseSeverity": severity},
                            }
                        ]
                    },
                    "references": [],
                }
            }
        )
    return {
        "resultsPerPage": count,
        "startIndex": 0,
        "totalResults": count,
        "format": "NVD_CVE",
        "version": "2.0",
        "timestamp": "2031-01-03T04:00:00.000",
        "vulnerabilities": vulnerabilities,
    }


def write_feeds(directory: Path, count: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "nvd.json").write_text(json.dumps(nvd_feed(count)))
    feeds = {
        "allowed_hosts": [],
        "feeds": [{"name": "nvd-test", "format": "nvd_cve", "path": "nvd.json", "schedule_seconds": 3600}],
    }
    (directory / "feeds.json").write_text(json.dumps(feeds))
    return directory / "feeds.json"


def require_node() -> None:
    if subprocess.run(["node", "--version"], capture_output=True, check=False).returncode != 0:
        pytest.fail("node is not installed: next build cannot run")
