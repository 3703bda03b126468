"""Where a service may connect to: a host allowlist plus an address policy (the SSRF
and egress guard). advisory-refresh fetches feeds through it; the SIEM service sends
events to its sinks through it. No engine owns it.

A URL comes from configuration, and every redirect from a remote server, so both
are checked the same way before any connection:

1. the scheme is https (http only when explicitly allowed);
2. the host is on the allowlist (exact name, or ``*.suffix``);
3. the name resolves, and EVERY address it resolves to is a public unicast address:
   not loopback, private, shared (CGNAT), link-local, unique-local, multicast,
   unspecified, reserved, documentation/benchmark ranges, IPv4-mapped or
   IPv4-compatible IPv6, NAT64 (64:ff9b::/96, 64:ff9b:1::/48), 6to4 or Teredo (they
   embed IPv4 addresses that could be private).

The caller then connects to the address that was checked (not to a second lookup), so
a DNS answer cannot change between the check and the connection (DNS rebinding).
``UrlGuard.check`` does this for http(s) URLs; ``UrlGuard.endpoint`` checks a bare
host and port for other protocols (syslog over TCP, TLS or UDP).

``AddressPolicy.allowed_networks`` lets tests (and lab mirrors, an on-premises SIEM)
through for named networks; it is empty unless configured
(AOC_ADVISORY_SSRF_ALLOW_NETWORKS, AOC_SIEM_ALLOWED_NETWORKS).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_v4 = ipaddress.IPv4Network
_v6 = ipaddress.IPv6Network

# (network, why it is refused); checked in order, first match wins
FORBIDDEN_NETWORKS: list[tuple[Network, str]] = [
    (_v4("0.0.0.0/8"), "unspecified / 'this network'"),
    (_v4("10.0.0.0/8"), "private"),
    (_v4("100.64.0.0/10"), "shared address space (CGNAT)"),
    (_v4("127.0.0.0/8"), "loopback"),
    (_v4("169.254.0.0/16"), "link-local (cloud metadata lives here)"),
    (_v4("172.16.0.0/12"), "private"),
    (_v4("192.0.0.0/24"), "IETF protocol assignments"),
    (_v4("192.0.2.0/24"), "documentation (TEST-NET-1)"),
    (_v4("192.88.99.0/24"), "6to4 relay anycast"),
    (_v4("192.168.0.0/16"), "private"),
    (_v4("198.18.0.0/15"), "benchmarking"),
    (_v4("198.51.100.0/24"), "documentation (TEST-NET-2)"),
    (_v4("203.0.113.0/24"), "documentation (TEST-NET-3)"),
    (_v4("224.0.0.0/4"), "multicast"),
    (_v4("255.255.255.255/32"), "broadcast"),
    (_v4("240.0.0.0/4"), "reserved"),
    (_v6("::/128"), "unspecified"),
    (_v6("::1/128"), "loopback"),
    (_v6("::ffff:0:0/96"), "IPv4-mapped IPv6"),
    (_v6("::/96"), "IPv4-compatible IPv6 (deprecated)"),
    (_v6("64:ff9b::/96"), "NAT64 (well-known prefix)"),
    (_v6("64:ff9b:1::/48"), "NAT64 (local-use prefix)"),
    (_v6("100::/64"), "discard-only"),
    (_v6("2001::/32"), "Teredo"),
    (_v6("2001:db8::/32"), "documentation"),
    (_v6("2002::/16"), "6to4"),
    (_v6("fc00::/7"), "unique local (private)"),
    (_v6("fe80::/10"), "link-local"),
    (_v6("fec0::/10"), "site-local (deprecated)"),
    (_v6("ff00::/8"), "multicast"),
]


class EgressRefused(Exception):
    """The destination may not be contacted; the message says why. Never retried."""


FetchRefused = EgressRefused  # the advisory engine's name for it


@dataclass(frozen=True)
class AddressPolicy:
    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def from_strings(cls, networks: Iterable[str]) -> AddressPolicy:
        return cls(tuple(ipaddress.ip_network(net, strict=False) for net in networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be contacted, or None when it may."""
        if any(address in network for network in self.allowed_networks):
            return None
        for network, reason in FORBIDDEN_NETWORKS:
            if address.version == network.version and address in network:
                return reason
        if not address.is_global:  # anything Python knows is not globally routable
            return "not globally routable"
        return None


def host_allowed(host: str, allowlist: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowlist:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*.") and host.endswith(entry[1:]) and host != entry[2:]:
            return True
        if host == entry:
            return True
    return False


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class Target:
    """A checked URL: connect to ``address``, and speak to ``host`` (Host header, SNI)."""

    url: str
    scheme: str
    host: str
    port: int
    address: str
    path: str  # path + query


@dataclass
class UrlGuard:
    allowed_hosts: frozenset[str]
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    allow_plain_http: bool = False
    resolver: Resolver = system_resolver

    async def check(self, url: str) -> Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http") or (scheme == "http" and not self.allow_plain_http):
            raise FetchRefused(f"{url}: scheme {scheme or '(none)'!r} is not allowed (https only)")
        if parts.username or parts.password:
            raise FetchRefused(f"{url}: credentials in the URL are not allowed")
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise FetchRefused(f"{url}: invalid port") from None
        address = await self.endpoint(host, port, label=url)
        path = parts.path or "/"
        if parts.query:
            path += f"?{parts.query}"
        return Target(url=url, scheme=scheme, host=host, port=port, address=address, path=path)

    async def endpoint(self, host: str, port: int, *, label: str | None = None) -> str:
        """The one address to connect to for ``host``: on the allowlist, resolved once,
        and every address it resolves to allowed by the policy. Raises EgressRefused."""
        label = label or f"{host}:{port}"
        host = host.lower()
        if not host:
            raise EgressRefused(f"{label}: no host")
        if not host_allowed(host, self.allowed_hosts):
            raise EgressRefused(f"{label}: host {host} is not on the allowlist")
        addresses = await self._addresses(host, port)
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            reason = self.policy.refusal(address)
            if reason:
                # one bad answer spoils the name: the connection could land on any of them
                raise EgressRefused(f"{label}: {host} resolves to {address}, which is {reason}")
        return addresses[0]

    async def _addresses(self, host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]  # a literal address: nothing to resolve
        except ValueError:
            pass
        try:
            addresses = await self.resolver(host, port)
        except OSError as exc:  # DNS trouble is transient: the fetcher retries ConnectionErrors
            raise ConnectionError(f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise ConnectionError(f"cannot resolve {host}: no addresses")
        return addresses
