"""advisory-refresh against a real nats-server: the shipped samples become prioritized
advisories in KV (what the SOC's hunting reads), refreshes are incremental, a failing
feed does not stop the others, and the gateway serves it all."""

from __future__ import annotations

import asyncio
import json

import msgspec

from contracts.advisory import ADVISORIES_BUCKET, FEEDS_BUCKET, Advisory, FeedState
from contracts.commands import reply_decoder
from services.advisory.config import DATA_DIR, AdvisorySettings
from services.launcher.natsserver import free_port
from tests.advisory.conftest import (
    Route,
    advisory_engine,
    config_for,
    sample,
    sample_feeds,
    write_feeds,
)
from tests.conftest import api_client, serve_gateway

SHIPPED = AdvisorySettings(feeds_file=DATA_DIR / "feeds.json", inventory_file=DATA_DIR / "inventory.json")
CRITICAL = ["CVE-2021-44228", "CVE-2024-21762", "CVE-2024-23897", "CVE-2024-3400"]


async def kv_advisories(nc) -> dict[str, Advisory]:
    """What the SOC's threat hunting sees: the bucket, read by a plain client."""
    kv = await nc.jetstream().key_value(ADVISORIES_BUCKET)
    return {key: msgspec.json.decode((await kv.get(key)).value, type=Advisory) for key in await kv.keys()}


async def bucket_last_seq(nc, bucket: str) -> int:
    return (await nc.jetstream().stream_info(f"KV_{bucket}")).state.last_seq


async def trigger(nc, body: dict | None = None):
    msg = await nc.request("aoc.ctl.advisory-refresh.trigger", json.dumps(body or {}).encode(), timeout=5)
    reply = reply_decoder.decode(msg.data)
    assert reply.ok and reply.status == "done", reply
    return reply.result


def published(tap) -> list:
    return tap.matching(lambda e: e.system == "advisory-refresh" and e.type == "advisory_published")


async def test_shipped_samples_become_prioritized_advisories_and_a_second_refresh_adds_nothing(
    settings, nc, tap
):
    async with advisory_engine(settings, SHIPPED) as host:
        await tap.wait_for(lambda e: e.type == "cycle_completed" and e.system == "advisory-refresh")
        advisories = await kv_advisories(nc)
        assert len(advisories) == 13
        assert sorted(a.id for a in advisories.values() if a.priority == "critical") == CRITICAL
        pan = advisories["CVE-2024-3400"]
        assert pan.known_exploited and pan.affected_assets == ["fw-edge-01"]
        assert {"203.0.113.77", "nhdata-sync.example.net"} <= {ioc.value for ioc in pan.iocs}
        assert len(published(tap)) == 13
        extras = host.snapshot().extras
        assert extras["total_advisories"] == 13 and extras["feed_count"] == 4
        assert {feed["status"] for feed in extras["feeds"].values()} == {"ok"}

        seq_before = await bucket_last_seq(nc, ADVISORIES_BUCKET)
        result = await trigger(nc, {"actor": "analyst"})
        assert (result["new"], result["updated"]) == (0, 0)
        assert {feed["status"] for feed in result["feeds"].values()} == {"not_modified"}
        full = await trigger(nc, {"args": {"full": True}})  # re-read and re-derive everything
        assert (full["new"], full["updated"]) == (0, 0)
        assert {feed["status"] for feed in full["feeds"].values()} == {"ok"}
        assert await bucket_last_seq(nc, ADVISORIES_BUCKET) == seq_before  # not one write
        assert len(published(tap)) == 13

    # a restarted engine knows its advisories and feed states from KV
    async with advisory_engine(settings, SHIPPED) as host:
        assert host.snapshot().extras["total_advisories"] == 13
        again = await trigger(nc)
        assert again["new"] == 0 and await bucket_last_seq(nc, ADVISORIES_BUCKET) == seq_before


async def test_failing_feeds_are_marked_while_the_others_refresh(settings, nc, tap, tmp_path, feed_server):
    feed_server.routes["/nvd.json"] = Route(body=sample("nvd_cve"))
    broken = tmp_path / "broken_kev.json"
    broken.write_text('{"vulnerabilities": [{"cveID": ')  # truncated download
    closed_port = free_port()
    feeds = [
        sample_feeds()[0],  # CISA KEV from a file
        {"name": "nvd-http", "format": "nvd_cve", "url": feed_server.url("/nvd.json")},
        {"name": "malformed", "format": "cisa_kev", "path": str(broken)},
        {"name": "unreachable", "format": "rss", "url": f"http://127.0.0.1:{closed_port}/feed.xml"},
        {"name": "not-allowed", "format": "stix", "url": "https://intel.evil.example/bundle.json"},
    ]
    config = config_for(write_feeds(tmp_path, feeds, allowed_hosts=["127.0.0.1"]))
    async with advisory_engine(settings, config) as host:
        cycle = await tap.wait_for(lambda e: e.type == "cycle_completed" and e.system == "advisory-refresh")
        assert (cycle.summary.result, cycle.payload().ok) == ("partial", False)
        states = host.engine.feed_states
        assert {name: state.status for name, state in states.items()} == {
            "sample-cisa-kev": "ok",
            "nvd-http": "ok",
            "malformed": "failing",
            "unreachable": "failing",
            "not-allowed": "failing",
        }
        assert "not valid JSON" in states["malformed"].last_error
        assert "ConnectError" in states["unreachable"].last_error
        assert "not on the allowlist" in states["not-allowed"].last_error
        advisories = await kv_advisories(nc)
        assert advisories["CVE-2024-6387"].cvss == 8.1  # from the HTTP NVD feed
        assert advisories["CVE-2024-1709"].known_exploited  # from the KEV file
        failing = tap.matching(lambda e: e.type == "feed_health_changed")
        assert sorted(e.payload().feed for e in failing) == ["malformed", "not-allowed", "unreachable"]
        assert host.snapshot().extras["feeds_failing"] == 3

        broken.write_bytes(sample("cisa_kev"))  # the next download is whole
        result = await trigger(nc)
        assert result["feeds"]["malformed"]["status"] == "ok"
        await tap.wait_for(lambda e: e.type == "feed_health_changed" and e.payload().status == "ok")
        assert host.engine.feed_states["malformed"].consecutive_failures == 0
        assert host.engine.feed_states["unreachable"].consecutive_failures == 2


async def test_http_feed_is_incremental_by_etag_and_watermark(settings, nc, tap, tmp_path, feed_server):
    catalog = json.loads(sample("cisa_kev"))
    feed_server.routes["/kev.json"] = Route(body=json.dumps(catalog).encode(), etag='"v1"')
    feeds = [{"name": "kev-http", "format": "cisa_kev", "url": feed_server.url("/kev.json")}]
    config = config_for(write_feeds(tmp_path, feeds, allowed_hosts=["127.0.0.1"]))
    async with advisory_engine(settings, config) as host:
        await tap.wait_for(lambda e: e.type == "cycle_completed" and e.system == "advisory-refresh")
        assert host.snapshot().extras["total_advisories"] == 8
        unchanged = await trigger(nc)
        assert unchanged["feeds"]["kev-http"]["status"] == "not_modified" and unchanged["new"] == 0
        assert feed_server.requests_to("/kev.json")[-1]["if-none-match"] == '"v1"'

        catalog["vulnerabilities"].insert(
            0,
            {
                "cveID": "CVE-2024-8963",
                "vendorProject": "Ivanti",
                "product": "Cloud Services Appliance (CSA)",
                "vulnerabilityName": "Ivanti Cloud Services Appliance (CSA) Path Traversal Vulnerability",
                "dateAdded": "2024-11-19",
                "shortDescription": "Ivanti CSA contains a path traversal vulnerability.",
                "requiredAction": "Apply mitigations per vendor instructions.",
                "dueDate": "2024-12-10",
                "knownRansomwareCampaignUse": "Unknown",
                "notes": "",
            },
        )
        feed_server.routes["/kev.json"] = Route(body=json.dumps(catalog).encode(), etag='"v2"')
        grown = await trigger(nc)
        assert (grown["new"], grown["updated"], grown["changed"]) == (1, 0, ["CVE-2024-8963"])
        state = host.engine.feed_states["kev-http"]
        # below the watermark (2024-10-23) nothing is re-read; the item at it is (inclusive on purpose)
        assert state.item_count == 9 and state.new_items == 2
        assert state.etag == '"v2"' and state.watermark.isoformat().startswith("2024-11-19")
        ivanti = (await kv_advisories(nc))["CVE-2024-8963"]
        assert ivanti.priority == "high" and ivanti.affected_assets == []


async def test_gateway_lists_filters_pages_and_shows_feed_health(settings, nc, http, api_headers):
    async with advisory_engine(settings, SHIPPED):
        for _ in range(100):  # the gateway follows the bucket live
            body = (await http.get("/api/v1/advisories")).json()
            if body["total"] == 13:
                break
            await asyncio.sleep(0.05)
        assert body["total"] == 13 and body["counts_by_priority"] == {
            "critical": 4,
            "high": 5,
            "medium": 3,
            "low": 1,
        }
        critical = (await http.get("/api/v1/advisories", params={"priority": "critical"})).json()
        assert sorted(a["id"] for a in critical["advisories"]) == CRITICAL
        assert "evidence" not in critical["advisories"][0]
        urgent = (await http.get("/api/v1/advisories", params=[("priority", "critical,high")])).json()
        assert urgent["total"] == 9
        exploited = (await http.get("/api/v1/advisories", params={"known_exploited": "true"})).json()
        assert exploited["total"] == 8
        mine = (await http.get("/api/v1/advisories", params={"asset": "fw-edge-01"})).json()
        assert [a["id"] for a in mine["advisories"]] == ["CVE-2024-3400"]
        not_mine = (await http.get("/api/v1/advisories", params={"affected": "false", "min_cvss": 9})).json()
        assert [a["id"] for a in not_mine["advisories"]] == ["CVE-2024-5910"]
        text = (await http.get("/api/v1/advisories", params={"q": "lumma"})).json()
        assert text["total"] == 1 and text["advisories"][0]["priority"] == "medium"

        pages, offset = [], 0
        while offset is not None:
            page = (await http.get("/api/v1/advisories", params={"limit": 5, "offset": offset})).json()
            pages.append([a["id"] for a in page["advisories"]])
            offset = page["next_offset"]
        walked = [advisory_id for page in pages for advisory_id in page]
        assert [len(page) for page in pages] == [5, 5, 3] and len(set(walked)) == 13
        assert walked[:4] == [a["id"] for a in body["advisories"][:4]]  # most urgent first
        assert {a["priority"] for a in body["advisories"][:4]} == {"critical"}

        feeds = (await http.get("/api/v1/advisories/feeds")).json()
        assert feeds["count"] == 4 and feeds["failing"] == []
        assert {f["name"]: f["item_count"] for f in feeds["feeds"]} == {
            "cisa-kev": 8,
            "nvd-recent": 6,
            "sector-cert-stix": 2,
            "vendor-advisories": 4,
        }
        assert all(f["last_success"] and f["status"] == "ok" for f in feeds["feeds"])

        one = (await http.get("/api/v1/advisories/CVE-2024-3400")).json()
        assert one["sources"] == ["cisa-kev", "nvd-recent", "sector-cert-stix"]
        assert set(one["evidence"]) == {
            "cisa-kev:CVE-2024-3400",
            "nvd-recent:CVE-2024-3400",
            "sector-cert-stix:CVE-2024-3400",
        }
        assert (await http.get("/api/v1/advisories/CVE-1999-0001")).status_code == 404
        assert (await http.get("/api/v1/advisories", params={"priority": "urgent"})).status_code == 422

    # a gateway started afterwards rebuilds the same view from KV alone
    async with serve_gateway(settings) as url, api_client(url, api_headers) as fresh:
        rebuilt = (await fresh.get("/api/v1/advisories", params={"limit": 500})).json()
        feeds_again = (await fresh.get("/api/v1/advisories/feeds")).json()
    assert [a["id"] for a in rebuilt["advisories"]] == walked
    assert feeds_again["feeds"] == feeds["feeds"]
    raw = await nc.jetstream().key_value(FEEDS_BUCKET)
    assert msgspec.json.decode((await raw.get("cisa-kev")).value, type=FeedState).status == "ok"
