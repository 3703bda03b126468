"""/api/v1/factory over real HTTP, with the factory and deploy engines on a real
nats-server: the spec's example from submit to deployed, every endpoint's shape, the
errors, raw NATS submissions, the durable queue, and the ledger rebuilt from the stream."""

from __future__ import annotations

import json
import os
import re

import msgspec

from contracts.factory import (
    ACTOR_HEADER,
    OWNERSHIP_MANIFEST,
    REQUIREMENT_ID_HEADER,
    SIDEBAR_ICONS,
    SIDEBAR_REGISTRY,
    SUBMIT_SUBJECT,
    FactoryRequest,
    reply_decoder,
    request_subject,
)
from services.runtime.testing import running_engines
from services.shared.frontend_kit.install import kit_sources
from tests.conftest import ADMIN_ACTOR
from tests.factory.conftest import API, eventually, example
from tests.factory.hostile import hostile_requirements

SUMMARY_FIELDS = {"id", "title", "page_type", "route", "status", "priority", "requested_by", "has_code"}


async def submit(http, body, **headers):
    response = await http.post(f"{API}/requirements", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_vulnerability_risk_matrix_from_submit_to_deployed(line, tap):
    http = line.http
    created = await submit(http, example("data_table"))
    assert created["status"] == "pending" and created["title"] == "Vulnerability Risk Matrix"
    assert set(created) >= SUMMARY_FIELDS and created["has_code"] is False

    generated = await http.post(f"{API}/requirements/{created['id']}/generate")
    assert generated.status_code == 200, generated.text
    assert generated.json()["status"] == "generated" and generated.json()["has_code"] is True
    assert generated.json()["generation_time_ms"] > 0

    preview = (await http.get(f"{API}/requirements/{created['id']}/preview")).json()
    assert set(preview) >= {"tsx_code", "api_wiring", "sidebar_entry", "code_lines"}
    assert preview["tsx_code"].startswith('"use client";')
    assert preview["code_lines"] == preview["tsx_code"].count("\n") > 100
    assert preview["api_wiring"]["endpoints"][0]["path"] == "/api/v1/vulnerabilities"
    assert preview["sidebar_entry"]["href"] == "/vulnerabilities/risk"
    assert preview["sidebar_entry"]["icon"] == "ShieldAlert"
    again = (await http.get(f"{API}/requirements/{created['id']}/preview")).json()
    assert again == preview  # no side effects

    deployed = await http.post(f"{API}/requirements/{created['id']}/deploy")
    assert deployed.status_code == 200, deployed.text
    assert deployed.json()["status"] == "deployed"
    page = line.frontend / "src/app/vulnerabilities/risk/page.tsx"
    assert page.read_text() == preview["tsx_code"]
    sidebar = json.loads((line.frontend / SIDEBAR_REGISTRY).read_text())
    assert [e["href"] for e in sidebar["entries"]] == ["/vulnerabilities/risk"]
    owned = json.loads((line.frontend / OWNERSHIP_MANIFEST).read_text())["files"]
    # the first deploy into the empty root made it a Next.js app with the kit the page imports
    kit = {f.path for f in kit_sources()}
    assert set(owned) == {"src/app/vulnerabilities/risk/page.tsx", SIDEBAR_REGISTRY, SIDEBAR_ICONS} | kit
    for module in re.findall(r'from "@/([^"]+)";', preview["tsx_code"]):
        assert any((line.frontend / "src" / f"{module}{ext}").is_file() for ext in (".ts", ".tsx")), module

    # the deploy engine turns the factory's event into a release holding the page
    deploy = line.hosts["deploy"].engine

    def released():
        history = deploy.status_extras()["deploy_history"]
        return history and history[0]["status"] == "success" and history[0]

    entry = await eventually(released)
    current = line.releases / "current"
    assert os.readlink(current) == entry["release_id"]
    assert (current / "tree/src/app/vulnerabilities/risk/page.tsx").read_text() == preview["tsx_code"]
    board = await eventually(
        lambda: _deploy_card(http, entry["release_id"]), timeout=5
    )  # the dashboard shows the history too (via heartbeats)
    assert board["is_deploying"] is False and board["total_deploys"] >= 1

    detail = (await http.get(f"{API}/requirements/{created['id']}")).json()
    assert [h["status"] for h in detail["history"]] == ["pending", "generating", "generated", "deployed"]
    assert detail["deployed_path"] == "src/app/vulnerabilities/risk/page.tsx"
    events = [e.type for e in tap.matching(lambda e: e.system == "frontend-factory")]
    for kind in (
        "requirement_submitted",
        "requirement_generating",
        "requirement_generated",
        "requirement_deployed",
    ):
        assert kind in events
    submitted = tap.matching(lambda e: e.type == "requirement_submitted")[0]
    assert submitted.actor == ADMIN_ACTOR and submitted.summary.action == "requirement_submitted"


async def _deploy_card(http, release_id):
    card = (await http.get("/api/v1/admin/dashboard")).json()["systems"]["deploy"]
    history = card.get("deploy_history") or []
    return card if history and history[0]["release_id"] == release_id else None


async def test_generate_only_from_pending_or_failed_and_says_why(line):
    created = await submit(line.http, example("dashboard"))
    assert (await line.http.post(f"{API}/requirements/{created['id']}/generate")).status_code == 200
    refused = await line.http.post(f"{API}/requirements/{created['id']}/generate")
    assert refused.status_code == 409
    assert "it is generated" in refused.json()["detail"] and "pending or failed" in refused.json()["detail"]
    assert refused.json()["requirement"]["status"] == "generated"

    cancelled = await line.http.delete(f"{API}/requirements/{created['id']}", params={"reason": "not needed"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    for verb in ("generate", "deploy"):
        response = await line.http.post(f"{API}/requirements/{created['id']}/{verb}")
        assert response.status_code == 409 and "cancelled" in response.json()["detail"]
    assert (await line.http.delete(f"{API}/requirements/{created['id']}")).status_code == 409
    # a cancelled requirement frees its route
    assert (await line.http.post(f"{API}/requirements", json=example("dashboard"))).status_code == 201


async def test_unknown_requirements_and_templates_are_404(line):
    for method, path in (
        ("get", "/requirements/nope"),
        ("get", "/requirements/nope/preview"),
        ("post", "/requirements/nope/generate"),
        ("post", "/requirements/nope/deploy"),
        ("delete", "/requirements/nope"),
        ("get", "/templates/kanban/schema"),
    ):
        response = await getattr(line.http, method)(API + path)
        assert response.status_code == 404, (method, path, response.text)


async def test_preview_before_generation_is_a_409(line):
    created = await submit(line.http, example("form"))
    response = await line.http.get(f"{API}/requirements/{created['id']}/preview")
    assert response.status_code == 409 and "generate it" in response.json()["detail"]


async def test_validation_errors_are_422_per_field(line):
    body = example("data_table", route="/Vulns/[id]", features=["search", "teleport"])
    body["data_fields"][0]["name"] = "cve-id"
    body["api_endpoints"][0]["path"] = "https://evil.example/api"
    response = await line.http.post(f"{API}/requirements", json=body)
    assert response.status_code == 422
    locs = {tuple(error["loc"]): error["msg"] for error in response.json()["detail"]}
    assert ("body", "route") in locs
    assert ("body", "data_fields", 0, "name") in locs
    assert ("body", "api_endpoints", 0, "path") in locs
    assert ("body", "features", 1) in locs
    malformed = await line.http.post(
        f"{API}/requirements", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422 and "malformed JSON" in malformed.json()["detail"][0]["msg"]
    assert (await line.http.get(f"{API}/requirements")).json() == []  # nothing was queued


async def test_a_taken_route_is_a_409_and_idempotency_keys_repeat_the_answer(line):
    first = await submit(line.http, example("data_table"), **{"Idempotency-Key": "vuln-1"})
    repeat = await line.http.post(
        f"{API}/requirements", json=example("data_table"), headers={"Idempotency-Key": "vuln-1"}
    )
    assert repeat.status_code == 200 and repeat.json()["id"] == first["id"]
    other = await line.http.post(f"{API}/requirements", json=example("data_table", title="Another"))
    assert other.status_code == 409 and first["id"] in other.json()["detail"]
    assert len((await line.http.get(f"{API}/requirements")).json()) == 1


async def test_list_filters_and_detail_fields(line):
    table = await submit(line.http, example("data_table"))
    form = await submit(line.http, example("form"))
    await line.http.post(f"{API}/requirements/{form['id']}/generate")
    listed = (await line.http.get(f"{API}/requirements")).json()
    assert [r["id"] for r in listed] == [form["id"], table["id"]]  # newest first
    assert all(set(r) >= SUMMARY_FIELDS for r in listed)
    assert [
        r["id"] for r in (await line.http.get(f"{API}/requirements", params={"status": "generated"})).json()
    ] == [form["id"]]
    only_tables = (await line.http.get(f"{API}/requirements", params={"page_type": "data_table"})).json()
    assert [r["id"] for r in only_tables] == [table["id"]]
    detail = (await line.http.get(f"{API}/requirements/{table['id']}")).json()
    assert set(detail) >= {"api_endpoints", "data_fields", "features", "has_code", "history", "description"}
    assert detail["data_fields"][2]["values"] == ["open", "mitigated", "accepted"]
    assert detail["features"] == ["search", "filter", "export", "pagination"]


async def test_templates_schema_component_library_and_one_shot_preview(line):
    templates = (await line.http.get(f"{API}/templates")).json()
    assert [t["type"] for t in templates] == [
        "data_table",
        "dashboard",
        "form",
        "detail",
        "analytics",
        "settings",
    ]
    for template in templates:
        assert {"label", "description", "config_keys", "example_config"} <= set(template)
        schema = (await line.http.get(f"{API}/templates/{template['type']}/schema")).json()
        assert schema["type"] == "object" and schema["properties"]["page_type"] == {"const": template["type"]}
    components = (await line.http.get(f"{API}/component-library")).json()
    assert {"DataTable", "PageHeader", "FormField", "ChartPanel"} <= {c["name"] for c in components}
    assert all({"name", "description", "props"} <= set(c) and c["props"] for c in components)
    # exactly the components the kit ships, each where the kit installs it
    kit_components = {
        f.path
        for f in kit_sources()
        if f.path.startswith("src/components/factory/") and f.path.endswith(".tsx")
    }
    assert {c["file"] for c in components} == kit_components

    preview = (await line.http.post(f"{API}/generate-preview", json=example("analytics"))).json()
    assert preview["valid"] is True and preview["tsx_code"].startswith('"use client";')
    assert preview["complexity"]["level"] in ("low", "medium", "high") and preview["complexity"]["score"] > 0
    assert preview["validation"] == {"valid": True, "errors": []}
    invalid = (
        await line.http.post(f"{API}/generate-preview", json=example("analytics", route="/a/[b]"))
    ).json()
    assert invalid["valid"] is False and invalid["tsx_code"] is None
    assert invalid["validation"]["errors"][0]["loc"] == ["body", "route"]
    assert (await line.http.get(f"{API}/requirements")).json() == []  # saved nothing

    stats = (await line.http.get(f"{API}/stats")).json()
    assert {
        "total_requirements",
        "total_generated",
        "total_deployed",
        "total_failed",
        "avg_generation_time_ms",
        "success_rate",
    } <= set(stats)


async def test_stats_count_generations_failures_and_deploys(line):
    ok = await submit(line.http, example("detail"))
    foreign = await submit(line.http, example("settings"))
    await line.http.post(f"{API}/requirements/{ok['id']}/generate")
    await line.http.post(f"{API}/requirements/{foreign['id']}/generate")
    await line.http.post(f"{API}/requirements/{ok['id']}/deploy")
    # a page a human wrote is never replaced: the deploy fails and says why
    target = line.frontend / "src/app/settings/notifications/page.tsx"
    target.parent.mkdir(parents=True)
    target.write_text("export default function Mine() { return null; }\n")
    refused = await line.http.post(f"{API}/requirements/{foreign['id']}/deploy")
    assert refused.status_code == 409 and "not written by the factory" in refused.json()["detail"]
    assert target.read_text().startswith("export default function Mine")
    assert refused.json()["requirement"]["status"] == "failed"
    stats = (await line.http.get(f"{API}/stats")).json()
    assert (
        stats["total_requirements"],
        stats["total_generated"],
        stats["total_deployed"],
        stats["total_failed"],
    ) == (
        2,
        2,
        1,
        1,
    )
    assert stats["success_rate"] == 75.0 and stats["avg_generation_time_ms"] > 0
    # failed can be generated again (and so re-deployed once the conflict is resolved)
    assert (await line.http.post(f"{API}/requirements/{foreign['id']}/generate")).status_code == 200
    card = line.hosts["frontend-factory"].snapshot().extras
    assert (
        card["total_requirements"] == 2 and card["total_deployed"] == 1 and card["success_rate_pct"] == 80.0
    )


async def test_a_hostile_requirement_is_stored_and_rendered_as_data(line):
    body = hostile_requirements()["data_table"]
    created = await submit(line.http, body)
    await line.http.post(f"{API}/requirements/{created['id']}/generate")
    preview = (await line.http.get(f"{API}/requirements/{created['id']}/preview")).json()
    assert json.dumps(body["title"]).replace("<", "\\u003c").replace(">", "\\u003e") in preview["tsx_code"]
    assert (await line.http.get(f"{API}/requirements/{created['id']}")).json()["title"] == body["title"]


async def test_raw_nats_submissions_are_validated_by_the_factory(line, nc, tap):
    js = nc.jetstream()
    good = example("form")
    await js.publish(
        SUBMIT_SUBJECT,
        json.dumps(good).encode(),
        headers={REQUIREMENT_ID_HEADER: "raw-1", ACTOR_HEADER: "bob"},
    )
    await js.publish(
        SUBMIT_SUBJECT, b'{"title": "x", "route": "/../etc"}', headers={REQUIREMENT_ID_HEADER: "raw-2"}
    )
    await js.publish(SUBMIT_SUBJECT, b"not json at all")  # what a careless `nats pub` sends
    await js.publish(SUBMIT_SUBJECT, json.dumps(good).encode(), headers={REQUIREMENT_ID_HEADER: "raw-3"})

    submitted = await tap.wait_for(lambda e: e.type == "requirement_submitted")
    assert submitted.actor == "bob" and msgspec.json.decode(submitted.data)["requirement_id"] == "raw-1"
    rejected = await tap.wait_for(lambda e: e.type == "requirement_rejected" and b"raw-2" in bytes(e.data))
    errors = msgspec.json.decode(rejected.data)["errors"]
    assert {tuple(e["loc"]) for e in errors} >= {("route",), ("page_type",)}
    assert rejected.summary.result == "rejected" and rejected.actor == "nats:anonymous"
    await tap.wait_for(lambda e: e.type == "requirement_rejected" and b"malformed JSON" in bytes(e.data))
    conflict = await tap.wait_for(lambda e: e.type == "requirement_rejected" and b"raw-3" in bytes(e.data))
    assert msgspec.json.decode(conflict.data)["reason"] == "conflict"
    listed = (await line.http.get(f"{API}/requirements")).json()
    assert [r["id"] for r in listed] == ["raw-1"]

    # the engine's own request subjects answer a raw `nats req` too
    reply = reply_decoder.decode(
        (
            await nc.request(
                request_subject("generate"), msgspec.json.encode(FactoryRequest(requirement_id="raw-1"))
            )
        ).data
    )
    assert reply.ok and reply.requirement["status"] == "generated"
    bad = reply_decoder.decode(
        (await nc.request(request_subject("deploy"), b'{"requirement": "raw-1"}')).data
    )
    assert not bad.ok and bad.error == "invalid"


async def test_submissions_wait_durably_while_the_factory_is_stopped(line, nc):
    stopped = await line.http.post("/api/v1/admin/emergency-stop/frontend-factory")
    assert stopped.status_code == 200
    queued = await line.http.post(f"{API}/requirements", json=example("analytics"))
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    requirement_id = queued.json()["id"]
    assert (await line.http.get(f"{API}/requirements/{requirement_id}")).status_code == 404
    generate = await line.http.post(f"{API}/requirements/{requirement_id}/generate")
    assert generate.status_code == 409 and generate.json()["error"] == "not_running"

    await line.http.post("/api/v1/admin/start/frontend-factory")

    async def taken_in():
        response = await line.http.get(f"{API}/requirements/{requirement_id}")
        return response.status_code == 200 and response.json()

    assert (await eventually(taken_in))["status"] == "pending"


async def test_the_queue_cycle_generates_pending_requirements_most_urgent_first(line, nc):
    low = await submit(line.http, example("form", priority="low"))
    critical = await submit(line.http, example("detail", priority="critical"))
    reply = await line.http.post("/api/v1/admin/trigger/frontend-factory")
    assert reply.status_code == 200, reply.text

    async def both_generated():
        listed = (await line.http.get(f"{API}/requirements", params={"status": "generated"})).json()
        return len(listed) == 2

    await eventually(both_generated)
    low_detail = (await line.http.get(f"{API}/requirements/{low['id']}")).json()
    critical_detail = (await line.http.get(f"{API}/requirements/{critical['id']}")).json()
    assert critical_detail["history"][-1]["seq"] < low_detail["history"][-1]["seq"]
    assert low_detail["history"][-1]["actor"] == "frontend-factory"

    # a trigger can also name the one requirement to generate
    one = await submit(line.http, example("analytics"))
    named = await line.http.post(
        "/api/v1/admin/trigger/frontend-factory", json={"args": {"requirement_id": one["id"]}}
    )
    assert named.status_code == 200, named.text
    await eventually(lambda: _status_is(line.http, one["id"], "generated"))
    again = await line.http.post(
        "/api/v1/admin/trigger/frontend-factory", json={"args": {"requirement_id": one["id"]}}
    )
    assert again.json()["result"] in (None, {**again.json()["result"], "result": "rejected"})


async def _status_is(http, requirement_id: str, status: str) -> bool:
    return (await http.get(f"{API}/requirements/{requirement_id}")).json()["status"] == status


async def test_the_factory_rebuilds_its_ledger_from_the_stream(line_settings, line, nc):
    created = await submit(line.http, example("data_table"))
    await line.http.post(f"{API}/requirements/{created['id']}/generate")
    await line.http.post(f"{API}/requirements/{created['id']}/deploy")
    before = line.hosts["frontend-factory"].engine.ledger.stats()

    # a second factory process (the first one keeps running) replays the same events
    async with running_engines(line_settings, ["frontend-factory"]) as fresh:
        rebuilt = fresh["frontend-factory"].engine.ledger
        assert rebuilt.stats() == before
        requirement = rebuilt.get(created["id"])
        assert requirement.status == "deployed" and requirement.generated is not None
        preview = (await line.http.get(f"{API}/requirements/{created['id']}/preview")).json()
        assert requirement.generated.tsx_code == preview["tsx_code"]
