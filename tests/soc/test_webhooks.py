"""Webhook ingestion (POST /api/v1/webhooks/alerts/{source}) through the real gateway on
a real nats-server: the signature checked before anything is parsed, the validation
handshake answered only to a verified caller, a redelivery accepted once across a gateway
restart, refusals audited with bounded detail, the body and rate limits holding."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import msgspec
import pytest
from pydantic import SecretStr

from contracts import soc
from contracts.settings import Settings
from contracts.soc import webhooks
from gateway.routes.webhooks import load_sources
from tests.conftest import api_client, serve_gateway
from tests.soc.conftest import payload, wait_until

SAMPLES = Path(__file__).parent / "samples"
WAZUH_SECRET = b"wazuh-webhook-secret-of-at-least-32-bytes!"
STAMPED_SECRET = b"stamped-webhook-secret-also-32-bytes-long"
FILE_SECRET = b"a-secret-that-lives-in-a-file-0123456789"
ROUTE = "/api/v1/webhooks/alerts"


def read(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


@pytest.fixture
def webhook_settings(settings: Settings, tmp_path: Path) -> Settings:
    secret_file = tmp_path / "elastic.secret"
    secret_file.write_bytes(FILE_SECRET + b"\n")
    sources = {
        "wazuh-prod": {"secret": WAZUH_SECRET.decode(), "format": "wazuh"},
        "stamped": {
            "secret": STAMPED_SECRET.decode(),
            "timestamp_header": "X-AOC-Timestamp",
            "signature_header": "X-Hub-Signature-256",
            "delivery_header": "X-GitHub-Delivery",
        },
        "elastic": {"secret_file": str(secret_file)},  # format detected
    }
    return settings.model_copy(
        update={"webhook_sources": SecretStr(json.dumps(sources)), "max_body_bytes": 64 * 1024}
    )


@contextlib.asynccontextmanager
async def webhook_client(settings: Settings):
    """A gateway and a client with no bearer token: webhooks authenticate by signature."""
    async with serve_gateway(settings) as url, api_client(url, {}) as client:
        yield client


def signed(secret: bytes, body: bytes, delivery: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"X-AOC-Signature": webhooks.sign(secret, body), **extra}
    if delivery:
        headers["X-AOC-Delivery"] = delivery
    return headers


# --- the pure parts --------------------------------------------------------------------


def test_signatures():
    body = b'{"rule": {"level": 3}}'
    header = webhooks.sign(WAZUH_SECRET, body)
    assert header.startswith("sha256=") and len(header) == 71
    assert webhooks.verify(WAZUH_SECRET, body, header)
    assert webhooks.verify(WAZUH_SECRET, body, header.removeprefix("sha256=").upper())  # bare hex
    assert not webhooks.verify(WAZUH_SECRET, body + b" ", header)
    assert not webhooks.verify(b"x" * 32, body, header)
    assert not webhooks.verify(WAZUH_SECRET, body, None) and not webhooks.verify(
        WAZUH_SECRET, body, "sha256=zz"
    )
    stamped = webhooks.sign(WAZUH_SECRET, body, "1700000000")
    assert webhooks.verify(WAZUH_SECRET, body, stamped, "1700000000")
    assert not webhooks.verify(WAZUH_SECRET, body, stamped, "1700000001")
    assert webhooks.fresh("1700000000", 1700000100, 300) and not webhooks.fresh("1700000000", 1700000400, 300)
    assert not webhooks.fresh("17e8", 1700000000, 300) and not webhooks.fresh(None, 0, 300)


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({"Bad Name": {"secret": "x" * 40}}, "a name is"),
        ({"a": {"secret": "x" * 40, "secret_file": "/f"}}, "exactly one of"),
        ({"a": {}}, "exactly one of"),
        ({"a": {"secret": "x" * 40, "fromat": "wazuh"}}, "fromat"),
        ({"a": {"secret": "x" * 40, "format": "splunk"}}, "format"),
        ({"a": {"secret": "x" * 40, "signature_header": "X Bad"}}, "signature_header"),
    ],
)
def test_bad_source_configurations_are_refused_with_the_reason(config, complaint):
    with pytest.raises(webhooks.WebhookConfigError, match=complaint):
        webhooks.parse_sources(json.dumps(config))


def test_a_short_secret_is_refused():
    with pytest.raises(webhooks.WebhookConfigError, match="at least 32 bytes"):
        webhooks.check_secret("a", b"short")


# --- through the gateway ---------------------------------------------------------------


async def test_unknown_sources_and_bad_signatures_are_refused_before_parsing(webhook_settings, tap):
    async with webhook_client(webhook_settings) as client:
        response = await client.post(f"{ROUTE}/nobody", content=b"{}")
        assert response.status_code == 404
        # not even valid JSON: a bad signature is a 401, never a 422 about the body
        garbage = b"\x00not json at all" * 10
        response = await client.post(
            f"{ROUTE}/wazuh-prod", content=garbage, headers={"X-AOC-Signature": "sha256=00"}
        )
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("HMAC-SHA256")
        response = await client.post(f"{ROUTE}/wazuh-prod", content=garbage)  # no signature at all
        assert response.status_code == 401
        long_name = "x" * 300
        assert (await client.post(f"{ROUTE}/{long_name}", content=b"{}")).status_code == 404
    [unknown, too_long] = await wait_until(
        lambda: (f := _refusals(tap, "unknown_source")) and len(f) == 2 and f
    )
    assert unknown.source == "nobody" and len(too_long.source) == 64  # bounded
    bad = _refusals(tap, "bad_signature")
    assert len(bad) == 2 and bad[0].source == "wazuh-prod" and bad[0].client == "127.0.0.1"
    events = tap.matching(lambda e: e.type == webhooks.WebhookRefused.TYPE)
    assert all(e.system == "gateway" and e.summary.result == "rejected" for e in events)
    assert not tap.matching(lambda e: e.type == soc.AlertRejected.TYPE)  # the body was never looked at


def _refusals(tap, reason: str) -> list[webhooks.WebhookRefused]:
    return [
        p
        for e in tap.matching(lambda e: e.type == webhooks.WebhookRefused.TYPE)
        if (p := payload(e, webhooks.WebhookRefused)).reason == reason
    ]


async def test_the_validation_handshake_is_answered_only_to_a_verified_caller(webhook_settings, tap):
    token = "Validation: Token-From-The-Producer 123"
    async with webhook_client(webhook_settings) as client:
        refused = await client.post(f"{ROUTE}/wazuh-prod", params={"validationToken": token})
        assert refused.status_code == 401 and token not in refused.text
        wrong = await client.post(
            f"{ROUTE}/wazuh-prod",
            params={"validationToken": token},
            headers={
                "X-AOC-Signature": webhooks.sign(WAZUH_SECRET, b"")
            },  # signed the empty body, not the token
        )
        assert wrong.status_code == 401
        answered = await client.post(
            f"{ROUTE}/wazuh-prod",
            params={"validationToken": token},
            headers={"X-AOC-Signature": webhooks.sign(WAZUH_SECRET, token.encode())},
        )
        assert answered.status_code == 200 and answered.text == token
        assert answered.headers["content-type"].startswith("text/plain")
        assert answered.headers["x-content-type-options"] == "nosniff"
    assert len(_refusals(tap, "bad_signature")) == 2


async def test_a_redelivery_is_accepted_once_even_after_a_gateway_restart(
    webhook_settings, soc_stack, nc, tap
):
    body = read("wazuh/integratord-sshd-5712.json")
    headers = signed(WAZUH_SECRET, body, delivery="delivery-0001")
    js = nc.jetstream()
    async with webhook_client(webhook_settings) as client:
        first = await client.post(f"{ROUTE}/wazuh-prod", content=body, headers=headers)
        assert first.status_code == 202, first.text
        assert first.json()["ids"] == ["1652272159.1549653"] and first.json()["format"] == "wazuh"
        queued = (await js.stream_info(soc.ALERTS_STREAM)).state.last_seq
        again = await client.post(f"{ROUTE}/wazuh-prod", content=body, headers=headers)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert again.json()["first_ids"] == ["1652272159.1549653"]
    async with webhook_client(webhook_settings) as client:  # a new gateway process' worth of state
        after_restart = await client.post(f"{ROUTE}/wazuh-prod", content=body, headers=headers)
        assert after_restart.status_code == 200 and after_restart.json()["duplicate"] is True
        # another delivery id with the same alert: queued under the same Nats-Msg-Id, so the
        # stream keeps one copy; a delivery without an id header is known by its digest
        other = await client.post(
            f"{ROUTE}/wazuh-prod", content=body, headers=signed(WAZUH_SECRET, body, "d-2")
        )
        assert other.status_code == 202
        no_id = read("wazuh/docs-mitre-sshd-100003.json")
        assert (
            await client.post(f"{ROUTE}/wazuh-prod", content=no_id, headers=signed(WAZUH_SECRET, no_id))
        ).status_code == 202
        repeat = await client.post(f"{ROUTE}/wazuh-prod", content=no_id, headers=signed(WAZUH_SECRET, no_id))
        assert repeat.status_code == 200 and repeat.json()["delivery_id"].startswith("sha256:")
    assert (await js.stream_info(soc.ALERTS_STREAM)).state.last_seq == queued + 1  # only the second alert
    decisions = await wait_until(
        lambda: (
            (
                d := [
                    decision.alert.id
                    for e in tap.matching(lambda e: e.type == soc.AlertsTriaged.TYPE)
                    for decision in msgspec.json.decode(e.data, type=soc.AlertsTriaged).decisions
                ]
            )
            and len(d) >= 2
            and d
        )
    )
    assert sorted(decisions) == ["1652272159.1549653", "1684752043.76892"]  # each decided once
    triaged = tap.matching(lambda e: e.type == soc.AlertsTriaged.TYPE)
    assert all(e.actor == "system" for e in triaged)


async def test_mapping_mixed_batches_and_the_audit_actor(webhook_settings, tap):
    body = (
        b"["
        + read("ecs/kibana-8.1.0-threat-match-alert.json")
        + b","
        + read("suricata-eve/oisf-doc-fileinfo.json")
        + b"]"
    )
    async with webhook_client(webhook_settings) as client:
        response = await client.post(
            f"{ROUTE}/elastic", content=body, headers=signed(FILE_SECRET, body, "e-1")
        )
        assert response.status_code == 202 and response.json()["accepted"] == 1
        assert response.json()["rejected"][0]["index"] == 1
        # a verified delivery whose body is no good: the producer hears why (422)
        junk = b"{not json"
        refused = await client.post(
            f"{ROUTE}/elastic", content=junk, headers=signed(FILE_SECRET, junk, "e-2")
        )
        assert refused.status_code == 422
    events = await wait_until(
        lambda: (e := tap.matching(lambda e: e.type == soc.AlertRejected.TYPE)) and len(e) == 2 and e
    )
    assert {e.actor for e in events} == {"webhook:elastic"}
    assert {payload(e, soc.AlertRejected).subject for e in events} == {"POST /api/v1/webhooks/alerts/elastic"}


async def test_a_signed_timestamp_must_be_fresh(webhook_settings, tap):
    body = read("ocsf/okta-detection-finding.json")
    now = str(int(time.time()))
    stale = str(int(time.time()) - 3600)

    def stamped(timestamp: str, secret: bytes = STAMPED_SECRET) -> dict[str, str]:
        return {
            "X-Hub-Signature-256": webhooks.sign(secret, body, timestamp),
            "X-AOC-Timestamp": timestamp,
            "X-GitHub-Delivery": f"gh-{timestamp}",
        }

    async with webhook_client(webhook_settings) as client:
        assert (await client.post(f"{ROUTE}/stamped", content=body, headers=stamped(now))).status_code == 202
        assert (
            await client.post(f"{ROUTE}/stamped", content=body, headers=stamped(stale))
        ).status_code == 401
        unstamped = {"X-Hub-Signature-256": webhooks.sign(STAMPED_SECRET, body)}
        assert (await client.post(f"{ROUTE}/stamped", content=body, headers=unstamped)).status_code == 401
        forged_time = {**stamped(stale), "X-AOC-Timestamp": now}  # a captured request, re-dated
        assert (await client.post(f"{ROUTE}/stamped", content=body, headers=forged_time)).status_code == 401
    assert len(_refusals(tap, "stale_timestamp")) == 2 and len(_refusals(tap, "bad_signature")) == 1


async def test_the_body_limit_holds(webhook_settings):
    big = b"[" + b",".join([read("ocsf/guardduty-detection-finding.json")] * 20) + b"]"  # > 64 KiB
    assert len(big) > webhook_settings.max_body_bytes
    async with webhook_client(webhook_settings) as client:
        response = await client.post(f"{ROUTE}/elastic", content=big, headers=signed(FILE_SECRET, big))
    assert response.status_code == 413


async def test_webhooks_are_rate_limited_per_client(webhook_settings):
    quick = webhook_settings.model_copy(
        update={"webhook_rate_limit_burst": 3, "webhook_rate_limit_per_minute": 1}
    )
    async with webhook_client(quick) as client:
        statuses = [(await client.post(f"{ROUTE}/nobody", content=b"{}")).status_code for _ in range(5)]
    assert statuses[:3] == [404, 404, 404] and statuses[3:] == [429, 429]


def test_a_bad_source_configuration_stops_the_gateway_at_start(settings: Settings, tmp_path: Path):
    """on_startup loads the sources with load_sources: what it refuses, the gateway refuses to start with."""
    broken = settings.model_copy(update={"webhook_sources": SecretStr('{"a": {"secret": "short"}}')})
    with pytest.raises(webhooks.WebhookConfigError, match="at least 32 bytes"):
        load_sources(broken)
    missing = settings.model_copy(
        update={"webhook_sources": SecretStr(json.dumps({"a": {"secret_file": str(tmp_path / "nope")}}))}
    )
    with pytest.raises(webhooks.WebhookConfigError, match="cannot read"):
        load_sources(missing)
    assert load_sources(settings) == {}  # none configured: the route answers 404 to everyone
