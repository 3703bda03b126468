"""Every validation rule of a RequirementSubmission, one case each (pure: no NATS).

The same function runs in the gateway (422 per field) and in the factory (raw NATS
submissions), so these cases cover both doors."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.factory import LIMITS, PAGE_RULES, PAGE_TYPES, submission_schema, validate_submission
from contracts.factory.catalog import TEMPLATES
from tests.factory.conftest import example


def errors_of(body: Any) -> dict[tuple, str]:
    """loc -> the messages on it, joined (a field may break two rules)."""
    result = validate_submission(body)
    assert result.submission is None, "expected the submission to be refused"
    found: dict[tuple, str] = {}
    for error in result.errors:
        found[error.loc] = f"{found[error.loc]} | {error.msg}" if error.loc in found else error.msg
    return found


@pytest.mark.parametrize("page_type", PAGE_TYPES)
def test_every_template_example_is_valid(page_type):
    result = validate_submission(TEMPLATES[page_type].example_config)
    assert result.ok, result.errors
    assert result.submission.page_type == page_type


def test_defaults_fill_the_optional_fields():
    result = validate_submission(
        {
            "title": "  Assets  ",
            "page_type": "data_table",
            "route": "/assets",
            "api_endpoints": [{"path": "/api/v1/assets"}],
            "data_fields": [{"name": "hostName"}],
        }
    )
    assert result.ok, result.errors
    s = result.submission
    assert s.title == "Assets"  # surrounding blanks are not part of a title
    assert s.api_endpoints[0].method == "GET"
    assert s.data_fields[0].label == "Host name" and s.data_fields[0].type == "string"
    assert (s.refresh_interval, s.sidebar_section, s.sidebar_icon, s.priority) == (
        0,
        "main",
        "FileText",
        "medium",
    )
    assert s.requested_by == "anonymous"


ENDPOINT = [{"method": "GET", "path": "/api/v1/vulnerabilities"}]
CASES: list[tuple[str, dict[str, Any], tuple, str]] = [
    # (case, changes to the data_table example, loc, words of the message)
    ("unknown field", {"colour": "red"}, ("colour",), "unknown field"),
    ("title missing", {"title": None}, ("title",), "field required"),
    ("title not text", {"title": 42}, ("title",), "must be a string"),
    ("title blank", {"title": "   "}, ("title",), "must not be blank"),
    ("title too long", {"title": "x" * 121}, ("title",), "at most 120"),
    ("description too long", {"description": "x" * 2001}, ("description",), "at most 2000"),
    ("page type missing", {"page_type": None}, ("page_type",), "field required"),
    ("page type unknown", {"page_type": "kanban"}, ("page_type",), "must be one of: data_table"),
    ("route missing", {"route": None}, ("route",), "field required"),
    ("route not text", {"route": ["/a"]}, ("route",), "must be a string"),
    ("route relative", {"route": "vulns"}, ("route",), "must start with '/'"),
    ("route root", {"route": "/"}, ("route",), "must name a page below '/'"),
    ("route trailing slash", {"route": "/vulns/"}, ("route",), "must not end with '/'"),
    ("route too long", {"route": "/" + "a" * 200}, ("route",), "at most 200"),
    ("route too deep", {"route": "/a/b/c/d/e/f/g"}, ("route",), "at most 6 segments"),
    ("route empty segment", {"route": "/a//b"}, ("route",), "empty segments"),
    ("route dot", {"route": "/a/./b"}, ("route",), "'.' segments"),
    ("route dot dot", {"route": "/a/../b"}, ("route",), "'..' segments"),
    ("route dynamic", {"route": "/vulns/[slug]"}, ("route",), "dynamic segment ([x])"),
    ("route group", {"route": "/(admin)/vulns"}, ("route",), "route group ((x))"),
    ("route slot", {"route": "/@modal/vulns"}, ("route",), "parallel route slot (@x)"),
    ("route private", {"route": "/_internal/vulns"}, ("route",), "private folder (_x)"),
    ("route uppercase", {"route": "/Vulns"}, ("route",), "lowercase slug"),
    ("route spaces", {"route": "/my vulns"}, ("route",), "lowercase slug"),
    ("route double hyphen", {"route": "/a--b"}, ("route",), "lowercase slug"),
    ("route api", {"route": "/api/vulns"}, ("route",), "reserved for the backend API"),
    ("endpoints not a list", {"api_endpoints": "/api/v1/x"}, ("api_endpoints",), "must be a list"),
    ("too many endpoints", {"api_endpoints": ENDPOINT * 21}, ("api_endpoints",), "at most 20"),
    ("endpoint not an object", {"api_endpoints": ["/api/v1/x"]}, ("api_endpoints", 0), "must be an object"),
    (
        "endpoint unknown key",
        {"api_endpoints": [{**ENDPOINT[0], "auth": 1}]},
        ("api_endpoints", 0, "auth"),
        "unknown",
    ),
    (
        "endpoint method",
        {"api_endpoints": [{**ENDPOINT[0], "method": "TRACE"}]},
        ("api_endpoints", 0, "method"),
        "one of",
    ),
    (
        "endpoint path missing",
        {"api_endpoints": [{"method": "GET"}]},
        ("api_endpoints", 0, "path"),
        "required",
    ),
    (
        "endpoint path not text",
        {"api_endpoints": [{"path": 7}]},
        ("api_endpoints", 0, "path"),
        "must be a string",
    ),
    (
        "endpoint absolute URL",
        {"api_endpoints": [{"path": "https://evil.example/api/x"}]},
        ("api_endpoints", 0, "path"),
        "not a URL",
    ),
    (
        "endpoint protocol-relative",
        {"api_endpoints": [{"path": "//evil.example/api"}]},
        ("api_endpoints", 0, "path"),
        "not a URL",
    ),
    (
        "endpoint outside /api",
        {"api_endpoints": [{"path": "/admin/users"}]},
        ("api_endpoints", 0, "path"),
        "starting with /api/",
    ),
    (
        "endpoint too long",
        {"api_endpoints": [{"path": "/api/" + "a" * 200}]},
        ("api_endpoints", 0, "path"),
        "at most 200",
    ),
    (
        "endpoint query",
        {"api_endpoints": [{"path": "/api/v1/x?all=1"}]},
        ("api_endpoints", 0, "path"),
        "query string",
    ),
    (
        "endpoint dot dot",
        {"api_endpoints": [{"path": "/api/v1/../admin"}]},
        ("api_endpoints", 0, "path"),
        "'..' segments",
    ),
    (
        "endpoint empty segment",
        {"api_endpoints": [{"path": "/api/v1//x"}]},
        ("api_endpoints", 0, "path"),
        "empty segments",
    ),
    (
        "endpoint bad character",
        {"api_endpoints": [{"path": "/api/v1/x y"}]},
        ("api_endpoints", 0, "path"),
        "may only contain",
    ),
    (
        "endpoint param off detail",
        {"api_endpoints": [{"path": "/api/v1/x/{id}"}]},
        ("api_endpoints", 0, "path"),
        "only supported on detail",
    ),
    ("endpoint listed twice", {"api_endpoints": ENDPOINT * 2}, ("api_endpoints", 1), "listed twice"),
    ("fields not a list", {"data_fields": {"name": "x"}}, ("data_fields",), "must be a list"),
    (
        "too many fields",
        {"data_fields": [{"name": f"f{i}"} for i in range(51)]},
        ("data_fields",),
        "at most 50",
    ),
    ("field not an object", {"data_fields": ["cve_id"]}, ("data_fields", 0), "must be an object"),
    (
        "field unknown key",
        {"data_fields": [{"name": "a", "width": 3}]},
        ("data_fields", 0, "width"),
        "unknown",
    ),
    ("field name missing", {"data_fields": [{"label": "A"}]}, ("data_fields", 0, "name"), "required"),
    ("field name not text", {"data_fields": [{"name": 1}]}, ("data_fields", 0, "name"), "must be a string"),
    ("field name too long", {"data_fields": [{"name": "a" * 65}]}, ("data_fields", 0, "name"), "at most 64"),
    (
        "field name hyphen",
        {"data_fields": [{"name": "cve-id"}]},
        ("data_fields", 0, "name"),
        "valid identifier",
    ),
    (
        "field name digit first",
        {"data_fields": [{"name": "1st"}]},
        ("data_fields", 0, "name"),
        "valid identifier",
    ),
    (
        "field name injection",
        {"data_fields": [{"name": "a}; alert(1); {"}]},
        ("data_fields", 0, "name"),
        "valid identifier",
    ),
    (
        "field name reserved",
        {"data_fields": [{"name": "class"}]},
        ("data_fields", 0, "name"),
        "reserved word",
    ),
    (
        "field name proto",
        {"data_fields": [{"name": "__proto__"}]},
        ("data_fields", 0, "name"),
        "reserved word",
    ),
    (
        "field name twice",
        {"data_fields": [{"name": "a"}, {"name": "a"}]},
        ("data_fields", 1, "name"),
        "duplicate",
    ),
    (
        "field label too long",
        {"data_fields": [{"name": "a", "label": "x" * 81}]},
        ("data_fields", 0, "label"),
        "at most 80",
    ),
    (
        "field type unknown",
        {"data_fields": [{"name": "a", "type": "money"}]},
        ("data_fields", 0, "type"),
        "one of",
    ),
    (
        "field required not bool",
        {"data_fields": [{"name": "a", "required": "yes"}]},
        ("data_fields", 0, "required"),
        "true or false",
    ),
    (
        "enum without values",
        {"data_fields": [{"name": "a", "type": "enum"}]},
        ("data_fields", 0, "values"),
        "non-empty list",
    ),
    (
        "values on a string",
        {"data_fields": [{"name": "a", "values": ["x"]}]},
        ("data_fields", 0, "values"),
        "only enum",
    ),
    (
        "too many values",
        {"data_fields": [{"name": "a", "type": "enum", "values": [str(i) for i in range(51)]}]},
        ("data_fields", 0, "values"),
        "at most 50",
    ),
    (
        "empty value",
        {"data_fields": [{"name": "a", "type": "enum", "values": [""]}]},
        ("data_fields", 0, "values", 0),
        "non-empty",
    ),
    (
        "value twice",
        {"data_fields": [{"name": "a", "type": "enum", "values": ["x", "x"]}]},
        ("data_fields", 0, "values", 1),
        "duplicate",
    ),
    ("feature unknown", {"features": ["search", "telepathy"]}, ("features", 1), "must be one of"),
    ("feature twice", {"features": ["export", "export"]}, ("features", 1), "listed twice"),
    (
        "search without text",
        {"data_fields": [{"name": "n", "type": "number"}], "features": ["search"]},
        ("features",),
        "'search' needs",
    ),
    (
        "filter without choices",
        {"data_fields": [{"name": "n", "type": "string"}], "features": ["filter"]},
        ("features",),
        "'filter' needs",
    ),
    (
        "table without GET",
        {"api_endpoints": [{"method": "POST", "path": "/api/v1/x"}]},
        ("api_endpoints",),
        "take exactly 1 GET",
    ),
    (
        "table with two GETs",
        {"api_endpoints": [{"path": "/api/v1/a"}, {"path": "/api/v1/b"}]},
        ("api_endpoints",),
        "exactly 1 GET",
    ),
    (
        "table with DELETE",
        {"api_endpoints": [*ENDPOINT, {"method": "DELETE", "path": "/api/v1/x"}]},
        ("api_endpoints",),
        "cannot wire DELETE",
    ),
    ("table without fields", {"data_fields": [], "features": []}, ("data_fields",), "at least 1 data field"),
    ("refresh not a number", {"refresh_interval": "30"}, ("refresh_interval",), "whole number"),
    ("refresh fractional", {"refresh_interval": 2.5}, ("refresh_interval",), "whole number"),
    ("refresh boolean", {"refresh_interval": True}, ("refresh_interval",), "whole number"),
    ("refresh too fast", {"refresh_interval": 3}, ("refresh_interval",), "between 5 and 86400"),
    ("refresh too slow", {"refresh_interval": 86401}, ("refresh_interval",), "between 5 and 86400"),
    ("section", {"sidebar_section": "Main Menu"}, ("sidebar_section",), "lowercase slug"),
    ("icon", {"sidebar_icon": "<svg onload=alert(1)>"}, ("sidebar_icon",), "PascalCase"),
    ("priority", {"priority": "urgent"}, ("priority",), "one of: low, medium, high, critical"),
    ("requested_by too long", {"requested_by": "x" * 129}, ("requested_by",), "at most 128"),
]


@pytest.mark.parametrize(("changes", "loc", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_refuses_with_a_message_on_its_field(changes, loc, words):
    body = example("data_table", **{k: v for k, v in changes.items() if v is not None})
    for key in (k for k, v in changes.items() if v is None):
        del body[key]
    errors = errors_of(body)
    assert loc in errors, errors
    assert words in errors[loc], errors[loc]


PAGE_TYPE_CASES = [
    (
        "form takes no features",
        "form",
        {"features": ["search"]},
        ("features", 0),
        "form pages do not support 'search'",
    ),
    (
        "form needs a write",
        "form",
        {"api_endpoints": [{"path": "/api/v1/x"}]},
        ("api_endpoints",),
        "exactly 1 POST/PUT/PATCH",
    ),
    ("form does not refresh", "form", {"refresh_interval": 30}, ("refresh_interval",), "do not refresh"),
    (
        "settings need a read",
        "settings",
        {"api_endpoints": [{"method": "PUT", "path": "/api/v1/s"}]},
        ("api_endpoints",),
        "exactly 1 GET",
    ),
    (
        "dashboard needs a number",
        "dashboard",
        {"data_fields": [{"name": "state"}]},
        ("data_fields",),
        "number or integer field",
    ),
    (
        "dashboard at most 6 sources",
        "dashboard",
        {"api_endpoints": [{"path": f"/api/v1/s{i}"} for i in range(7)]},
        ("api_endpoints",),
        "1 to 6 GET",
    ),
    (
        "analytics needs a number",
        "analytics",
        {"data_fields": [{"name": "day", "type": "date"}], "features": []},
        ("data_fields",),
        "number or integer",
    ),
    (
        "detail param is an identifier",
        "detail",
        {"api_endpoints": [{"path": "/api/v1/a/{class}"}]},
        ("api_endpoints", 0, "path"),
        "valid identifier",
    ),
]


@pytest.mark.parametrize(
    ("page_type", "changes", "loc", "words"),
    [c[1:] for c in PAGE_TYPE_CASES],
    ids=[c[0] for c in PAGE_TYPE_CASES],
)
def test_page_type_and_features_must_fit_together(page_type, changes, loc, words):
    errors = errors_of(example(page_type, **changes))
    assert loc in errors and words in errors[loc], errors


def test_all_errors_are_reported_at_once():
    errors = errors_of(
        {"title": "", "page_type": "nope", "route": "/a/../b", "data_fields": [{"name": "class"}]}
    )
    assert set(errors) >= {("title",), ("page_type",), ("route",), ("data_fields", 0, "name")}


def test_not_an_object_is_refused():
    assert errors_of(["title"]) == {(): "the submission must be a JSON object"}


def test_limits_are_the_documented_ones():
    # the messages above quote these numbers; change both together
    assert (LIMITS["title"], LIMITS["fields"], LIMITS["endpoints"], LIMITS["route_depth"]) == (120, 50, 20, 6)


@pytest.mark.parametrize("page_type", PAGE_TYPES)
def test_the_schema_narrows_to_the_page_type(page_type):
    schema = submission_schema(page_type)
    assert schema["properties"]["page_type"] == {"const": page_type}
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"title", "page_type", "route"}
    allowed = schema["properties"]["features"]["items"]["enum"]
    assert allowed == list(PAGE_RULES[page_type].features)
    assert set(TEMPLATES[page_type].example_config.get("features", [])) <= set(allowed)
    assert "x-aoc-rules" in schema
    # every key of the example is a property of the schema (the schema is complete)
    assert set(TEMPLATES[page_type].example_config) <= set(schema["properties"])
