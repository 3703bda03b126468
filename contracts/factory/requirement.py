"""A page requirement: the six page types and what each needs, the limits, and the
``RequirementSubmission`` as the factory stores it once validated."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

PAGE_TYPES = ("data_table", "dashboard", "form", "detail", "analytics", "settings")
FEATURES = ("search", "filter", "export", "pagination")
FIELD_TYPES = ("string", "text", "number", "integer", "boolean", "date", "datetime", "email", "url", "enum")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
WRITE_METHODS = ("POST", "PUT", "PATCH")
PRIORITIES = ("low", "medium", "high", "critical")
STATUSES = ("pending", "generating", "generated", "deployed", "failed", "cancelled")

NUMERIC_TYPES = frozenset({"number", "integer"})
SEARCHABLE_TYPES = frozenset({"string", "text", "email", "url", "enum"})
FILTERABLE_TYPES = frozenset({"enum", "boolean"})


@dataclass(frozen=True)
class PageRules:
    """What a page type needs and accepts: features, endpoints by method, fields."""

    features: tuple[str, ...]
    reads: tuple[int, int]  # (min, max) GET endpoints
    writes: tuple[int, int]  # (min, max) POST/PUT/PATCH endpoints
    min_fields: int = 1
    needs_numeric: bool = False
    path_params: bool = False  # {name} segments, filled from the page's query string
    refreshes: bool = True  # may poll its GET endpoints (forms would lose the user's edits)
    endpoint_roles: str = ""  # how the template wires them (the template catalogue shows it)


PAGE_RULES: dict[str, PageRules] = {
    "data_table": PageRules(
        ("search", "filter", "export", "pagination"), (1, 1), (0, 0), endpoint_roles="GET: the list of rows"
    ),
    "dashboard": PageRules(
        ("export",),
        (1, 6),
        (0, 0),
        needs_numeric=True,
        endpoint_roles="GET (1-6): summary objects, fetched in parallel and merged",
    ),
    "form": PageRules(
        (),
        (0, 1),
        (1, 1),
        refreshes=False,
        endpoint_roles="POST/PUT/PATCH: where the form is sent; optional GET: initial values",
    ),
    "detail": PageRules(
        ("export",),
        (1, 5),
        (0, 0),
        path_params=True,
        endpoint_roles="first GET: the entity; further GETs: related records; {name} from ?name=",
    ),
    "analytics": PageRules(
        ("filter", "export"),
        (1, 1),
        (0, 0),
        needs_numeric=True,
        endpoint_roles="GET: the records that are charted and summarised",
    ),
    "settings": PageRules(
        ("search",),
        (1, 1),
        (1, 1),
        refreshes=False,
        endpoint_roles="GET: current settings; PUT/PATCH/POST: save them",
    ),
}

LIMITS = {
    "title": 120,
    "description": 2000,
    "route": 200,
    "route_depth": 6,
    "endpoints": 20,
    "endpoint_path": 200,
    "endpoint_description": 200,
    "fields": 50,
    "field_name": 64,
    "field_label": 80,
    "enum_values": 50,
    "enum_value": 100,
    "requested_by": 128,
    "refresh_min": 5,
    "refresh_max": 86_400,
}


class ApiEndpoint(msgspec.Struct, kw_only=True, frozen=True):
    method: str
    path: str
    description: str = ""


class DataField(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    label: str
    type: str = "string"
    required: bool = False
    values: list[str] = []


class RequirementSubmission(msgspec.Struct, kw_only=True, frozen=True):
    """The spec's RequirementSubmission, after validation (every field checked)."""

    title: str
    page_type: str
    route: str
    description: str = ""
    api_endpoints: list[ApiEndpoint] = []
    data_fields: list[DataField] = []
    features: list[str] = []
    refresh_interval: int = 0  # seconds; 0 = no automatic refresh
    sidebar_section: str = "main"
    sidebar_icon: str = "FileText"
    priority: str = "medium"
    requested_by: str = "anonymous"


SUBMISSION_KEYS = tuple(RequirementSubmission.__struct_fields__)
