"""/api/v1/soc and /api/v1/ml through the real gateway, engines and nats-server."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from contracts.settings import Settings
from services.ml.generator import generate
from services.runtime.testing import running_engines
from tests.soc.conftest import wait_until


@pytest.fixture
async def soc_stack(http, soc_settings: Settings):
    """The gateway first, then the engines: the views must pick up what happens live
    (and the replay of an empty stream is instant for every area's view)."""
    async with running_engines(soc_settings, ["ml-retrain", "soc-cycle"]) as hosts:
        await wait_until(lambda: hosts["soc-cycle"].engine.bundle is not None, timeout=30)
        yield hosts


def alert_bodies(n: int, seed: int) -> list[dict]:
    return [msgspec.to_builtins(item.alert) for item in generate(n, seed)]


async def eventually(http, path: str, predicate, timeout: float = 15.0, **params) -> dict:
    """GET until the projection has caught up with what the engines did."""
    latest: dict = {}

    async def check() -> bool:
        nonlocal latest
        response = await http.get(path, params=params)
        assert response.status_code == 200, response.text
        latest = response.json()
        return predicate(latest)

    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, latest
        await asyncio.sleep(0.1)
    return latest


async def test_alerts_in_decisions_out_with_filters_and_cursor_paging(soc_stack, http) -> None:
    one = alert_bodies(1, seed=61)[0]
    response = await http.post("/api/v1/soc/alerts", json=one)
    assert response.status_code == 202 and response.json()["ids"] == [one["id"]]
    batch = alert_bodies(80, seed=62)
    response = await http.post("/api/v1/soc/alerts", json=batch)
    assert response.status_code == 202 and response.json()["accepted"] == 80

    body = await eventually(http, "/api/v1/soc/decisions", lambda b: b["count"] == 81, limit=1000)
    decisions = body["decisions"]
    assert {d["alert_id"] for d in decisions} == {one["id"], *(a["id"] for a in batch)}
    assert all(d["reasons"] and d["model_version"] == "v1" for d in decisions)
    escalated = [d for d in decisions if d["decision"] == "escalate"]

    filtered = (await http.get("/api/v1/soc/alerts", params={"decision": "escalate", "limit": 1000})).json()
    assert {a["id"] for a in filtered["alerts"]} == {d["alert_id"] for d in escalated}
    assert all(a["status"] == "escalated" and a["sla_due"] for a in filtered["alerts"])
    assert filtered["queued"] == 0

    pages, cursor = [], None
    while True:
        params = {"limit": 25, **({"before": cursor} if cursor else {})}
        page = (await http.get("/api/v1/soc/alerts", params=params)).json()
        pages.append([a["id"] for a in page["alerts"]])
        cursor = page["next_before"]
        if cursor is None:
            break
    seen = [alert_id for page in pages for alert_id in page]
    assert len(seen) == len(set(seen)) == 81 and [len(p) for p in pages] == [25, 25, 25, 6]

    critical = (
        await http.get("/api/v1/soc/decisions", params={"severity": "critical", "min_threat": 50})
    ).json()
    assert all(d["severity"] == "critical" and d["scores"]["threat"] >= 50 for d in critical["decisions"])
    stats = (await http.get("/api/v1/soc/stats")).json()
    assert stats["totals"]["alerts_processed"] == 81 and stats["model_in_use"] == "v1"


async def test_an_invalid_alert_gets_a_422_naming_the_field(soc_stack, http) -> None:
    good = alert_bodies(1, seed=63)[0]
    response = await http.post("/api/v1/soc/alerts", json=[good, {**good, "id": "x2", "dst_ip": "not-an-ip"}])
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "$[1].dst_ip" and body["detail"][0]["loc"] == ["body", 1, "dst_ip"]
    assert "'not-an-ip' is not an IPv4 or IPv6 address" in body["message"]
    response = await http.post("/api/v1/soc/alerts", json={"source": "x", "title": "t", "severity": "meh"})
    assert response.status_code == 422 and response.json()["field"] == "$.severity"
    await asyncio.sleep(0.3)
    listed = (await http.get("/api/v1/soc/alerts")).json()
    assert listed["count"] == 0  # nothing of a refused batch was queued, not even the good one


async def test_analyst_feedback_by_http(soc_stack, http) -> None:
    [alert] = alert_bodies(1, seed=64)
    await http.post("/api/v1/soc/alerts", json=alert)
    await eventually(http, "/api/v1/soc/alerts", lambda b: b["count"] == 1)
    path = f"/api/v1/soc/alerts/{alert['id']}/feedback"

    response = await http.post(path, json={"verdict": "true_positive", "note": "confirmed with the user"})
    assert response.status_code == 202
    detail = (await http.get(f"/api/v1/soc/alerts/{alert['id']}")).json()
    assert detail["feedback"]["verdict"] == "true_positive" and detail["status"] == "reviewed"
    assert detail["feedback"]["analyst"] == "admin"  # who authenticated, not who the body names

    assert (await http.post(path, json={"verdict": "perhaps"})).json()["field"] == "$.verdict"
    assert (await http.post(path, json={"verdict": "benign", "analyst": "mallory"})).status_code == 422
    missing = await http.post("/api/v1/soc/alerts/no-such-alert/feedback", json={"verdict": "benign"})
    assert missing.status_code == 404
    batch = [{"alert_id": alert["id"], "verdict": "benign"}, {"alert_id": "nope", "verdict": "benign"}]
    response = await http.post("/api/v1/soc/feedback", json=batch)
    assert response.status_code == 422 and response.json()["field"] == "$[1].alert_id"

    ml_engine = soc_stack["ml-retrain"].engine
    await wait_until(lambda: ml_engine.status_extras()["training_buffer"] == 1)


async def test_model_versions_and_playbooks_are_listed(soc_stack, http) -> None:
    body = await eventually(
        http, "/api/v1/ml/models", lambda b: b["active"] == "v1" and b["soc_version"] == "v1"
    )
    [v1] = body["versions"]
    assert v1["active"] and v1["promoted"] and v1["reason"] == "bootstrap"
    assert {"precision", "recall", "f1", "roc_auc"} <= set(v1["metrics"])
    assert set(v1["sha256"]) == {"alert_classifier", "anomaly_detector", "threat_scorer"}
    assert (await http.get("/api/v1/ml/models/v1")).json()["version"] == "v1"
    assert (await http.get("/api/v1/ml/models/v7")).status_code == 404
    books = (await http.get("/api/v1/soc/playbooks")).json()
    assert books["playbooks"][-1]["name"] == "default-containment"
