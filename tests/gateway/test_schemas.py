"""The OpenAPI document describes what the read routes really return: every GET of the
API declares its 200 response, and the answers of a live gateway over real engines
validate against those models (for the msgspec-encoded routes too, whose model FastAPI
does not check)."""

from __future__ import annotations

import asyncio

from fastapi.routing import APIRoute

from gateway import schemas
from gateway.app import create_app
from gateway.routes import route_modules
from tests.conftest import api_client, serve_gateway

UNDOCUMENTED_OK = {"/api/v1/admin/stream"}  # server-sent events: documented as text/event-stream


def test_every_api_read_declares_its_response(settings):
    documented = settings.model_copy(update={"docs": True})
    app = create_app(documented)
    spec = app.openapi()
    for module in route_modules():
        for route in module.router.routes:
            reads = isinstance(route, APIRoute) and "GET" in route.methods
            if not reads or not route.path.startswith("/api"):
                continue
            ok = spec["paths"][route.path]["get"]["responses"]["200"]
            content = ok.get("content", {})
            assert content, route.path
            if route.path in UNDOCUMENTED_OK:
                continue
            schema = content.get("application/json", {}).get("schema", {})
            assert schema and schema != {}, f"{route.path} has no response schema"


async def test_live_answers_match_their_models(settings, engines, api_headers, nc):
    async with serve_gateway(settings) as url, api_client(url, api_headers) as http:

        async def get(path: str, model, **params):
            response = await http.get(path, params=params)
            assert response.status_code == 200, (path, response.text)
            return model.model_validate(response.json())

        board = await get("/api/v1/admin/dashboard", schemas.Dashboard)
        assert set(board.systems) and board.view.replayed
        row = (await http.get("/api/v1/admin/activity-log", params={"limit": 1})).json()["events"][0]
        path = f"/api/v1/admin/activity-log/{row['id']}/annotations"
        note = await http.post(path, json={"tags": ["drill"]})
        assert note.status_code == 201
        log = await get("/api/v1/admin/activity-log", schemas.ActivityLog, limit=50)
        assert any(entry.annotations for entry in log.events)
        await get("/api/v1/admin/activity-log", schemas.ActivityLog, limit=5, system="deploy", q="dep")
        detail = await get("/api/v1/admin/system/deploy/detail", schemas.SystemDetail)
        assert detail.instances and detail.instances[0].role == "active"
        await get("/api/v1/admin/metrics", schemas.Metrics)
        health = await http.get("/health/details")
        schemas.HealthDetails.model_validate(health.json())
        schemas.Up.model_validate((await http.get("/health")).json())

        alert = {"title": "Brute force on VPN", "severity": "high", "source": "okta", "host": "vpn-1"}
        assert (await http.post("/api/v1/soc/alerts", json=alert)).status_code == 202
        for _ in range(200):
            alerts = await get("/api/v1/soc/alerts", schemas.AlertList)
            if alerts.alerts:
                break
            await asyncio.sleep(0.05)
        assert alerts.alerts
        await get(f"/api/v1/soc/alerts/{alerts.alerts[0].id}", schemas.AlertView)
        await get("/api/v1/soc/decisions", schemas.DecisionList)
        await get("/api/v1/soc/stats", schemas.SocStats)
        await get("/api/v1/soc/hunts", schemas.Hunts)
        models = await get("/api/v1/ml/models", schemas.ModelVersions)
        await get(f"/api/v1/ml/models/{models.versions[0]['version']}", schemas.ModelVersion)
        await get("/api/v1/advisories", schemas.AdvisoryList)
        await get("/api/v1/advisories/feeds", schemas.FeedList)
        await get("/api/v1/factory/stats", schemas.FactoryStats)
        for item in (await http.get("/api/v1/factory/templates")).json():
            schemas.TemplateInfo.model_validate(item)
        for item in (await http.get("/api/v1/factory/component-library")).json():
            schemas.ComponentInfo.model_validate(item)
