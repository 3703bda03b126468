"""Getting a batch to a receiver, and knowing whether it was accepted.

Every transport connects only to the address the egress guard checked (resolved once
per connection; the name still goes into TLS SNI, certificate checks and the Host
header), so a DNS answer that changes after the check cannot redirect it.

"Accepted" means:
- syslog over TCP/TLS: every byte of the batch was acknowledged by the receiver's TCP
  stack (the kernel's send queue is empty, SIOCOUTQ) and the connection is still
  established (RFC 6587 has no application-level acknowledgement; a receiver that
  crashes after its kernel took the bytes can lose them — HEC and webhooks confirm
  end to end);
- syslog over UDP: the datagrams were sent (RFC 5426 is best effort);
- hec and webhook: a 2xx answer.
Anything else raises ``DeliveryFailed``; the caller retries the same batch.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import socket
import ssl
import struct
import termios
from datetime import UTC, datetime
from pathlib import Path

import httpx

from contracts.siem import SinkConfig
from services.shared.egress import UrlGuard
from services.siem.formats import HecFormatter, Record, SyslogFormatter, WebhookFormatter

TCP_ESTABLISHED = 1


class DeliveryFailed(Exception):
    """The receiver did not accept the batch; worth another try later."""


def tls_context(config: SinkConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.ca_file)
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.cert_file and config.key_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    return context


def read_secret(value, file: str | None) -> bytes:
    if value is not None:
        return value.get_secret_value().encode()
    assert file is not None
    return Path(file).read_text().strip().encode()


class Transport:
    kind = ""

    def __init__(self, config: SinkConfig, guard: UrlGuard) -> None:
        self.config = config
        self.guard = guard
        self.address: str | None = None  # the checked address of the current connection

    async def deliver(self, records: list[Record]) -> None:
        raise NotImplementedError

    async def check_egress(self) -> str:
        """The address the guard allows for this sink now (raises EgressRefused): run at
        start so a refused sink shows as refused before it has anything to send."""
        if self.config.kind == "syslog":
            return await self.guard.endpoint(self.config.host, self.config.port, label=self.config.shown_url)
        guard = self.guard
        if self.config.allow_http and not guard.allow_plain_http:
            guard = UrlGuard(
                guard.allowed_hosts, guard.policy, allow_plain_http=True, resolver=guard.resolver
            )
        return (await guard.check(self.config.url)).address

    async def close(self) -> None:
        pass


# --- syslog -------------------------------------------------------------------------------


def unsent_bytes(sock: socket.socket) -> int:
    """Bytes in the kernel's send queue not yet acknowledged by the peer (Linux SIOCOUTQ)."""
    buffer = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buffer)
    return buffer[0]


def tcp_state(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return struct.unpack("B", info[:1])[0]


class SyslogStream(Transport):
    """RFC 5424 over TCP (RFC 6587 octet counting) or TLS (RFC 5425)."""

    kind = "syslog"

    def __init__(self, config: SinkConfig, guard: UrlGuard) -> None:
        super().__init__(config, guard)
        self.formatter = SyslogFormatter(config)
        self.tls = config.scheme == "tls"
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None

    async def _connect(self) -> None:
        address = await self.guard.endpoint(self.config.host, self.config.port, label=self.config.shown_url)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                self._reader, self._writer = await asyncio.open_connection(
                    address,
                    self.config.port,
                    ssl=tls_context(self.config) if self.tls else None,
                    server_hostname=self.config.host if self.tls else None,
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise DeliveryFailed(
                f"cannot connect to {self.config.shown_url} ({address}): {_why(exc)}"
            ) from None
        self.address = address

    async def deliver(self, records: list[Record]) -> None:
        if self._writer is None or self._writer.is_closing():
            await self._connect()
        writer = self._writer
        assert writer is not None
        payload = b"".join(self.formatter.octet_counted(record) for record in records)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                writer.write(payload)
                await writer.drain()
                await self._until_acknowledged(writer)
        except (OSError, TimeoutError, ssl.SSLError, DeliveryFailed) as exc:
            await self.close()
            raise DeliveryFailed(f"{self.config.shown_url}: batch not acknowledged: {_why(exc)}") from None

    async def _until_acknowledged(self, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is None:  # pragma: no cover - every asyncio TCP transport has one
            return
        delay = 0.0005
        while True:
            if self._reader is not None and self._reader.at_eof():
                raise DeliveryFailed("the receiver closed the connection")
            state = tcp_state(sock)
            if state != TCP_ESTABLISHED:
                raise DeliveryFailed(f"connection no longer established (TCP state {state})")
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise DeliveryFailed(f"socket error {error}")
            if unsent_bytes(sock) == 0 and not writer.transport.get_write_buffer_size():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()


class SyslogDatagram(Transport):
    """RFC 5424 over UDP (RFC 5426): one message per datagram, no acknowledgement. A
    connected socket turns the receiver's ICMP 'port unreachable' into an error on the
    next send, so an outage noticed mid-batch resends that batch."""

    kind = "syslog"

    def __init__(self, config: SinkConfig, guard: UrlGuard) -> None:
        super().__init__(config, guard)
        self.formatter = SyslogFormatter(config)
        self._sock: socket.socket | None = None

    async def deliver(self, records: list[Record]) -> None:
        if self._sock is None:
            address = await self.guard.endpoint(
                self.config.host, self.config.port, label=self.config.shown_url
            )
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.connect((address, self.config.port))
            except OSError as exc:
                sock.close()
                raise DeliveryFailed(f"{self.config.shown_url}: {_why(exc)}") from None
            self._sock, self.address = sock, address
        loop = asyncio.get_running_loop()
        try:
            for record in records:
                await loop.sock_sendall(self._sock, self.formatter.message(record))
        except OSError as exc:
            await self.close()
            raise DeliveryFailed(f"{self.config.shown_url}: {_why(exc)}") from None

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# --- HTTP: Splunk HEC and webhooks --------------------------------------------------------


class HttpTransport(Transport):
    """POSTs a batch. One kept-alive client per checked address: a failure re-checks the
    name, and a new address gets a new client (a connection opened for one address
    never carries requests meant for another)."""

    def __init__(self, config: SinkConfig, guard: UrlGuard) -> None:
        super().__init__(config, guard)
        self._client: httpx.AsyncClient | None = None
        self._target = None

    async def _ensure_client(self):
        if self._client is None:
            target = await self.guard_check()
            verify: ssl.SSLContext | bool = tls_context(self.config) if target.scheme == "https" else False
            self._client = httpx.AsyncClient(
                verify=verify,
                trust_env=False,  # proxies from the environment would connect elsewhere
                follow_redirects=False,  # a redirect is a failure, never followed blindly
                timeout=httpx.Timeout(self.config.timeout_s),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
            self._target, self.address = target, target.address
        return self._client, self._target

    async def guard_check(self):
        guard = self.guard
        if self.config.allow_http and not guard.allow_plain_http:
            guard = UrlGuard(
                guard.allowed_hosts, guard.policy, allow_plain_http=True, resolver=guard.resolver
            )
        return await guard.check(self.config.url)

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        client, target = await self._ensure_client()
        default_port = 443 if target.scheme == "https" else 80
        host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
        pinned = httpx.URL(target.url).copy_with(host=target.address)
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = client.build_request(
            "POST", pinned, content=body, headers={**headers, "Host": host_header}, extensions=extensions
        )
        try:
            response = await client.send(request)
        except httpx.HTTPError as exc:
            await self.close()
            raise DeliveryFailed(f"{self.config.shown_url}: {type(exc).__name__}: {_why(exc)}") from None
        if not 200 <= response.status_code < 300:
            text = " ".join(response.text.split())[:200]
            if response.status_code >= 500 or response.status_code in (408, 429):
                await self.close()  # another instance or address may answer better
            raise DeliveryFailed(f"{self.config.shown_url}: HTTP {response.status_code} {text}".rstrip())
        return response

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class HecTransport(HttpTransport):
    kind = "hec"

    def __init__(self, config: SinkConfig, guard: UrlGuard) -> None:
        super().__init__(config, guard)
        self.formatter = HecFormatter(config)
        self.token = read_secret(config.token, config.token_file).decode()

    async def deliver(self, records: list[Record]) -> None:
        body = self.formatter.body(records)
        headers = {"Authorization": f"Splunk {self.token}", "Content-Type": "application/json"}
        await self.post(body, headers)


class WebhookTransport(HttpTransport):
    kind = "webhook"

    def __init__(self, config: SinkConfig, guard: UrlGuard) -> None:
        super().__init__(config, guard)
        self.formatter = WebhookFormatter(config)
        self.secret = read_secret(config.secret, config.secret_file)

    async def deliver(self, records: list[Record]) -> None:
        body = self.formatter.body(records)
        await self.post(body, self.formatter.headers(self.secret, records, body, datetime.now(UTC)))


def transport_for(config: SinkConfig, guard: UrlGuard) -> Transport:
    if config.kind == "syslog":
        return SyslogDatagram(config, guard) if config.scheme == "udp" else SyslogStream(config, guard)
    if config.kind == "hec":
        return HecTransport(config, guard)
    return WebhookTransport(config, guard)


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]
