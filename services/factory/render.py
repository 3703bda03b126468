"""Rendering a validated requirement into a Next.js App Router page (pure: no I/O
beyond reading the templates once).

Injection-proof by construction, not by review:
- Every ``{{ ... }}`` in a template goes through ``finalize``, which refuses anything
  that is not ``Tsx`` (code this module built) or an int. A template that prints a raw
  string fails to render; it cannot leak one into the output.
- User strings become ``Tsx`` only through ``js_string`` (a JSON string literal with
  ``<``, ``>``, ``&``, U+2028/9 escaped as well) — in JSX as ``{"..."}``, never as text,
  never inside a comment or a template literal (the templates contain no backticks).
- Identifiers become ``Tsx`` only through ``identifier``, which re-checks them.
The imports of a page are derived from what its body uses, against the registry.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import jinja2
import markupsafe

from contracts.factory import (
    FILTERABLE_TYPES,
    LUCIDE_ICONS,
    NUMERIC_TYPES,
    SEARCHABLE_TYPES,
    ApiEndpoint,
    DataField,
    RequirementSubmission,
    is_identifier,
    page_file,
)
from contracts.factory.catalog import API_MODULE, COMPONENTS, TYPES_MODULE

PAGE_SIZE = 25


class Tsx(str):
    """A fragment of TypeScript this module vouches for."""

    __slots__ = ()

    def __html__(self) -> str:  # tells Jinja's autoescape to leave it as it is
        return str(self)


class UnsafeOutput(TypeError):
    """A template tried to print a value that is not vetted code."""


def js_string(value: str) -> Tsx:
    """A TypeScript string literal holding ``value`` as inert data."""
    literal = json.dumps(value, ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        literal = literal.replace(raw, escaped)
    # JSON allows U+2028/U+2029 raw, older JS parsers end a line there
    literal = literal.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Tsx(literal)


def jsx_text(value: str) -> Tsx:
    """User text in JSX children: an expression holding a string literal."""
    return Tsx("{" + js_string(value) + "}")


def identifier(name: str) -> Tsx:
    if not is_identifier(name):
        raise UnsafeOutput(f"not a safe identifier: {name!r}")
    return Tsx(name)


def braced(code: Tsx) -> Tsx:
    """A vetted expression as a JSX attribute value or child: {expr}."""
    if not isinstance(code, Tsx):
        raise UnsafeOutput(f"braced() takes vetted code, not {type(code).__name__}")
    return Tsx("{" + code + "}")


def ts_bool(value: bool) -> Tsx:
    return Tsx("true" if value else "false")


def _finalize(value: Any) -> Any:
    # Markup is what a macro or a {% call %} body returns: template text whose own
    # expressions already passed through here. The templates never use |safe.
    if isinstance(value, Tsx | markupsafe.Markup) or (type(value) is int):
        return value
    raise UnsafeOutput(f"template printed an unvetted {type(value).__name__}: {str(value)[:60]!r}")


def _type_union(values: list[str]) -> Tsx:
    return Tsx(" | ".join(js_string(v) for v in values))


TS_TYPES = {
    "string": "string",
    "text": "string",
    "email": "string",
    "url": "string",
    "date": "string",
    "datetime": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
}
API_CALLS = {"GET": "get", "POST": "post", "PUT": "put", "PATCH": "patch", "DELETE": "delete"}


# --- the view model a template sees ----------------------------------------------------------


@dataclass
class FieldModel:
    name: Tsx
    key: Tsx  # the name as a string literal (object keys, keyof unions)
    label: Tsx
    type: Tsx  # the FieldType literal
    ts_type: Tsx
    required: bool
    numeric: bool
    searchable: bool
    filterable: bool
    enum: bool
    boolean: bool
    dated: bool
    format: Tsx  # ValueFormat literal
    options: list[Tsx]
    empty: Tsx  # the empty value in a form

    @classmethod
    def of(cls, f: DataField) -> FieldModel:
        ts = _type_union(f.values) if f.type == "enum" else Tsx(TS_TYPES[f.type])
        value_format = {
            "number": "number",
            "integer": "integer",
            "date": "date",
            "datetime": "datetime",
            "boolean": "boolean",
        }.get(f.type, "text")
        empty = "false" if f.type == "boolean" else ("null" if f.type in NUMERIC_TYPES else '""')
        return cls(
            name=identifier(f.name),
            key=js_string(f.name),
            label=js_string(f.label),
            type=js_string(f.type),
            ts_type=ts,
            required=f.required,
            numeric=f.type in NUMERIC_TYPES,
            searchable=f.type in SEARCHABLE_TYPES,
            filterable=f.type in FILTERABLE_TYPES,
            enum=f.type == "enum",
            boolean=f.type == "boolean",
            dated=f.type in ("date", "datetime"),
            format=js_string(value_format),
            options=[js_string(v) for v in f.values],
            empty=Tsx(empty),
        )


@dataclass
class EndpointModel:
    method: str
    path: Tsx
    call: Tsx  # api.<call>
    title: Tsx  # a panel title: the description, or the path's last word

    @classmethod
    def of(cls, e: ApiEndpoint) -> EndpointModel:
        words = [s for s in e.path.split("/") if s and not s.startswith("{")]
        fallback = words[-1].replace("-", " ").replace("_", " ").capitalize() if words else "Related"
        return cls(
            e.method, js_string(e.path), identifier(API_CALLS[e.method]), js_string(e.description or fallback)
        )


@dataclass
class PageModel:
    component: Tsx
    record: Tsx  # the row / record / values type name
    title: Tsx
    description: Tsx
    fields: list[FieldModel]
    reads: list[EndpointModel]
    writes: list[EndpointModel]
    features: set[str]
    refresh: int
    export_filename: Tsx
    search_placeholder: Tsx
    missing_params: Tsx
    page_size: int = PAGE_SIZE
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def numeric(self) -> list[FieldModel]:
        return [f for f in self.fields if f.numeric]

    @property
    def non_numeric(self) -> list[FieldModel]:
        return [f for f in self.fields if not f.numeric]

    @property
    def searchable(self) -> list[FieldModel]:
        return [f for f in self.fields if f.searchable]

    @property
    def filterable(self) -> list[FieldModel]:
        return [f for f in self.fields if f.filterable]

    @property
    def key_field(self) -> FieldModel | None:
        """A required scalar field that can key the rows."""
        return next((f for f in self.fields if f.required and not f.boolean), None)

    @property
    def label_field(self) -> FieldModel | None:
        """The field that labels a chart's points: a date first, else any non-number."""
        dated = [f for f in self.fields if f.dated]
        return (dated or self.non_numeric or [None])[0]


def component_base(title: str) -> str:
    """'Vulnerability Risk Matrix' -> 'VulnerabilityRiskMatrix' (ASCII words only)."""
    words = re.findall(r"[A-Za-z0-9]+", title)
    base = "".join(w[:1].upper() + w[1:] for w in words)[:48]
    if not base or not base[0].isalpha():
        base = "Generated" + base
    return base


def page_model(submission: RequirementSubmission) -> PageModel:
    base = component_base(submission.title)
    suffix = {"form": "Values", "settings": "Values", "detail": "Record", "dashboard": "Summary"}
    fields = [FieldModel.of(f) for f in submission.data_fields]
    searchable = [f.label for f in submission.data_fields if f.type in SEARCHABLE_TYPES]
    params = sorted({m for e in submission.api_endpoints for m in re.findall(r"\{(\w+)\}", e.path)})
    return PageModel(
        component=identifier(base + "Page"),
        record=identifier(base + suffix.get(submission.page_type, "Row")),
        title=js_string(submission.title),
        description=js_string(submission.description),
        fields=fields,
        reads=[EndpointModel.of(e) for e in submission.api_endpoints if e.method == "GET"],
        writes=[EndpointModel.of(e) for e in submission.api_endpoints if e.method != "GET"],
        features=set(submission.features),
        refresh=submission.refresh_interval,
        export_filename=js_string(submission.route.strip("/").replace("/", "-")),
        search_placeholder=js_string("Search " + ", ".join(searchable) if searchable else "Search"),
        missing_params=js_string(
            "Open this page with ?" + "&".join(f"{p}=…" for p in params) if params else ""
        ),
    )


# --- rendering ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    tsx_code: str
    code_sha256: str
    code_lines: int
    generation_time_ms: float
    template: str
    template_version: str
    file_path: str  # relative to the frontend root
    api_wiring: dict[str, Any]
    sidebar_entry: dict[str, Any]


_STRING_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_REACT_HOOKS = ("useCallback", "useEffect", "useMemo", "useState")
_REACT_TYPES = ("FormEvent", "ReactNode")
_SHARED_TYPES = (
    "ChartPoint",
    "ColumnDef",
    "DetailItem",
    "FieldSpec",
    "FieldType",
    "FieldValue",
    "FilterOption",
    "SortState",
)


def strip_string_literals(code: str) -> str:
    """The code with every double-quoted string literal emptied (what is code, not data)."""
    return _STRING_LITERAL.sub('""', code)


PAGE_ICON = "PageIcon"  # the local name of the page's lucide icon


def imports_for(body: str, icon: str | None = None) -> str:
    """Import lines for what the body uses, grouped like a linter would sort them.

    ``icon`` is the lucide icon the page shows (imported as PageIcon, so no icon name can
    clash with a name the page declares; only that one icon is bundled)."""
    used = set(_WORD.findall(strip_string_literals(body)))
    lines = []
    hooks = [h for h in _REACT_HOOKS if h in used]
    react_types = [t for t in _REACT_TYPES if t in used]
    if icon is not None and PAGE_ICON in used:
        lines.append(f'import {{ {identifier(icon)} as {PAGE_ICON} }} from "lucide-react";')
    if hooks:
        lines.append(f'import {{ {", ".join(hooks)} }} from "react";')
    if react_types:
        lines.append(f'import type {{ {", ".join(react_types)} }} from "react";')
    if lines:
        lines.append("")
    for name in sorted(n for n in COMPONENTS if n in used):
        lines.append(f'import {{ {name} }} from "{COMPONENTS[name].module}";')
    shared = [t for t in _SHARED_TYPES if t in used]
    if shared:
        lines.append(f'import type {{ {", ".join(shared)} }} from "{TYPES_MODULE}";')
    if "api" in used:
        lines.append(f'import {{ api }} from "{API_MODULE}";')
    return "\n".join(lines)


class Renderer:
    """Loads the six templates once; ``render`` is pure and fast (the bench measures it)."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("services.factory", "templates"),
            # autoescape only to tell macro output (Markup) from raw strings in finalize;
            # nothing reaches the escaper unvetted, so no HTML escaping ever happens
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            finalize=_finalize,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.globals.update(js=js_string, jsx=jsx_text, ts_bool=ts_bool)
        self.env.filters.update(braced=braced)
        self._templates: dict[str, jinja2.Template] = {}
        self.versions: dict[str, str] = {}
        shared = self.env.loader.get_source(self.env, "_shared.tsx.j2")[0]  # type: ignore[union-attr]
        for page_type in ("data_table", "dashboard", "form", "detail", "analytics", "settings"):
            name = f"{page_type}.tsx.j2"
            source = self.env.loader.get_source(self.env, name)[0]  # type: ignore[union-attr]
            self._templates[page_type] = self.env.get_template(name)
            self.versions[page_type] = hashlib.sha256((shared + source).encode()).hexdigest()[:12]
        self._warm_up()

    def _warm_up(self) -> None:
        """Render each template's example once, so the first real request is not the one
        that pays for Jinja compiling the shared macros."""
        from contracts.factory import validate_submission
        from contracts.factory.catalog import TEMPLATES

        for template in TEMPLATES.values():
            submission = validate_submission(template.example_config).submission
            assert submission is not None, f"the {template.type} example does not validate"
            self.render_code(submission)

    def render_code(self, submission: RequirementSubmission) -> str:
        model = page_model(submission)
        body = self._templates[submission.page_type].render(page=model, f=model.features)
        icon = submission.sidebar_icon if submission.sidebar_icon in LUCIDE_ICONS else "FileText"
        return '"use client";\n\n' + imports_for(body, icon) + "\n\n" + body.lstrip("\n")

    def render(self, requirement_id: str, submission: RequirementSubmission) -> Rendered:
        started = time.perf_counter()
        code = self.render_code(submission)
        elapsed = (time.perf_counter() - started) * 1000
        return Rendered(
            tsx_code=code,
            code_sha256=hashlib.sha256(code.encode()).hexdigest(),
            code_lines=code.count("\n"),
            generation_time_ms=round(elapsed, 3),
            template=submission.page_type,
            template_version=self.versions[submission.page_type],
            file_path=page_file(submission.route),
            api_wiring=api_wiring(submission),
            sidebar_entry=sidebar_entry(requirement_id, submission),
        )


# --- what the preview shows beside the code ----------------------------------------------------


def api_wiring(submission: RequirementSubmission) -> dict[str, Any]:
    """Which endpoint feeds which part of the page, through which client call."""
    roles: list[dict[str, Any]] = []
    reads = [e for e in submission.api_endpoints if e.method == "GET"]
    writes = [e for e in submission.api_endpoints if e.method != "GET"]
    read_roles = {
        "data_table": ["rows"],
        "dashboard": ["summary"] * len(reads),
        "detail": ["entity"] + ["related"] * (len(reads) - 1),
        "analytics": ["records"],
        "form": ["initial values"],
        "settings": ["current settings"],
    }[submission.page_type]
    for endpoint, role in zip(reads, read_roles, strict=False):
        roles.append(_wire(endpoint, role, submission.refresh_interval))
    for endpoint in writes:
        roles.append(_wire(endpoint, "submit" if submission.page_type == "form" else "save", 0))
    return {
        "client": f"{API_MODULE}#api",
        "endpoints": roles,
        "refresh_interval_seconds": submission.refresh_interval or None,
        "path_params": sorted(
            {p for e in submission.api_endpoints for p in re.findall(r"\{(\w+)\}", e.path)}
        ),
    }


def _wire(endpoint: ApiEndpoint, role: str, refresh: int) -> dict[str, Any]:
    return {
        "method": endpoint.method,
        "path": endpoint.path,
        "description": endpoint.description,
        "role": role,
        "call": f"api.{API_CALLS[endpoint.method]}",
        "polled": bool(refresh) and endpoint.method == "GET",
    }


def sidebar_entry(requirement_id: str, submission: RequirementSubmission) -> dict[str, Any]:
    return {
        "id": requirement_id,
        "label": submission.title,
        "href": submission.route,
        "section": submission.sidebar_section,
        "icon": submission.sidebar_icon,
        "priority": submission.priority,
    }


def complexity(submission: RequirementSubmission, code: str) -> dict[str, Any]:
    """A rough size of the page: what an engineer would have to read and maintain."""
    components = sorted(n for n in COMPONENTS if re.search(rf"<{n}\b", code))
    hooks = len(re.findall(r"\buse(?:State|Effect|Memo|Callback)\(", code))
    score = (
        len(submission.data_fields)
        + 2 * len(submission.api_endpoints)
        + 2 * len(submission.features)
        + hooks
        + len(components)
        + (2 if submission.refresh_interval else 0)
    )
    level = "low" if score < 15 else "medium" if score < 30 else "high"
    return {
        "score": score,
        "level": level,
        "code_lines": code.count("\n"),
        "components": components,
        "hooks": hooks,
        "endpoints": len(submission.api_endpoints),
        "fields": len(submission.data_fields),
        "features": list(submission.features),
    }
