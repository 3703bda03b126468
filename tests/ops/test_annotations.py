"""Annotations on the activity log: operators tag and comment entries; the annotation is
an event on the stream (audited, replayed by a new gateway), shown on the entry, filtered
by ?tag= and carried by the CSV and JSON exports. Real nats-server, real engine, real
gateway over HTTP."""

from __future__ import annotations

import csv
import io

import pytest

from contracts.events import EntryAnnotated
from services.runtime.testing import running_engines, settled
from tests.conftest import api_client, serve_gateway
from tests.ops.conftest import Tokens

API = "/api/v1/admin"


@pytest.fixture
async def deploy_engine(settings):
    async with running_engines(settings, ["deploy"]) as hosts:
        await settled(hosts)
        yield hosts


async def first_entry(client, system: str = "deploy") -> dict:
    page = (await client.get(f"{API}/activity-log", params={"system": system, "limit": 5})).json()
    assert page["events"], page
    return page["events"][-1]


async def test_operator_tags_and_comments_an_entry(deploy_engine, settings, tokens: Tokens, tap):
    async with (
        serve_gateway(settings) as url,
        api_client(url, tokens.header(tokens.operator)) as operator,
        api_client(url, tokens.header(tokens.viewer)) as viewer,
    ):
        entry = await first_entry(operator)
        assert entry["id"] and entry["tags"] == [] and entry["annotations"] == []

        body = {
            "tags": ["Incident-42", "false-positive", "incident-42"],
            "comment": "  checked with the team  ",
        }
        response = await operator.post(f"{API}/activity-log/{entry['id']}/annotations", json=body)
        assert response.status_code == 201, response.text
        shown = response.json()["entry"]
        assert shown["id"] == entry["id"]
        assert shown["tags"] == ["incident-42", "false-positive"]  # lowercased, once each
        [note] = shown["annotations"]
        assert note["actor"] == "oscar" and note["comment"] == "checked with the team" and note["time"]

        # a second annotation adds to the first
        more = {"tags": ["reviewed"]}
        response = await operator.post(f"{API}/activity-log/{entry['id']}/annotations", json=more)
        assert response.status_code == 201
        assert response.json()["entry"]["tags"] == ["incident-42", "false-positive", "reviewed"]

        # ?tag= filters: only the annotated entry carries the tag
        page = (await viewer.get(f"{API}/activity-log", params={"tag": "incident-42"})).json()
        assert [e["id"] for e in page["events"]] == [entry["id"]]
        assert (await viewer.get(f"{API}/activity-log", params={"tag": "nothing-so"})).json()["events"] == []

        # the exports carry them
        exported = await viewer.get(f"{API}/activity-log", params={"tag": "reviewed", "format": "csv"})
        [line] = list(csv.DictReader(io.StringIO(exported.text)))
        assert line["id"] == entry["id"]
        assert line["tags"] == "incident-42;false-positive;reviewed"
        assert "oscar" in line["comments"] and "checked with the team" in line["comments"]
        as_json = (
            await viewer.get(f"{API}/activity-log", params={"tag": "reviewed", "format": "json"})
        ).json()
        assert as_json["events"][0]["annotations"][0]["comment"] == "checked with the team"

        # the annotation is an event of its own: audited, with the entry's id and sequence
        event = await tap.wait_for(lambda e: e.type == EntryAnnotated.TYPE)
        payload = event.payload()
        assert (event.actor, event.system, payload.entry_id) == ("oscar", "gateway", entry["id"])
        assert payload.entry_seq == entry["seq"] and payload.tags == ["incident-42", "false-positive"]
        log = (await viewer.get(f"{API}/activity-log", params={"system": "gateway"})).json()["events"]
        assert any(e["action"] == "entry_annotated" and e["actor"] == "oscar" for e in log)

    # a new gateway replays the stream: the annotations are back
    async with serve_gateway(settings) as url, api_client(url, tokens.header(tokens.viewer)) as viewer:
        page = (await viewer.get(f"{API}/activity-log", params={"tag": "reviewed"})).json()
        assert [e["id"] for e in page["events"]] == [entry["id"]]
        assert [n["actor"] for n in page["events"][0]["annotations"]] == ["oscar", "oscar"]


async def test_refusals_change_nothing(deploy_engine, settings, tokens: Tokens, tap):
    async with (
        serve_gateway(settings) as url,
        api_client(url, tokens.header(tokens.operator)) as operator,
        api_client(url, tokens.header(tokens.viewer)) as viewer,
    ):
        entry = await first_entry(operator)
        path = f"{API}/activity-log/{entry['id']}/annotations"
        assert (await viewer.post(path, json={"tags": ["x"]})).status_code == 403
        unknown = await operator.post(f"{API}/activity-log/{'f' * 32}/annotations", json={"tags": ["x"]})
        assert unknown.status_code == 404 and "no activity entry" in unknown.json()["detail"]
        bad_bodies = [
            {},  # neither tags nor a comment
            {"tags": ["has space"]},
            {"tags": ["<script>"]},
            {"tags": ["x" * 33]},
            {"tags": [f"t{i}" for i in range(11)]},
            {"comment": "c" * 1001},
            {"tags": ["ok"], "colour": "red"},  # unknown field
            {"tags": "not-a-list"},
        ]
        for body in bad_bodies:
            response = await operator.post(path, json=body)
            assert response.status_code == 422, (body, response.text)
        bad_id = await operator.post(f"{API}/activity-log/{'a' * 129}/annotations", json={"tags": ["x"]})
        assert bad_id.status_code == 422
        assert tap.matching(lambda e: e.type == EntryAnnotated.TYPE) == []
        assert (await operator.get(f"{API}/activity-log", params={"limit": 1000})).json()["events"][-1][
            "tags"
        ] == []
