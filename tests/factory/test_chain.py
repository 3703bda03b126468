"""The whole factory line on a real nats-server: the integrity scan finds a gap, the
factory requirement is created, generated and deployed, the deploy engine makes a
release, and the release can be rolled back (and stays rolled back)."""

from __future__ import annotations

import os

import msgspec

from contracts import subjects
from contracts.factory import DEPLOY_CONSUMER
from tests.factory.conftest import API, eventually, example, factory_line

ADMIN = "/api/v1/admin"


async def trigger(http, system: str, args: dict | None = None) -> dict:
    response = await http.post(f"{ADMIN}/trigger/{system}", json={"args": args or {}})
    assert response.status_code == 200, response.text
    return response.json()


async def by_route(http, route: str) -> dict | None:
    listed = (await http.get(f"{API}/requirements")).json()
    return next((r for r in listed if r["route"] == route), None)


async def consumer_idle(nc) -> bool:
    """The deploy engine has handled (acked) every event it was sent."""
    info = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, DEPLOY_CONSUMER)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_integrity_gap_to_release_and_rollback(line_settings, api_headers, nc, tap):
    async with factory_line(line_settings, api_headers) as line:
        http = line.http
        integrity = line.hosts["integrity-scan"].engine
        deploy = line.hosts["deploy"].engine

        # 1. the scan asks the gateway for its routes: GET /api/v1/factory/requirements is
        #    a list of records with known fields and no page shows it -> it files one
        await trigger(http, "integrity-scan")
        filed = await eventually(lambda: by_route(http, "/factory/requirements"))
        assert filed["page_type"] == "data_table" and filed["requested_by"] == "integrity-scan"
        detail = (await http.get(f"{API}/requirements/{filed['id']}")).json()
        assert detail["origin"] == "integrity-scan"
        assert detail["api_endpoints"] == [
            {"method": "GET", "path": "/api/v1/factory/requirements", "description": "The records"}
        ]
        assert {f["name"] for f in detail["data_fields"]} >= {"id", "title", "status", "route"}
        status_field = next(f for f in detail["data_fields"] if f["name"] == "status")
        assert status_field["type"] == "enum" and "deployed" in status_field["values"]
        # (the scan that runs when the engine starts may be the one that filed it)
        filing = await eventually(
            lambda: _scans(tap, lambda output: "/factory/requirements" in output["filed"])
        )
        assert len(filing) == 1, "filed once, however many scans ran"
        assert "/factory/requirements" in [m["page_route"] for m in filing[0]["missing_pages"]]
        assert filing[0]["detail"].startswith("Scanned ") and ", generated 1 pages" in filing[0]["detail"]
        assert integrity.status_extras()["pages_generated"] == 1

        # 2. the factory's queue cycle generates it; the next scan files nothing new and
        #    flags that a generated page waits to be deployed
        await trigger(http, "frontend-factory")
        await eventually(lambda: _status(http, filed["id"], "generated"))
        scan = await trigger(http, "integrity-scan")
        await eventually(lambda: integrity.status_extras()["total_scans"] >= 2)
        extras = integrity.status_extras()
        assert extras["pages_generated"] == 1 and extras["pending_deploy"] is True
        flag = await tap.wait_for(lambda e: e.type == "deploy_flagged")
        assert filed["id"] in msgspec.json.decode(flag.data)["waiting_requirements"]
        assert scan["result"] is None or scan["result"].get("pages_generated", 1) == 1

        # 3. deployed through the API: the deploy engine makes release 1
        assert (await http.post(f"{API}/requirements/{filed['id']}/deploy")).status_code == 200
        first = await eventually(lambda: _latest(deploy, "deploy"))
        assert (line.releases / first["release_id"] / "tree/src/app/factory/requirements/page.tsx").is_file()

        # 4. a second page, release 2
        vulns = (await http.post(f"{API}/requirements", json=example("data_table"))).json()
        await http.post(f"{API}/requirements/{vulns['id']}/generate")
        await http.post(f"{API}/requirements/{vulns['id']}/deploy")
        second = await eventually(
            lambda: (r := _latest(deploy, "deploy")) and r["release_id"] != first["release_id"] and r
        )
        assert second["previous_release"] == first["release_id"] and second["changed"] >= 1
        current = line.releases / "current"
        assert os.readlink(current) == second["release_id"]
        assert (current / "tree/src/app/vulnerabilities/risk/page.tsx").is_file()

        # 5. rollback through the admin API: current goes back to release 1
        rolled = await trigger(http, "deploy", {"action": "rollback"})
        assert rolled["ok"] is True
        back = await eventually(lambda: _latest(deploy, "rollback"))
        assert back["release_id"] == first["release_id"] and back["previous_release"] == second["release_id"]
        assert os.readlink(current) == first["release_id"]
        assert not (current / "tree/src/app/vulnerabilities/risk/page.tsx").exists()
        assert deploy.status_extras()["pinned_release"] == first["release_id"]

        # 6. the tree still holds both pages: the scan flags the drift, and the deploy
        #    engine, pinned by the rollback, does not undo it
        flags_before = len(tap.matching(lambda e: e.type == "deploy_flagged"))
        await trigger(http, "integrity-scan")
        await eventually(lambda: len(tap.matching(lambda e: e.type == "deploy_flagged")) > flags_before)
        latest_flag = tap.matching(lambda e: e.type == "deploy_flagged")[-1]
        assert msgspec.json.decode(latest_flag.data)["tree_changed"] is True
        await eventually(lambda: consumer_idle(nc))
        assert os.readlink(current) == first["release_id"]

        # 7. an explicit deploy releases the tree again and unpins
        await trigger(http, "deploy")
        third = await eventually(
            lambda: (r := _latest(deploy, "deploy")) and r["release_id"] != second["release_id"] and r
        )
        assert os.readlink(current) == third["release_id"] and deploy.pinned is None

        # the history is events: a restarted deploy engine shows the same entries
        history = [
            (r["action"], r["status"], r["release_id"]) for r in deploy.status_extras()["deploy_history"]
        ]
        assert [h[0] for h in history[:4]] == ["deploy", "rollback", "deploy", "deploy"]
        card = (await http.get(f"{ADMIN}/system/deploy/detail")).json()
        assert [(r["action"], r["status"], r["release_id"]) for r in card["deploy_history"][:4]] == history[
            :4
        ]
        assert card["error_count"] == 0


async def _status(http, requirement_id: str, status: str) -> bool:
    return (await http.get(f"{API}/requirements/{requirement_id}")).json()["status"] == status


def _scans(tap, predicate) -> list[dict]:
    """The outputs (with the detail line) of the integrity scans that match."""
    found = []
    for event in tap.matching(lambda e: e.system == "integrity-scan" and e.type == "cycle_completed"):
        payload = msgspec.json.decode(event.data)
        if payload["ok"] and predicate(payload["output"]):
            found.append({**payload["output"], "detail": payload["detail"]})
    return found


def _latest(deploy, action: str) -> dict | None:
    history = deploy.status_extras()["deploy_history"]
    return (
        history[0]
        if history and history[0]["action"] == action and history[0]["status"] == "success"
        else None
    )


async def test_a_scan_that_finds_no_gateway_is_skipped_then_runs_when_one_answers(line_settings, tap):
    from services.runtime.testing import running_engines
    from tests.conftest import serve_gateway

    async with running_engines(line_settings, ["integrity-scan"]) as hosts:
        host = hosts["integrity-scan"]
        await eventually(lambda: host.counters.total_runs >= 1)  # the scan at start: no gateway
        assert host.counters.errors == 0 and host.engine.total_scans == 0
        assert not tap.matching(lambda e: e.system == "integrity-scan" and e.type == "cycle_completed")
        async with serve_gateway(line_settings):
            scan = await tap.wait_for(
                lambda e: e.system == "integrity-scan" and e.type == "cycle_completed", timeout=15
            )
        assert scan.payload().ok and scan.payload().output["total_scans"] == 1
        assert host.counters.errors == 0
