"""The egress guard on sinks: the host allowlist, the address policy (private, loopback,
link-local and metadata addresses refused unless their network is allowlisted), and DNS
rebinding (the name is resolved once per connection and the connection goes to that
address, so a second answer cannot redirect it)."""

from __future__ import annotations

import pytest

from contracts.streams import ensure_all
from tests.siem.conftest import Hec, make_certificate, siem_settings, until
from tests.siem.test_sinks import HEC_TOKEN, publish, running_siem, sink_status


def hec_sink(url: str, **extra) -> dict:
    return {
        "name": "splunk",
        "kind": "hec",
        "url": url,
        "token": HEC_TOKEN,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.2,
        **extra,
    }


@pytest.mark.parametrize(
    ("url", "hosts", "networks", "says"),
    [
        (
            "https://evil.test:8088/services/collector/event",
            ["127.0.0.1"],
            ["127.0.0.0/8"],
            "not on the allowlist",
        ),
        ("https://127.0.0.1:8088/services/collector/event", ["127.0.0.1"], [], "loopback"),
        ("https://169.254.169.254/latest/meta-data", ["169.254.169.254"], [], "link-local"),
        ("https://10.1.2.3:8088/services/collector/event", ["10.1.2.3"], ["127.0.0.0/8"], "private"),
        ("https://[::1]:8088/services/collector/event", ["::1"], [], "loopback"),
    ],
)
async def test_refused_destinations_are_never_contacted(url, hosts, networks, says, settings, nc):
    settings = siem_settings(
        settings, [hec_sink(url)], siem_allowed_hosts=hosts, siem_allowed_networks=networks
    )
    await ensure_all(nc.jetstream(), settings)
    async with running_siem(settings) as service:
        status = sink_status(service, "splunk")
        await until(lambda: status.state == "refused", what="the sink refused at start")
        assert says in status.last_error
        await publish(nc, 3)
        await until(lambda: status.failures >= 3, what="delivery attempts refused")
        await service.runners[0].refresh_lag()
        assert status.state == "refused" and status.delivered == 0 and status.lag == 3
        assert service.runners[0].transport.address is None  # no connection was ever opened


async def test_a_syslog_sink_is_guarded_too(settings, nc):
    sink = {"name": "rsyslog", "kind": "syslog", "url": "tcp://127.0.0.1:6514"}
    settings = siem_settings(settings, [sink], siem_allowed_networks=[])
    await ensure_all(nc.jetstream(), settings)
    async with running_siem(settings) as service:
        status = sink_status(service, "rsyslog")
        await until(lambda: status.state == "refused", what="the syslog sink refused")
        assert "loopback" in status.last_error


async def test_dns_rebinding_cannot_redirect_a_sink(http_receivers, tmp_path, settings, nc):
    """'siem.test' first resolves to 127.0.0.2 (allowlisted), later to 127.0.0.1 (not).
    The sink delivers to 127.0.0.2, then, after that receiver goes away, refuses the new
    answer instead of connecting to the decoy on 127.0.0.1 — and the system resolver,
    which has never heard of siem.test, is never asked."""
    certificate = make_certificate(tmp_path / "rebind-tls", ["siem.test"])
    good, decoy = Hec(HEC_TOKEN), Hec(HEC_TOKEN)
    receiver = await http_receivers(good, certificate, host="127.0.0.2")
    await http_receivers(decoy, certificate, host="127.0.0.1", port=receiver.port)  # same port, other address

    answers = {"siem.test": "127.0.0.2"}
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return [answers[host]]

    url = f"https://siem.test:{receiver.port}/services/collector/event"
    sink = hec_sink(url, ca_file=str(certificate.cert))
    settings = siem_settings(
        settings, [sink], siem_allowed_hosts=["siem.test"], siem_allowed_networks=["127.0.0.2/32"]
    )
    await ensure_all(nc.jetstream(), settings)
    async with running_siem(settings, resolver=resolver) as service:
        status = sink_status(service, "splunk")
        await until(lambda: status.state != "starting", what="the sink bound")
        first = await publish(nc, 5)
        await until(lambda: len(good.events) >= 5, what="delivery to the checked address")
        assert service.runners[0].transport.address == "127.0.0.2"

        answers["siem.test"] = "127.0.0.1"  # the attacker's second answer
        await receiver.stop()
        await publish(nc, 5, start=5)
        await until(lambda: status.state == "refused", what="the new answer refused")
        assert "127.0.0.1" in status.last_error and "loopback" in status.last_error
    assert [item["event"]["id"] for item in good.events] == [event.id for event in first]
    assert decoy.events == [] and decoy.refused == 0  # the decoy was never reached
    assert set(asked) == {"siem.test"} and len(asked) >= 2  # resolved by the guard, once per connection
