"""The integrity scan's comparison (pure): the gateway's route inventory, the pages of a
frontend tree, what is missing, and the requirement it files."""

from __future__ import annotations

from pathlib import Path

from contracts.factory import GatewayRoute, RouteField, validate_submission
from gateway.inventory import route_inventory
from gateway.routes import route_modules
from services.integrity.inventory import (
    compare,
    list_resources,
    page_route,
    resource_page_route,
    scan_pages,
    submission_for,
)


def test_the_gateway_inventory_declares_the_fields_of_list_routes():
    inventory = route_inventory([r for module in route_modules() for r in module.router.routes])
    by_path = {route.path: route for route in inventory.routes}
    requirements = by_path["/api/v1/factory/requirements"]
    assert set(requirements.methods) == {"GET", "POST"}
    fields = {f.name: f for f in requirements.list_of or []}
    assert fields["status"].type == "enum" and "deployed" in fields["status"].values
    assert fields["created_at"].type == "datetime" and fields["has_code"].type == "boolean"
    assert fields["error"].type == "string"  # Optional[str] -> str
    assert by_path["/api/v1/factory/stats"].list_of is None
    assert all(path.startswith("/api/") for path in by_path)


ROUTES = [
    GatewayRoute(
        path="/api/v1/assets", methods=["GET"], list_of=[RouteField(name="hostname", type="string")]
    ),
    GatewayRoute(path="/api/v1/alerts", methods=["GET"]),
    GatewayRoute(path="/api/v1/alerts/{alert_id}", methods=["GET"]),
    GatewayRoute(path="/api/v1/stats", methods=["GET"]),
    GatewayRoute(
        path="/api/v1/cases",
        methods=["GET"],
        list_of=[RouteField(name="state", type="enum", values=["open"])],
    ),
]


def write_page(root: Path, directory: str, source: str) -> None:
    path = root / "src/app" / directory / "page.tsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def test_pages_are_found_with_their_routes_and_endpoints(tmp_path):
    write_page(tmp_path, "(ops)/cases", 'const X = "/api/v1/cases"; const Y = "/api/v1/gone/{id}";')
    write_page(tmp_path, "reports", "export default function R() { return null; }")
    write_page(tmp_path, "_drafts/x", 'const X = "/api/v1/nope";')  # private folders are not routes
    pages = scan_pages(tmp_path)
    assert [(p.route, p.endpoints) for p in pages] == [
        ("/cases", ("/api/v1/cases", "/api/v1/gone/{id}")),
        ("/reports", ()),
    ]
    assert page_route(Path("(group)/@slot/a/b")) == "/a/b"


def test_missing_pages_and_broken_wiring(tmp_path):
    write_page(tmp_path, "cases", 'const X = "/api/v1/cases"; const Y = "/api/v1/gone";')
    write_page(tmp_path, "alerts-view", 'fetch("/api/v1/alerts/42")')  # wired by endpoint, not by route
    findings = compare(ROUTES, scan_pages(tmp_path))
    assert [r.api_path for r in list_resources(ROUTES)] == [
        "/api/v1/assets",
        "/api/v1/alerts",
        "/api/v1/cases",
    ]
    assert [r.api_path for r in findings.missing_pages] == ["/api/v1/assets", "/api/v1/alerts"]
    assert findings.broken_pages == [
        {"route": "/cases", "file": "src/app/cases/page.tsx", "missing_endpoints": ["/api/v1/gone"]}
    ]


def test_the_filed_requirement_is_a_valid_data_table():
    assets, alerts, cases = list_resources(ROUTES)
    assert submission_for(alerts) is None  # fields unknown: reported, not filed
    body = submission_for(cases)
    result = validate_submission(body)
    assert result.ok, result.errors
    assert result.submission.route == "/cases"
    assert result.submission.features == ["search", "filter", "export", "pagination"]
    assert validate_submission(submission_for(assets)).submission.features[0] == "search"
    assert resource_page_route("/api/v2/threat_intel/iocs") == "/threat-intel/iocs"
