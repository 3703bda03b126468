"""Real receivers for the SIEM sinks, started by the tests:

- ``Rsyslog``: Debian's rsyslogd (scripts/ensure-rsyslog.sh installs it for `make test`)
  listening on TCP (octet-counted framing), TLS (gtls, a certificate the test made with
  ``cryptography``) or UDP. Its ruleset admits only the RFC 5424 parser
  (``rsyslog.rfc5424``; a message no parser takes is discarded), mmpstrucdata parses
  the structured data, and every message is written as one JSON line of the fields
  rsyslog parsed. A field rsyslog could not parse falls back to a reception-time or
  empty value, which the tests would see.
- ``HttpReceiver``: a Starlette app on uvicorn (TLS optional) playing Splunk's HTTP
  Event Collector (checks ``Authorization: Splunk <token>``, parses the batch, answers
  like Splunk) or a webhook endpoint (checks the HMAC before parsing).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts.settings import Settings
from services.launcher.natsserver import free_port
from tests.security.conftest import secure_nats, secure_settings  # noqa: F401 - fixtures used here too

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def rsyslogd() -> str:
    if not (Path(RSYSLOGD).is_file() and os.access(RSYSLOGD, os.X_OK)):
        reason = (
            "rsyslogd is not installed (scripts/ensure-rsyslog.sh: apt-get install rsyslog rsyslog-gnutls)"
        )
        if _in_ci():
            pytest.fail(f"{reason}; CI=true, so the syslog tests must run", pytrace=False)
        pytest.skip(reason)
    return RSYSLOGD


# --- certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def make_certificate(directory: Path, names: list[str]) -> Certificate:
    """A self-signed server certificate for ``names`` (DNS names and IP addresses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Certificate(cert_path, key_path)


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return make_certificate(tmp_path / "tls", ["siem.test", "127.0.0.1"])


# --- rsyslog ------------------------------------------------------------------------------

TEMPLATE = """
template(name="aocjson" type="list" option.jsonf="on") {
  property(outname="pri" name="pri" format="jsonf")
  property(outname="protocol_version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="sd" name="$!rfc5424-sd" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}
"""


class Rsyslog:
    def __init__(
        self, binary: str, directory: Path, transport: str, certificate: Certificate | None = None
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.transport = transport
        self.certificate = certificate
        self.port = free_port() if transport != "udp" else _free_udp_port()
        self.output = directory / "received.jsonl"
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "rsyslog.conf").write_text(self._config())

    @property
    def url(self) -> str:
        return f"{self.transport}://127.0.0.1:{self.port}"

    def _config(self) -> str:
        tls = ""
        if self.transport == "tls":
            assert self.certificate is not None
            tls = (
                f'  DefaultNetstreamDriverCAFile="{self.certificate.cert}"\n'
                f'  DefaultNetstreamDriverCertFile="{self.certificate.cert}"\n'
                f'  DefaultNetstreamDriverKeyFile="{self.certificate.key}"\n'
            )
        if self.transport == "udp":
            module = 'module(load="imudp")'
            listener = f'input(type="imudp" port="{self.port}" address="127.0.0.1" ruleset="strict")'
        else:
            driver = ' StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon"'
            module = f'module(load="imtcp"{driver if self.transport == "tls" else ""})'
            listener = f'input(type="imtcp" port="{self.port}" address="127.0.0.1" ruleset="strict")'
        return f"""
global(workDirectory="{self.directory}" maxMessageSize="64k"
{tls})
{module}
module(load="mmpstrucdata")
{TEMPLATE}
ruleset(name="strict" parser="rsyslog.rfc5424") {{
  action(type="mmpstrucdata")
  action(type="omfile" file="{self.output}" template="aocjson" flushOnTXEnd="on" asyncWriting="off")
}}
{listener}
"""

    async def start(self) -> Rsyslog:
        log = open(self.directory / "rsyslogd.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [
                self.binary,
                "-n",
                "-f",
                str(self.directory / "rsyslog.conf"),
                "-i",
                str(self.directory / "pid"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        kind = "udp" if self.transport == "udp" else "tcp"
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"rsyslogd exited: {(self.directory / 'rsyslogd.log').read_text()[-2000:]}"
                )
            with contextlib.suppress(psutil.Error):
                ports = {c.laddr.port for c in psutil.Process(self.process.pid).net_connections(kind=kind)}
                if self.port in ports:
                    return self
            await asyncio.sleep(0.05)
        raise TimeoutError("rsyslogd did not listen within 10 s")

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(self.process.wait, 10)
        self.process = None

    def messages(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            return []
        out = []
        # only complete lines: rsyslog may be half-way through writing the last one
        for line in self.output.read_text().split("\n")[:-1]:
            record = json.loads(line)
            if record.get("sd"):
                record["sd"] = json.loads(record["sd"])
            out.append(record)
        return out

    def events(self) -> list[dict[str, Any]]:
        """The MSG of every message, as the JSON envelope it carries (after the BOM)."""
        return [json.loads(m["msg"].removeprefix("\ufeff")) for m in self.messages()]


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def rsyslog_factory(rsyslogd: str, tmp_path: Path):
    started: list[Rsyslog] = []

    async def make(transport: str, certificate: Certificate | None = None) -> Rsyslog:
        receiver = Rsyslog(rsyslogd, tmp_path / f"rsyslog-{transport}-{len(started)}", transport, certificate)
        started.append(receiver)
        return await receiver.start()

    yield make
    for receiver in started:
        await receiver.stop()


# --- HTTP receivers -----------------------------------------------------------------------


def parse_hec_batch(body: bytes) -> list[dict[str, Any]]:
    """Splunk's batch format: JSON objects one after another (whitespace between)."""
    decoder = json.JSONDecoder()
    text, index, events = body.decode(), 0, []
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return events
        value, index = decoder.raw_decode(text, index)
        events.append(value)


@dataclass
class HttpReceiver:
    handler: Callable[[Request], Awaitable[Response]]
    certificate: Certificate | None = None
    path: str = "/services/collector/event"
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.certificate else "http"
        return f"{scheme}://{self.host}:{self.port}{self.path}"

    async def start(self) -> HttpReceiver:
        handler = self.handler

        async def endpoint(request: Request) -> Response:  # a plain function: Starlette's request mode
            return await handler(request)

        app = Starlette(routes=[Route(self.path, endpoint, methods=["POST"])])
        tls = {}
        if self.certificate:
            tls = {"ssl_certfile": str(self.certificate.cert), "ssl_keyfile": str(self.certificate.key)}
        config = uvicorn.Config(
            app, host=self.host, port=self.port, log_level="warning", lifespan="off",
            timeout_graceful_shutdown=1, **tls,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
        self.server = self.task = None


class Hec:
    """What a Splunk HTTP Event Collector checks and answers (Splunk's documented codes:
    2 token required, 3 invalid authorization, 4 invalid token, 5 no data, 6 invalid
    data format)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.events: list[dict[str, Any]] = []
        self.refused = 0

    async def __call__(self, request: Request) -> Response:
        header = request.headers.get("authorization")
        if header is None:
            self.refused += 1
            return JSONResponse({"text": "Token is required", "code": 2}, status_code=401)
        scheme, _, token = header.partition(" ")
        if scheme != "Splunk":
            self.refused += 1
            return JSONResponse({"text": "Invalid authorization", "code": 3}, status_code=401)
        if not hmac.compare_digest(token, self.token):
            self.refused += 1
            return JSONResponse({"text": "Invalid token", "code": 4}, status_code=403)
        body = await request.body()
        if not body.strip():
            return JSONResponse({"text": "No data", "code": 5}, status_code=400)
        try:
            batch = parse_hec_batch(body)
        except ValueError:
            return JSONResponse({"text": "Invalid data format", "code": 6}, status_code=400)
        for number, event in enumerate(batch):
            if "event" not in event or not isinstance(event.get("time"), int | float):
                return JSONResponse(
                    {"text": "Invalid data format", "code": 6, "invalid-event-number": number},
                    status_code=400,
                )
        self.events += batch
        return JSONResponse({"text": "Success", "code": 0})


class WebhookEndpoint:
    """Verifies X-AOC-Signature over "<timestamp>.<body>" before parsing anything."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.batches: list[dict[str, Any]] = []
        self.deliveries: list[str] = []
        self.refused = 0

    async def __call__(self, request: Request) -> Response:
        body = await request.body()
        stamp = request.headers.get("x-aoc-timestamp", "")
        expected = "sha256=" + hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-aoc-signature", ""), expected):
            self.refused += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        batch = json.loads(body)
        self.batches.append(batch)
        self.deliveries.append(request.headers["x-aoc-delivery"])
        return JSONResponse({"ok": True})

    @property
    def events(self) -> list[dict[str, Any]]:
        return [item["event"] for batch in self.batches for item in batch["events"]]

    def events_ids(self) -> list[str]:
        return [event["id"] for event in self.events]


@pytest.fixture
async def http_receivers():
    started: list[HttpReceiver] = []

    async def make(
        handler,
        certificate: Certificate | None = None,
        path: str = "/services/collector/event",
        host: str = "127.0.0.1",
        port: int | None = None,
    ):
        receiver = HttpReceiver(handler, certificate, path, host, port or free_port())
        started.append(receiver)
        return await receiver.start()

    yield make
    for receiver in started:
        await receiver.stop()


# --- the service under test ---------------------------------------------------------------


def siem_settings(settings: Settings, sinks: list[dict[str, Any]], **extra: Any) -> Settings:
    update = {
        "siem_sinks": json.dumps(sinks),
        "siem_allowed_hosts": ["127.0.0.1", "siem.test"],
        "siem_allowed_networks": ["127.0.0.0/8"],
        **extra,
    }
    return settings.model_copy(update=update)


async def read_status(nc) -> Any:
    """The SIEM service's status as it wrote it to KV, or None."""
    from contracts.siem import SIEM_STATUS_BUCKET, STATUS_KEY, status_decoder

    try:
        kv = await nc.jetstream().key_value(SIEM_STATUS_BUCKET)
        entry = await kv.get(STATUS_KEY)
    except Exception:
        return None
    return status_decoder.decode(entry.value) if entry.value else None


async def until_status(
    nc, condition: Callable[[Any], bool], timeout: float = 30.0, what: str = "status"
) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        status = await read_status(nc)
        if status is not None and condition(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
