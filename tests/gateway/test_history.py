"""Older history than the in-memory window stays reachable behind the same cursor: pages
below the window are read from the stream, one bounded slice per request, filtered like
the window, until the first event the stream holds."""

from __future__ import annotations

import pytest

from contracts import soc
from contracts.events import encode
from contracts.streams import ensure_all
from gateway.readmodels.index import matches_at_word_start
from tests.conftest import api_client, serve_gateway
from tests.gateway.events import mixed_events

API = "/api/v1/admin/activity-log"
WINDOW = 1000
SCAN = 400


async def walk(client, params: dict) -> tuple[list[int], list[dict]]:
    seqs, pages, before = [], [], None
    while True:
        page = (await client.get(API, params=params | ({"before": before} if before else {}))).json()
        pages.append(page)
        seqs += [event["seq"] for event in page["events"]]
        before = page["next_before"]
        if before is None:
            return seqs, pages
        assert len(pages) < 200, "the walk does not end"


def expected(published: list[tuple[int, object]], **f) -> list[int]:
    needle = f.get("q")
    found = []
    for seq, env in reversed(published):
        s = env.summary
        if (
            (f.get("system") is None or env.system == f["system"])
            and (f.get("actor") is None or env.actor == f["actor"])
            and (
                needle is None
                or matches_at_word_start(s.detail.lower(), needle)
                or matches_at_word_start(s.action.lower(), needle)
            )
        ):
            found.append(seq)
    return found


@pytest.fixture
async def stream_with_history(settings, nc):
    js = nc.jetstream()
    await ensure_all(js, settings)
    await soc.ensure_soc_streams(js, settings)
    published = []
    for subject, env in mixed_events(3 * WINDOW, seed=8):
        ack = await js.publish(subject, encode(env), headers={"Nats-Msg-Id": env.id})
        published.append((ack.seq, env))
    return published


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"system": "deploy"},
        {"system": "deploy", "q": "redeploy"},
        {"q": "inc-4711"},
        {"actor": "alice@soc"},
    ],
)
async def test_walking_the_log_reads_below_the_window_from_the_stream(
    settings, api_headers, stream_with_history, filters
):
    narrow = settings.model_copy(
        update={"activity_window": WINDOW, "activity_scan_limit": SCAN, "snapshots": False}
    )
    async with serve_gateway(narrow) as url, api_client(url, api_headers) as client:
        seqs, pages = await walk(client, {"limit": 50, **filters})
    assert seqs == expected(stream_with_history, **filters)
    stream_pages = [page for page in pages if page["source"] == "stream"]
    assert stream_pages, "the walk never left the window"
    for page in stream_pages:
        scanned = page["scanned"]
        assert scanned["to_seq"] - scanned["from_seq"] + 1 <= SCAN  # bounded per request
        assert page["oldest_seq_in_memory"] > scanned["to_seq"]
    memory = [page for page in pages if page["source"] == "memory"]
    assert memory and all(e["seq"] >= memory[0]["oldest_seq_in_memory"] for p in memory for e in p["events"])


async def test_tags_end_with_the_window(settings, api_headers, stream_with_history):
    narrow = settings.model_copy(update={"activity_window": WINDOW, "snapshots": False})
    async with serve_gateway(narrow) as url, api_client(url, api_headers) as client:
        page = (await client.get(API, params={"tag": "incident"})).json()
        assert page["events"] == [] and page["next_before"] is None and page["source"] == "memory"
        first = (await client.get(API, params={"limit": 1000})).json()
        below = (await client.get(API, params={"before": first["oldest_seq_in_memory"], "limit": 5})).json()
        assert below["source"] == "stream" and len(below["events"]) == 5
        assert below["events"][0]["seq"] == first["oldest_seq_in_memory"] - 1
