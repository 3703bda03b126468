"""The SSRF guard: a table of forbidden addresses, the allowlist, and name resolution."""

from __future__ import annotations

import ipaddress

import pytest

from services.shared.egress import AddressPolicy, FetchRefused, UrlGuard, host_allowed

FORBIDDEN = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "CGNAT"),
    ("169.254.169.254", "link-local"),  # cloud instance metadata
    ("192.0.0.8", "IETF protocol"),
    ("192.0.2.10", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "IPv4-mapped"),
    ("::ffff:8.8.8.8", "IPv4-mapped"),  # mapped is refused outright, even to a public address
    ("::127.0.0.1", "IPv4-compatible"),
    ("64:ff9b::a9fe:a9fe", "NAT64"),  # 169.254.169.254 through NAT64
    ("64:ff9b::808:808", "NAT64"),
    ("64:ff9b:1::1", "NAT64"),
    ("fe80::1", "link-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("2002:7f00:1::1", "6to4"),  # embeds 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("100::1", "discard"),
]


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN)
def test_forbidden_addresses_are_refused(address, reason):
    refusal = AddressPolicy().refusal(ipaddress.ip_address(address))
    assert refusal is not None and reason.lower() in refusal.lower()


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "104.16.132.229", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) is None


def test_explicit_allowed_network_is_the_only_exception():
    policy = AddressPolicy.from_strings(["127.0.0.1/32"])
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert policy.refusal(ipaddress.ip_address("::1")) == "loopback"


def resolver_of(table: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    return resolve


def guard(table: dict[str, list[str]], **kwargs) -> UrlGuard:
    hosts = frozenset({"feeds.example.com", "*.cdn.example.net", "rebind.example.com"})
    return UrlGuard(allowed_hosts=hosts, resolver=resolver_of(table), **kwargs)


async def test_allowed_host_resolving_to_public_addresses_passes_pinned_to_the_checked_address():
    target = await guard({"feeds.example.com": ["93.184.215.14"]}).check(
        "https://feeds.example.com/kev.json?x=1"
    )
    assert (target.host, target.address, target.port, target.path) == (
        "feeds.example.com",
        "93.184.215.14",
        443,
        "/kev.json?x=1",
    )


@pytest.mark.parametrize(
    ("url", "table", "says"),
    [
        ("https://evil.example.org/feed", {"evil.example.org": ["93.184.215.14"]}, "not on the allowlist"),
        ("http://feeds.example.com/feed", {"feeds.example.com": ["93.184.215.14"]}, "https only"),
        ("ftp://feeds.example.com/feed", {}, "not allowed"),
        ("file:///etc/passwd", {}, "not allowed"),
        ("https://user:pw@feeds.example.com/", {"feeds.example.com": ["93.184.215.14"]}, "credentials"),
        ("https://feeds.example.com/", {"feeds.example.com": ["10.0.0.5"]}, "private"),
        # one bad answer among good ones spoils the name (DNS rebinding, round robin)
        ("https://rebind.example.com/", {"rebind.example.com": ["93.184.215.14", "127.0.0.1"]}, "loopback"),
        ("https://a.cdn.example.net/", {"a.cdn.example.net": ["::ffff:169.254.169.254"]}, "IPv4-mapped"),
        ("https://a.cdn.example.net/", {"a.cdn.example.net": ["64:ff9b::7f00:1"]}, "NAT64"),
        ("https://127.0.0.1/", {}, "not on the allowlist"),
    ],
)
async def test_guard_refusals(url, table, says):
    with pytest.raises(FetchRefused, match=says):
        await guard(table).check(url)


async def test_unresolvable_name_is_a_transient_error_not_a_refusal():
    with pytest.raises(ConnectionError, match="cannot resolve"):
        await guard({}).check("https://feeds.example.com/")


def test_allowlist_wildcards_match_subdomains_only():
    hosts = ["*.cdn.example.net", "www.cisa.gov"]
    assert host_allowed("a.cdn.example.net", hosts) and host_allowed("WWW.CISA.GOV.", hosts)
    assert not host_allowed("cdn.example.net", hosts)
    assert not host_allowed("evilcdn.example.net", hosts)
    assert not host_allowed("www.cisa.gov.evil.com", hosts)
