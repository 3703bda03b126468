"""Fixtures for advisory-refresh: the shipped samples, feed files written per test, a
local HTTP feed server, and the engine run in-process with a given configuration."""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from contracts.settings import Settings
from services.advisory.config import DATA_DIR, AdvisorySettings
from services.advisory.engine import AdvisoryEngine
from services.runtime.host import EngineHost

SAMPLES = DATA_DIR / "samples"
SAMPLE_FILES = {
    "cisa_kev": "cisa_kev.json",
    "nvd_cve": "nvd_cves.json",
    "stix": "stix_bundle.json",
    "rss": "vendor_advisories.xml",
}


def sample(fmt: str) -> bytes:
    return (SAMPLES / SAMPLE_FILES[fmt]).read_bytes()


def sample_feeds() -> list[dict]:
    """The four shipped sample feeds, as absolute file paths."""
    return [
        {"name": f"sample-{fmt.replace('_', '-')}", "format": fmt, "path": str(SAMPLES / name)}
        for fmt, name in SAMPLE_FILES.items()
    ]


def write_feeds(tmp_path: Path, feeds: list[dict], allowed_hosts: list[str] | None = None) -> Path:
    path = tmp_path / "feeds.json"
    path.write_text(json.dumps({"feeds": feeds, "allowed_hosts": allowed_hosts or []}))
    return path


def config_for(feeds_file: Path, **overrides) -> AdvisorySettings:
    """Test configuration: fast retries; plain HTTP and loopback allowed only because the
    test feed server lives on 127.0.0.1 (the SSRF guard refuses it otherwise)."""
    values = {
        "feeds_file": feeds_file,
        "inventory_file": DATA_DIR / "inventory.json",
        "fetch_timeout": 2.0,
        "fetch_attempts": 3,
        "retry_wait": 0.01,
        "retry_wait_max": 0.05,
        "allow_plain_http": True,
        "ssrf_allow_networks": ["127.0.0.1/32"],
        **overrides,
    }
    return AdvisorySettings(**values)


@contextlib.asynccontextmanager
async def advisory_engine(settings: Settings, config: AdvisorySettings):
    # a long schedule: the first refresh runs at start, the rest only when a test triggers
    settings = settings.model_copy(update={"schedules": {"advisory-refresh.refresh": 3600}})
    host = EngineHost(AdvisoryEngine(settings, config), settings)
    await host.open()
    try:
        yield host
    finally:
        await host.close()


# --- a feed server on 127.0.0.1 ------------------------------------------------------------


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    location: str | None = None
    fail_first: int = 0  # answer 503 this many times before the real answer
    content_type: str = "application/json"


@dataclass
class FeedServer:
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_to(self, path: str) -> list[dict[str, str]]:
        return [headers for hit, headers in self.hits if hit == path]


def _handler(server: FeedServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            server.hits.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            route = server.routes.get(self.path)
            if route is None:
                self._answer(404, b"not found")
                return
            if route.fail_first > 0:
                route.fail_first -= 1
                self._answer(503, b"try later")
                return
            if route.location:
                self._answer(route.status, b"", {"Location": route.location})
                return
            if route.etag and self.headers.get("If-None-Match") == route.etag:
                self._answer(304, b"", {"ETag": route.etag})
                return
            if route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified:
                self._answer(304, b"")
                return
            headers = {"Content-Type": route.content_type}
            if route.etag:
                headers["ETag"] = route.etag
            if route.last_modified:
                headers["Last-Modified"] = route.last_modified
            self._answer(route.status, route.body, headers)

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def feed_server():
    state = FeedServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)
