"""Getting a feed's bytes: from a file, or over HTTP through the URL guard.

HTTP: httpx with per-attempt timeouts, tenacity retries with exponential backoff for
transient trouble (connection errors, timeouts, 429, 5xx), conditional requests
(If-None-Match / If-Modified-Since) so an unchanged feed costs a 304, redirects
followed by hand so every hop goes through the guard again, and a size cap. The
connection goes to the address the guard checked (Host header and TLS SNI carry the
name), and proxies from the environment are ignored: they would connect elsewhere.

Files: the content hash plays the role of the ETag.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from contracts.advisory import FeedState
from services.advisory.config import AdvisorySettings, FeedConfig
from services.shared.egress import FetchRefused, Target, UrlGuard

REDIRECTS = {301, 302, 303, 307, 308}


class FetchFailed(Exception):
    """The feed could not be fetched (after retries, or a permanent HTTP error)."""


class TransientFetchError(FetchFailed):
    """Worth another attempt: the server or the network may be better in a moment."""


@dataclass
class Fetched:
    body: bytes | None  # None: not modified since the last fetch
    etag: str | None = None
    last_modified: str | None = None
    content_sha256: str | None = None
    url: str | None = None  # where the body finally came from (after redirects)
    attempts: int = 1

    @property
    def not_modified(self) -> bool:
        return self.body is None


def pinned_client(settings: AdvisorySettings) -> httpx.AsyncClient:
    """The client for guarded fetches. No redirects (each hop is checked by hand), no proxies
    from the environment, and no kept-alive connections: requests go to a checked IP with
    the name in Host/SNI, and a pooled connection to that IP (opened with another name's
    SNI and certificate) must never carry a request for a different host."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.fetch_timeout),
        limits=httpx.Limits(max_keepalive_connections=0),
        headers={"User-Agent": settings.user_agent},
    )


class FeedFetcher:
    def __init__(self, settings: AdvisorySettings, guard: UrlGuard, client: httpx.AsyncClient | None = None):
        self.settings = settings
        self.guard = guard
        self.client = client or pinned_client(settings)

    async def close(self) -> None:
        await self.client.aclose()

    async def fetch(self, feed: FeedConfig, state: FeedState | None, *, conditional: bool = True) -> Fetched:
        previous = state if conditional else None
        if feed.path is not None:
            return await self._read_file(Path(feed.path), previous)
        assert feed.url is not None
        return await self._get_with_retries(feed, previous)

    async def _read_file(self, path: Path, state: FeedState | None) -> Fetched:
        try:
            body = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise FetchFailed(f"cannot read {path}: {exc.strerror or exc}") from None
        digest = hashlib.sha256(body).hexdigest()
        if state is not None and state.content_sha256 == digest:
            return Fetched(body=None, content_sha256=digest, url=str(path))
        return Fetched(body=body, content_sha256=digest, url=str(path))

    async def _get_with_retries(self, feed: FeedConfig, state: FeedState | None) -> Fetched:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.fetch_attempts),
            wait=wait_exponential(multiplier=self.settings.retry_wait, max=self.settings.retry_wait_max),
            retry=retry_if_exception_type(TransientFetchError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                fetched = await self._get(feed, state)
                fetched.attempts = attempt.retry_state.attempt_number
                return fetched
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _get(self, feed: FeedConfig, state: FeedState | None) -> Fetched:
        url = feed.url or ""
        headers = dict(feed.headers)
        if state is not None and state.etag:
            headers["If-None-Match"] = state.etag
        if state is not None and state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        try:
            async with asyncio.timeout(self.settings.fetch_timeout * 2):  # a trickling server ends too
                for _hop in range(self.settings.max_redirects + 1):
                    target = await self.guard.check(url)
                    async with self._stream(target, headers) as response:
                        if response.status_code in REDIRECTS:
                            location = response.headers.get("location")
                            if not location:
                                raise FetchFailed(f"{url}: HTTP {response.status_code} without a Location")
                            url = urljoin(url, location)
                            continue
                        return await self._read(url, response, state)
                raise FetchRefused(f"{feed.url}: more than {self.settings.max_redirects} redirects")
        except TimeoutError:
            raise TransientFetchError(f"{url}: no complete answer within the time limit") from None
        except (httpx.TransportError, ConnectionError) as exc:
            raise TransientFetchError(f"{url}: {type(exc).__name__}: {exc}") from None

    def _stream(self, target: Target, headers: dict[str, str]):
        default_port = 443 if target.scheme == "https" else 80
        host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
        pinned = httpx.URL(target.url).copy_with(host=target.address)
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = self.client.build_request(
            "GET", pinned, headers={**headers, "Host": host_header}, extensions=extensions
        )
        return _Streamed(self.client, request)

    async def _read(self, url: str, response: httpx.Response, state: FeedState | None) -> Fetched:
        status = response.status_code
        if status == 304:
            return Fetched(
                body=None,
                etag=response.headers.get("etag") or (state.etag if state else None),
                last_modified=response.headers.get("last-modified")
                or (state.last_modified if state else None),
                content_sha256=state.content_sha256 if state else None,
                url=url,
            )
        if status == 429 or status >= 500:
            raise TransientFetchError(f"{url}: HTTP {status}")
        if status != 200:
            raise FetchFailed(f"{url}: HTTP {status}")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.settings.max_feed_bytes:
            raise FetchFailed(
                f"{url}: {declared} bytes is over the {self.settings.max_feed_bytes}-byte limit"
            )
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.settings.max_feed_bytes:
                raise FetchFailed(f"{url}: body over the {self.settings.max_feed_bytes}-byte limit")
            chunks.append(chunk)
        body = b"".join(chunks)
        digest = hashlib.sha256(body).hexdigest()
        fetched = Fetched(
            body=body,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            content_sha256=digest,
            url=url,
        )
        if (
            state is not None
            and not fetched.etag
            and not fetched.last_modified
            and state.content_sha256 == digest
        ):
            fetched.body = None  # a server without validators: the same bytes are "not modified"
        return fetched


class _Streamed:
    """``async with`` around a streamed response that is always closed."""

    def __init__(self, client: httpx.AsyncClient, request: httpx.Request) -> None:
        self._client, self._request = client, request

    async def __aenter__(self) -> httpx.Response:
        self._response = await self._client.send(self._request, stream=True)
        return self._response

    async def __aexit__(self, *exc: object) -> None:
        await self._response.aclose()


__all__ = ["FeedFetcher", "FetchFailed", "FetchRefused", "Fetched", "TransientFetchError"]
