"""What the integrity scan compares, and what it concludes (pure apart from reading the
frontend tree).

- API resources: list routes of the gateway (a GET without path parameters that
  declares a list response, or has ``<path>/{id}`` beside it).
- Pages: ``src/app/**/page.tsx`` (and .ts/.jsx/.js), with the ``/api/...`` string
  literals their source is wired to.
- Findings: resources no page shows, pages wired to endpoints the gateway does not
  serve, and, for list resources whose record fields are known, the data-table
  requirement that would give them a page.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.factory import (
    APP_DIR,
    EXCLUDED_DIRS,
    FILTERABLE_TYPES,
    IDENTIFIER,
    SEARCHABLE_TYPES,
    SECTION,
    GatewayRoute,
    RouteField,
    is_identifier,
    route_problem,
)

PAGE_FILES = ("page.tsx", "page.ts", "page.jsx", "page.js")
_API_LITERAL = re.compile(r"""["'`](/api/[^"'`\s?#\\]*)""")
_VERSION = re.compile(r"^v\d+$")
MAX_FIELDS = 12  # a generated table with more columns than this helps nobody


@dataclass(frozen=True)
class Page:
    route: str  # the URL path: /vulnerabilities/risk
    file: str  # relative to the frontend root
    endpoints: tuple[str, ...]


@dataclass(frozen=True)
class Resource:
    api_path: str  # /api/v1/factory/requirements
    page_route: str  # /factory/requirements
    fields: tuple[RouteField, ...] | None  # the record's fields, when the route declares them


@dataclass
class Findings:
    resources: list[Resource]
    pages: list[Page]
    missing_pages: list[Resource] = field(default_factory=list)
    broken_pages: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "routes_resources": len(self.resources),
            "pages": len(self.pages),
            "missing_pages": [
                {"api_path": r.api_path, "page_route": r.page_route, "fields_known": r.fields is not None}
                for r in self.missing_pages
            ],
            "broken_pages": self.broken_pages,
        }


# --- pages ------------------------------------------------------------------------------------


def page_route(relative_dir: Path) -> str:
    """The URL of an App Router directory: route groups (x) and slots @x are not in it."""
    parts = [
        p for p in relative_dir.parts if not (p.startswith("(") and p.endswith(")")) and not p.startswith("@")
    ]
    return "/" + "/".join(parts)


def scan_pages(frontend_root: Path) -> list[Page]:
    app = frontend_root / APP_DIR
    pages: list[Page] = []
    if not app.is_dir():
        return pages
    for directory, dirs, files in os.walk(app):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not d.startswith("_"))
        name = next((f for f in PAGE_FILES if f in files), None)
        if name is None:
            continue
        path = Path(directory) / name
        try:
            source = path.read_text(errors="replace")
        except OSError:
            continue
        endpoints = tuple(sorted(set(_API_LITERAL.findall(source))))
        pages.append(
            Page(
                page_route(Path(directory).relative_to(app)),
                path.relative_to(frontend_root).as_posix(),
                endpoints,
            )
        )
    return sorted(pages, key=lambda p: p.route)


# --- API resources ------------------------------------------------------------------------------


def resource_page_route(api_path: str) -> str:
    """/api/v1/factory/requirements -> /factory/requirements (the page that would show it)."""
    segments = [s for s in api_path.split("/") if s][1:]  # drop "api"
    if segments and _VERSION.match(segments[0]):
        segments = segments[1:]
    return "/" + "/".join(segment.lower().replace("_", "-") for segment in segments)


def list_resources(routes: list[GatewayRoute]) -> list[Resource]:
    gets = [r for r in routes if "GET" in r.methods]
    found = []
    for route in gets:
        if "{" in route.path:
            continue
        has_items = any(other.path.startswith(route.path + "/{") for other in gets)
        if route.list_of is None and not has_items:
            continue
        fields = tuple(route.list_of) if route.list_of is not None else None
        found.append(Resource(route.path, resource_page_route(route.path), fields))
    return found


def _segments_match(pattern: str, path: str) -> bool:
    a, b = pattern.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(
        x == y or x.startswith("{") or y.startswith("{") for x, y in zip(a, b, strict=True)
    )


def serves(routes: list[GatewayRoute], endpoint: str) -> bool:
    return any(_segments_match(route.path, endpoint) for route in routes)


# --- the comparison -----------------------------------------------------------------------------


def compare(routes: list[GatewayRoute], pages: list[Page]) -> Findings:
    resources = list_resources(routes)
    findings = Findings(resources=resources, pages=pages)
    page_routes = {page.route for page in pages}
    wired = {endpoint for page in pages for endpoint in page.endpoints}
    for resource in resources:
        if resource.page_route not in page_routes and resource.api_path not in wired:
            findings.missing_pages.append(resource)
    for page in pages:
        missing = [endpoint for endpoint in page.endpoints if not serves(routes, endpoint)]
        if missing:
            findings.broken_pages.append(
                {"route": page.route, "file": page.file, "missing_endpoints": missing}
            )
    return findings


def submission_for(resource: Resource) -> dict[str, Any] | None:
    """The data-table requirement that gives a list resource its page (None: fields unknown)."""
    if resource.fields is None or route_problem(resource.page_route):
        return None
    fields = []
    for route_field in resource.fields:
        if not (IDENTIFIER.match(route_field.name) and is_identifier(route_field.name)):
            continue
        entry: dict[str, Any] = {
            "name": route_field.name,
            "label": _label(route_field.name),
            "type": route_field.type,
        }
        if route_field.type == "enum":
            entry["values"] = route_field.values[:50]
        fields.append(entry)
        if len(fields) >= MAX_FIELDS:
            break
    if not fields:
        return None
    kinds = {f["type"] for f in fields}
    features = ["export", "pagination"]
    if kinds & SEARCHABLE_TYPES:
        features.insert(0, "search")
    if kinds & FILTERABLE_TYPES:
        features.insert(1 if "search" in features else 0, "filter")
    words = [w for w in resource.page_route.strip("/").replace("-", " ").split("/") if w]
    section = words[0].replace(" ", "-") if words else "main"
    return {
        "title": " ".join(w.title() for w in words)[:120],
        "description": f"List of {resource.api_path}; the integrity scan found no page for it.",
        "page_type": "data_table",
        "route": resource.page_route,
        "api_endpoints": [{"method": "GET", "path": resource.api_path, "description": "The records"}],
        "data_fields": fields,
        "features": features,
        "refresh_interval": 60,
        "sidebar_section": section if SECTION.match(section) else "main",
        "sidebar_icon": "Table",
        "priority": "medium",
        "requested_by": "integrity-scan",
    }


def _label(name: str) -> str:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ").split()
    return " ".join(words).capitalize() or name
