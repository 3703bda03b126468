"""Fetching over HTTP from a local feed server: validators, retries, redirects through the
guard, size cap. The guard lets 127.0.0.1 through only because the test config says so."""

from __future__ import annotations

import contextlib

import pytest

from contracts.advisory import FeedState
from contracts.events import utcnow
from services.advisory import feedstate
from services.advisory.config import FeedConfig
from services.advisory.fetch import FeedFetcher, FetchFailed, TransientFetchError, pinned_client
from services.shared.egress import AddressPolicy, FetchRefused, UrlGuard
from tests.advisory.conftest import Route, config_for, http_date, sample


@contextlib.asynccontextmanager
async def fetcher(tmp_path, **overrides):
    config = config_for(tmp_path / "unused.json", **overrides)
    guard = UrlGuard(
        allowed_hosts=frozenset({"127.0.0.1"}),
        policy=AddressPolicy.from_strings(config.ssrf_allow_networks),
        allow_plain_http=config.allow_plain_http,
    )
    async with pinned_client(config) as client:
        yield FeedFetcher(config, guard, client=client)


def feed(url: str) -> FeedConfig:
    return FeedConfig(name="kev", format="cisa_kev", url=url)


def after(fetched) -> FeedState:
    """The feed state after a good fetch: what the next fetch is conditional on."""
    return feedstate.succeeded(
        FeedState(name="kev", format="cisa_kev", source="x", schedule_seconds=60),
        utcnow(),
        items=[],
        fresh=0,
        etag=fetched.etag,
        last_modified=fetched.last_modified,
        content_sha256=fetched.content_sha256,
    )


async def test_etag_makes_the_second_fetch_a_304(tmp_path, feed_server):
    feed_server.routes["/kev.json"] = Route(body=sample("cisa_kev"), etag='"kev-2024.11.20"')
    async with fetcher(tmp_path) as f:
        first = await f.fetch(feed(feed_server.url("/kev.json")), None)
        assert first.body == sample("cisa_kev") and first.etag == '"kev-2024.11.20"'
        second = await f.fetch(feed(feed_server.url("/kev.json")), after(first))
    assert second.not_modified
    assert feed_server.requests_to("/kev.json")[-1]["if-none-match"] == '"kev-2024.11.20"'


async def test_last_modified_makes_the_second_fetch_a_304(tmp_path, feed_server):
    stamp = http_date(1732100000)
    feed_server.routes["/nvd.json"] = Route(body=sample("nvd_cve"), last_modified=stamp)
    async with fetcher(tmp_path) as f:
        first = await f.fetch(feed(feed_server.url("/nvd.json")), None)
        second = await f.fetch(feed(feed_server.url("/nvd.json")), after(first))
    assert not first.not_modified and second.not_modified
    assert feed_server.requests_to("/nvd.json")[-1]["if-modified-since"] == stamp


async def test_transient_errors_are_retried_with_backoff(tmp_path, feed_server):
    feed_server.routes["/flaky"] = Route(body=sample("cisa_kev"), fail_first=2)
    async with fetcher(tmp_path) as f:
        fetched = await f.fetch(feed(feed_server.url("/flaky")), None)
    assert fetched.attempts == 3 and fetched.body == sample("cisa_kev")
    assert len(feed_server.requests_to("/flaky")) == 3


async def test_retries_give_up_after_the_configured_attempts(tmp_path, feed_server):
    feed_server.routes["/down"] = Route(fail_first=99)
    async with fetcher(tmp_path, fetch_attempts=2) as f:
        with pytest.raises(TransientFetchError, match="HTTP 503"):
            await f.fetch(feed(feed_server.url("/down")), None)
    assert len(feed_server.requests_to("/down")) == 2


async def test_a_permanent_http_error_is_not_retried(tmp_path, feed_server):
    async with fetcher(tmp_path) as f:
        with pytest.raises(FetchFailed, match="HTTP 404"):
            await f.fetch(feed(feed_server.url("/missing")), None)
    assert len(feed_server.requests_to("/missing")) == 1


async def test_redirects_are_followed_and_each_hop_is_checked(tmp_path, feed_server):
    feed_server.routes["/kev.json"] = Route(body=sample("cisa_kev"))
    feed_server.routes["/moved"] = Route(status=301, location="/kev.json")
    feed_server.routes["/to-metadata"] = Route(
        status=302, location="http://169.254.169.254/latest/meta-data/"
    )
    feed_server.routes["/to-localhost"] = Route(status=307, location="http://localhost:9/feed")
    feed_server.routes["/to-ipv6-loopback"] = Route(status=302, location="http://[::1]/feed")
    async with fetcher(tmp_path) as f:
        moved = await f.fetch(feed(feed_server.url("/moved")), None)
        assert moved.body == sample("cisa_kev") and moved.url.endswith("/kev.json")
        with pytest.raises(FetchRefused, match="not on the allowlist"):
            await f.fetch(feed(feed_server.url("/to-metadata")), None)
        with pytest.raises(FetchRefused, match="localhost is not on the allowlist"):
            await f.fetch(feed(feed_server.url("/to-localhost")), None)
    # even an allowlisted name is refused when it leads somewhere forbidden
    config = config_for(tmp_path / "unused.json")
    guard = UrlGuard(
        allowed_hosts=frozenset({"127.0.0.1", "169.254.169.254", "::1"}),
        policy=AddressPolicy.from_strings(config.ssrf_allow_networks),
        allow_plain_http=True,
    )
    async with pinned_client(config) as client:
        f = FeedFetcher(config, guard, client=client)
        with pytest.raises(FetchRefused, match="link-local"):
            await f.fetch(feed(feed_server.url("/to-metadata")), None)
        with pytest.raises(FetchRefused, match="loopback"):
            await f.fetch(feed(feed_server.url("/to-ipv6-loopback")), None)


async def test_redirect_loops_end(tmp_path, feed_server):
    feed_server.routes["/loop"] = Route(status=302, location="/loop")
    async with fetcher(tmp_path, max_redirects=3) as f:
        with pytest.raises(FetchRefused, match="more than 3 redirects"):
            await f.fetch(feed(feed_server.url("/loop")), None)
    assert len(feed_server.requests_to("/loop")) == 4


async def test_loopback_is_refused_without_the_test_only_allowance(tmp_path, feed_server):
    feed_server.routes["/kev.json"] = Route(body=sample("cisa_kev"))
    async with fetcher(tmp_path, ssrf_allow_networks=[]) as f:
        with pytest.raises(FetchRefused, match="loopback"):
            await f.fetch(feed(feed_server.url("/kev.json")), None)
    assert feed_server.requests_to("/kev.json") == []  # refused before connecting


async def test_oversized_body_is_refused(tmp_path, feed_server):
    feed_server.routes["/big"] = Route(body=b"x" * 5000)
    async with fetcher(tmp_path, max_feed_bytes=1000) as f:
        with pytest.raises(FetchFailed, match="over the 1000-byte limit"):
            await f.fetch(feed(feed_server.url("/big")), None)


async def test_file_feed_uses_its_content_hash_as_validator(tmp_path):
    path = tmp_path / "kev.json"
    path.write_bytes(sample("cisa_kev"))
    file_feed = FeedConfig(name="kev", format="cisa_kev", path=str(path))
    async with fetcher(tmp_path) as f:
        first = await f.fetch(file_feed, None)
        same = await f.fetch(file_feed, after(first))
        path.write_bytes(sample("cisa_kev").replace(b"2024.11.20", b"2024.11.21"))
        changed = await f.fetch(file_feed, after(first))
        with pytest.raises(FetchFailed, match="cannot read"):
            await f.fetch(FeedConfig(name="gone", format="rss", path=str(tmp_path / "gone.xml")), None)
    assert not first.not_modified and same.not_modified and not changed.not_modified


async def test_the_connection_goes_to_the_checked_address_with_the_name_in_the_host_header(
    tmp_path, feed_server
):
    """'feeds.test' exists only in the guard's resolver: if the fetcher looked the name up
    again (and could get another answer), this would fail to connect at all."""
    feed_server.routes["/kev.json"] = Route(body=sample("cisa_kev"))
    config = config_for(tmp_path / "unused.json")

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "feeds.test" else []

    guard = UrlGuard(
        allowed_hosts=frozenset({"feeds.test"}),
        policy=AddressPolicy.from_strings(config.ssrf_allow_networks),
        allow_plain_http=True,
        resolver=resolver,
    )
    async with pinned_client(config) as client:
        fetched = await FeedFetcher(config, guard, client=client).fetch(
            feed(f"http://feeds.test:{feed_server.port}/kev.json"), None
        )
    assert fetched.body == sample("cisa_kev")
    assert feed_server.requests_to("/kev.json")[0]["host"] == f"feeds.test:{feed_server.port}"
