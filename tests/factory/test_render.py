"""Rendering (pure): every template's output, the encoders, and the hostile corpus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2
import pytest

from contracts.factory import PAGE_TYPES, catalog, validate_submission
from services.factory.render import (
    Renderer,
    UnsafeOutput,
    api_wiring,
    complexity,
    identifier,
    js_string,
    page_model,
    sidebar_entry,
    strip_string_literals,
)
from tests.factory.conftest import example
from tests.factory.hostile import HOSTILE, HOSTILE_STRUCTURE, MARKERS, hostile_requirements

TEMPLATES_DIR = Path(catalog.__file__).parent / "templates"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def submission(body):
    result = validate_submission(body)
    assert result.ok, result.errors
    return result.submission


@pytest.mark.parametrize("page_type", PAGE_TYPES)
def test_each_template_renders_a_client_page_from_the_registry(renderer, page_type):
    page = renderer.render("req-1", submission(example(page_type)))
    code = page.tsx_code
    assert code.startswith('"use client";\n\n')
    assert page.file_path == f"src/app{example(page_type)['route']}/page.tsx"
    assert re.search(r"^export default function \w+Page\(\) \{$", code, re.M)
    imported = re.findall(r'^import (?:type )?\{ [^}]+ \} from "([^"]+)";$', code, re.M)
    modules = {c.module for c in catalog.COMPONENTS.values()} | {
        catalog.TYPES_MODULE,
        catalog.API_MODULE,
        "react",
        "lucide-react",  # the page's own icon, and only it
    }
    assert imported and set(imported) <= modules
    for endpoint in example(page_type)["api_endpoints"]:
        assert json.dumps(endpoint["path"]) in code  # every endpoint is wired
    for field in example(page_type)["data_fields"]:
        assert json.dumps(field["label"]) in code
    assert page.code_lines == code.count("\n") and len(page.code_sha256) == 64
    assert page.template_version == renderer.versions[page_type]


def test_the_spec_example_wires_its_features(renderer):
    code = renderer.render_code(submission(example("data_table")))
    assert "const REFRESH_INTERVAL_SECONDS = 30;" in code and "window.setInterval(" in code
    for component in (
        "SearchInput",
        "FilterSelect",
        "ExportButton",
        "Pagination",
        "DataTable",
        "RefreshControl",
    ):
        assert f"<{component}" in code
    assert 'status?: "open" | "mitigated" | "accepted" | null;' in code
    assert "cve_id: string;" in code  # required fields are not optional
    assert "rowKey={(row) => String(row.cve_id)}" in code


def test_features_that_are_off_leave_no_trace(renderer):
    code = renderer.render_code(submission(example("data_table", features=[], refresh_interval=0)))
    for absent in (
        "SearchInput",
        "FilterSelect",
        "ExportButton",
        "Pagination",
        "setInterval",
        "REFRESH_INTERVAL",
    ):
        assert absent not in code
    assert "<RefreshControl" in code  # a manual refresh is always there


def test_preview_extras_describe_the_wiring_and_the_sidebar():
    body = submission(example("settings"))
    wiring = api_wiring(body)
    assert [(e["method"], e["role"], e["call"]) for e in wiring["endpoints"]] == [
        ("GET", "current settings", "api.get"),
        ("PUT", "save", "api.put"),
    ]
    assert wiring["client"] == "@/lib/api-client#api"
    entry = sidebar_entry("r1", body)
    assert entry == {
        "id": "r1",
        "label": "Notification Settings",
        "href": "/settings/notifications",
        "section": "settings",
        "icon": "Bell",
        "priority": "medium",
    }


def test_complexity_grows_with_the_page(renderer):
    small = submission(example("data_table", features=[], refresh_interval=0, data_fields=[{"name": "a"}]))
    big = submission(example("data_table"))
    low = complexity(small, renderer.render_code(small))
    high = complexity(big, renderer.render_code(big))
    assert low["score"] < high["score"] and low["code_lines"] < high["code_lines"]
    assert "DataTable" in high["components"] and high["level"] in ("low", "medium", "high")


# --- the safety machinery -------------------------------------------------------------------


def test_js_string_is_an_inert_json_literal():
    for value in HOSTILE:
        literal = js_string(value)
        assert json.loads(literal) == value
        for raw in ("<", ">", "&", "\u2028", "\u2029", "\n"):
            assert raw not in literal


def test_identifiers_are_checked_again_at_the_last_step():
    assert identifier("cve_id") == "cve_id"
    for bad in ("class", "a-b", "x}; alert(1)", "", "1a"):
        with pytest.raises(UnsafeOutput):
            identifier(bad)


def test_a_template_cannot_print_an_unvetted_string(renderer):
    leaky = renderer.env.from_string("const TITLE = {{ title }};")
    with pytest.raises(UnsafeOutput):
        leaky.render(title="${x}`")
    assert leaky.render(title=js_string("${x}`")) == 'const TITLE = "${x}`";'
    with pytest.raises(UnsafeOutput):
        renderer.env.from_string("{{ n }}").render(n=1.5)  # only ints and vetted code
    with pytest.raises(UnsafeOutput):
        renderer.env.from_string("{{ flag }}").render(flag=True)  # not even booleans
    with pytest.raises(jinja2.UndefinedError):
        renderer.env.from_string("{{ missing }}").render()


def test_templates_hold_no_backticks_quotes_or_escape_hatches():
    # user data is only ever in double-quoted JSON literals: no template literals,
    # no single-quoted strings, and no way around finalize
    for path in TEMPLATES_DIR.glob("*.j2"):
        source = path.read_text()
        for forbidden in ("`", "'", "|safe", "Markup", "{% raw"):
            assert forbidden not in source, f"{forbidden!r} in {path.name}"


# --- the hostile corpus -----------------------------------------------------------------------


def skeleton(code: str, page_type: str, body) -> str:
    """The code with every string literal emptied and the page's own names normalised."""
    model = page_model(body)
    return strip_string_literals(code).replace(model.component, "Page").replace(model.record, "Row")


@pytest.mark.parametrize("page_type", PAGE_TYPES)
def test_hostile_text_is_carried_as_data_only(renderer, page_type):
    hostile = submission(hostile_requirements()[page_type])
    code = renderer.render_code(hostile)
    benign = submission(example(page_type))
    # 1. the program is the same program: only the contents of string literals differ
    assert skeleton(code, page_type, hostile) == skeleton(renderer.render_code(benign), page_type, benign)
    # 2. outside string literals, none of the hostile fragments exist (so none is in a
    #    comment, a template literal, JSX text or code)
    outside = strip_string_literals(code)
    for marker in MARKERS:
        assert marker not in outside, marker
    # 3. nothing was lost: every hostile value is in the code as its JSON literal
    assert js_string(hostile.title) in code
    for field in hostile.data_fields:
        assert js_string(field.label) in code
        for value in field.values:
            assert js_string(value) in code
    # 4. characters that end a line in JavaScript never appear raw, not even in a literal
    assert "\u2028" not in code and "\u2029" not in code


@pytest.mark.parametrize(
    "loc", list(HOSTILE_STRUCTURE), ids=[".".join(map(str, k)) for k in HOSTILE_STRUCTURE]
)
def test_hostile_structure_is_refused_on_its_field(loc):
    result = validate_submission(example("data_table", **HOSTILE_STRUCTURE[loc]))
    assert not result.ok
    field_loc = loc[:-1] if loc[-1] == "slug" else loc
    assert field_loc in {error.loc for error in result.errors}
