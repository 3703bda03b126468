"""Validation of a submission: one pure function over decoded JSON, run by the gateway
before enqueuing and by the factory at intake (a raw NATS publish skips the gateway),
so both sides agree to the letter. It returns every error at once, each with its
location (FastAPI's 422 shape)."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.factory.icons import LUCIDE_ICONS, LUCIDE_VERSION
from contracts.factory.requirement import (
    FEATURES,
    FIELD_TYPES,
    FILTERABLE_TYPES,
    HTTP_METHODS,
    LIMITS,
    NUMERIC_TYPES,
    PAGE_RULES,
    PAGE_TYPES,
    PRIORITIES,
    SEARCHABLE_TYPES,
    SUBMISSION_KEYS,
    WRITE_METHODS,
    ApiEndpoint,
    DataField,
    PageRules,
    RequirementSubmission,
)

SLUG_SEGMENT = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ICON = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
SECTION = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
API_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
PATH_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
RESERVED_ROUTES = ("api",)  # /api/... belongs to the backend behind the same origin

# Reserved words of JavaScript (strict mode, which modules are), and the property names
# that mean something on every object. TypeScript's contextual keywords (type, string,
# ...) stay allowed: they are valid identifiers and common field names.
RESERVED_IDENTIFIERS = frozenset(
    {
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "debugger",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "function",
        "if",
        "implements",
        "import",
        "in",
        "instanceof",
        "interface",
        "let",
        "new",
        "null",
        "package",
        "private",
        "protected",
        "public",
        "return",
        "static",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "typeof",
        "var",
        "void",
        "while",
        "with",
        "yield",
        "arguments",
        "eval",
        "constructor",
        "prototype",
        "__proto__",
    }
)


class FieldError(msgspec.Struct, frozen=True):
    loc: tuple[str | int, ...]  # ("route",) / ("data_fields", 1, "name")
    msg: str
    type: str = "value_error"

    def as_fastapi(self) -> dict[str, Any]:
        return {"loc": ["body", *self.loc], "msg": self.msg, "type": self.type}


@dataclass
class Validation:
    submission: RequirementSubmission | None
    errors: list[FieldError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.submission is not None

    def as_dict(self) -> dict[str, Any]:
        return {"valid": self.ok, "errors": [error.as_fastapi() for error in self.errors]}


def is_identifier(name: str) -> bool:
    return (
        bool(IDENTIFIER.match(name))
        and name not in RESERVED_IDENTIFIERS
        and not keyword.iskeyword(name)
        and not name.startswith("__")
    )


def route_problem(route: str) -> str | None:
    """Why a page route is refused, or None. Lowercase slug segments under '/'."""
    if not route.startswith("/"):
        return "must start with '/'"
    if len(route) > LIMITS["route"]:
        return f"must be at most {LIMITS['route']} characters"
    if route == "/":
        return "must name a page below '/', e.g. /vulnerabilities/risk"
    if route.endswith("/"):
        return "must not end with '/'"
    segments = route[1:].split("/")
    if len(segments) > LIMITS["route_depth"]:
        return f"must have at most {LIMITS['route_depth']} segments"
    for segment in segments:
        if segment == "":
            return "must not contain empty segments ('//')"
        if segment in (".", ".."):
            return f"must not contain '{segment}' segments"
        if segment.startswith("[") or segment.endswith("]"):
            return f"segment {segment!r} is a Next.js dynamic segment ([x]); use a query parameter instead"
        if segment.startswith("("):
            return f"segment {segment!r} is a Next.js route group ((x)) and is not allowed"
        if segment.startswith("@"):
            return f"segment {segment!r} is a Next.js parallel route slot (@x) and is not allowed"
        if segment.startswith("_"):
            return f"segment {segment!r} is a Next.js private folder (_x) and is not allowed"
        if not SLUG_SEGMENT.match(segment):
            return f"segment {segment!r} must be a lowercase slug: letters a-z, digits and single hyphens"
    if segments[0] in RESERVED_ROUTES:
        return f"'/{segments[0]}' is reserved for the backend API"
    return None


def endpoint_problem(path: str, *, path_params: bool) -> str | None:
    """Why an API endpoint path is refused: only relative /api/... paths."""
    if "://" in path or path.startswith("//"):
        return "must be a relative path on this origin, not a URL"
    if not path.startswith("/api/"):
        return "must be a relative path starting with /api/"
    if len(path) > LIMITS["endpoint_path"]:
        return f"must be at most {LIMITS['endpoint_path']} characters"
    if "?" in path or "#" in path:
        return "must not carry a query string or fragment"
    for segment in path[1:].split("/"):
        if segment == "":
            return "must not contain empty segments ('//') or end with '/'"
        if segment in (".", ".."):
            return f"must not contain '{segment}' segments"
        param = PATH_PARAM.match(segment)
        if param:
            if not path_params:
                return f"path parameter {segment} is only supported on detail pages"
            if not is_identifier(param.group(1)):
                return f"path parameter {segment} must be a valid identifier"
            continue
        if not API_SEGMENT.match(segment):
            return f"segment {segment!r} may only contain letters, digits and . _ ~ -"
    return None


class _Checker:
    """Collects errors while reading one submission (plain JSON values)."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, loc: tuple[str | int, ...], msg: str, kind: str = "value_error") -> None:
        self.errors.append(FieldError(loc, msg, kind))

    def text(
        self,
        raw: dict[str, Any],
        key: str,
        loc: tuple[str | int, ...],
        *,
        required: bool = False,
        max_length: int,
        default: str = "",
    ) -> str:
        value = raw.get(key)
        if value is None:
            if required:
                self.fail((*loc, key), "field required", "missing")
            return default
        if not isinstance(value, str):
            self.fail((*loc, key), "must be a string", "type_error")
            return default
        value = value.strip()
        if required and not value:
            self.fail((*loc, key), "must not be blank")
        if len(value) > max_length:
            self.fail((*loc, key), f"must be at most {max_length} characters")
        return value

    def choice(
        self,
        raw: dict[str, Any],
        key: str,
        loc: tuple[str | int, ...],
        choices: tuple[str, ...],
        *,
        default: str | None = None,
    ) -> str | None:
        value = raw.get(key, default)
        if value is None:
            self.fail((*loc, key), "field required", "missing")
            return None
        if value not in choices:
            self.fail((*loc, key), f"must be one of: {', '.join(choices)} (got {value!r:.60})", "enum")
            return None
        return value

    def items(self, raw: dict[str, Any], key: str, limit: int) -> list[Any]:
        value = raw.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail((key,), "must be a list", "type_error")
            return []
        if len(value) > limit:
            self.fail((key,), f"must have at most {limit} items")
            return value[:limit]
        return value


def validate_submission(raw: Any) -> Validation:
    """Check a decoded JSON submission. Never raises; returns every error at once."""
    check = _Checker()
    if not isinstance(raw, dict):
        check.fail((), "the submission must be a JSON object", "type_error")
        return Validation(None, check.errors)
    for unknown in sorted(set(raw) - set(SUBMISSION_KEYS))[:10]:
        check.fail((unknown,), "unknown field", "extra_forbidden")

    title = check.text(raw, "title", (), required=True, max_length=LIMITS["title"])
    description = check.text(raw, "description", (), max_length=LIMITS["description"])
    page_type = check.choice(raw, "page_type", (), PAGE_TYPES)
    rules = PAGE_RULES.get(page_type or "")

    route = raw.get("route")
    if route is None:
        check.fail(("route",), "field required", "missing")
    elif not isinstance(route, str):
        check.fail(("route",), "must be a string", "type_error")
    else:
        problem = route_problem(route)
        if problem:
            check.fail(("route",), problem)

    endpoints = _endpoints(check, raw, rules)
    fields = _fields(check, raw)
    features = _features(check, raw, page_type, rules, fields)
    if rules is not None:
        _fit_page_type(check, page_type or "", rules, endpoints, fields)

    refresh = raw.get("refresh_interval", 0)
    if refresh is None:
        refresh = 0
    if isinstance(refresh, bool) or not isinstance(refresh, int):
        check.fail(("refresh_interval",), "must be a whole number of seconds", "type_error")
        refresh = 0
    elif refresh != 0 and not LIMITS["refresh_min"] <= refresh <= LIMITS["refresh_max"]:
        check.fail(
            ("refresh_interval",),
            f"must be 0 (off) or between {LIMITS['refresh_min']} and {LIMITS['refresh_max']} seconds",
        )
    elif refresh and rules is not None and not rules.refreshes:
        check.fail(("refresh_interval",), f"{page_type} pages do not refresh (it would discard edits); use 0")

    section = raw.get("sidebar_section", "main")
    if not isinstance(section, str) or not SECTION.match(section):
        check.fail(("sidebar_section",), "must be a lowercase slug of 1-32 characters, e.g. 'main'")
    icon = raw.get("sidebar_icon", "FileText")
    if not isinstance(icon, str) or not ICON.match(icon):
        check.fail(("sidebar_icon",), "must be an icon component name in PascalCase, e.g. 'ShieldAlert'")
    elif icon not in LUCIDE_ICONS:
        check.fail(
            ("sidebar_icon",),
            f"{icon!r:.70} is not a lucide-react {LUCIDE_VERSION} icon (https://lucide.dev/icons), "
            "e.g. 'ShieldAlert'",
        )
    priority = check.choice(raw, "priority", (), PRIORITIES, default="medium")
    requested_by = check.text(raw, "requested_by", (), max_length=LIMITS["requested_by"], default="")

    if check.errors:
        return Validation(None, check.errors)
    return Validation(
        RequirementSubmission(
            title=title,
            description=description,
            page_type=page_type or "",
            route=route,  # type: ignore[arg-type]
            api_endpoints=endpoints,
            data_fields=fields,
            features=features,
            refresh_interval=refresh,
            sidebar_section=section,
            sidebar_icon=icon,
            priority=priority or "medium",
            requested_by=requested_by or "anonymous",
        ),
        [],
    )


def _endpoints(check: _Checker, raw: dict[str, Any], rules: PageRules | None) -> list[ApiEndpoint]:
    found: list[ApiEndpoint] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(check.items(raw, "api_endpoints", LIMITS["endpoints"])):
        loc: tuple[str | int, ...] = ("api_endpoints", index)
        if not isinstance(item, dict):
            check.fail(loc, "must be an object with method, path and description", "type_error")
            continue
        for unknown in sorted(set(item) - {"method", "path", "description"})[:5]:
            check.fail((*loc, unknown), "unknown field", "extra_forbidden")
        method = item.get("method", "GET")
        if isinstance(method, str):
            method = method.upper()
        method = check.choice({"method": method}, "method", loc, HTTP_METHODS)
        path = item.get("path")
        if path is None:
            check.fail((*loc, "path"), "field required", "missing")
            continue
        if not isinstance(path, str):
            check.fail((*loc, "path"), "must be a string", "type_error")
            continue
        problem = endpoint_problem(path, path_params=rules.path_params if rules else True)
        if problem:
            check.fail((*loc, "path"), problem)
        description = check.text(item, "description", loc, max_length=LIMITS["endpoint_description"])
        if method is None or problem:
            continue
        if (method, path) in seen:
            check.fail(loc, f"{method} {path} is listed twice")
            continue
        seen.add((method, path))
        found.append(ApiEndpoint(method=method, path=path, description=description))
    return found


def _fields(check: _Checker, raw: dict[str, Any]) -> list[DataField]:
    found: list[DataField] = []
    names: set[str] = set()
    for index, item in enumerate(check.items(raw, "data_fields", LIMITS["fields"])):
        loc: tuple[str | int, ...] = ("data_fields", index)
        if not isinstance(item, dict):
            check.fail(loc, "must be an object with name, label and type", "type_error")
            continue
        for unknown in sorted(set(item) - {"name", "label", "type", "required", "values"})[:5]:
            check.fail((*loc, unknown), "unknown field", "extra_forbidden")
        name = item.get("name")
        if name is None:
            check.fail((*loc, "name"), "field required", "missing")
        elif not isinstance(name, str):
            check.fail((*loc, "name"), "must be a string", "type_error")
            name = None
        elif len(name) > LIMITS["field_name"]:
            check.fail((*loc, "name"), f"must be at most {LIMITS['field_name']} characters")
            name = None
        elif not IDENTIFIER.match(name):
            check.fail((*loc, "name"), "must be a valid identifier: a letter or _, then letters, digits or _")
            name = None
        elif not is_identifier(name):
            check.fail((*loc, "name"), f"{name!r} is a reserved word in JavaScript/TypeScript")
            name = None
        elif name in names:
            check.fail((*loc, "name"), f"duplicate field name {name!r}")
            name = None
        label = check.text(item, "label", loc, max_length=LIMITS["field_label"])
        kind = check.choice(item, "type", loc, FIELD_TYPES, default="string")
        required = item.get("required", False)
        if not isinstance(required, bool):
            check.fail((*loc, "required"), "must be true or false", "type_error")
            required = False
        values = _enum_values(check, item, loc, kind)
        if name is None or kind is None:
            continue
        names.add(name)
        found.append(
            DataField(name=name, label=label or _humanize(name), type=kind, required=required, values=values)
        )
    return found


def _enum_values(
    check: _Checker, item: dict[str, Any], loc: tuple[str | int, ...], kind: str | None
) -> list[str]:
    values = item.get("values")
    if kind != "enum":
        if values:
            check.fail((*loc, "values"), "only enum fields take values")
        return []
    if not isinstance(values, list) or not values:
        check.fail((*loc, "values"), "an enum field needs a non-empty list of values")
        return []
    if len(values) > LIMITS["enum_values"]:
        check.fail((*loc, "values"), f"must have at most {LIMITS['enum_values']} values")
        return []
    clean: list[str] = []
    for position, value in enumerate(values):
        if not isinstance(value, str) or not value or len(value) > LIMITS["enum_value"]:
            check.fail(
                (*loc, "values", position), f"must be a non-empty string of at most {LIMITS['enum_value']}"
            )
        elif value in clean:
            check.fail((*loc, "values", position), f"duplicate value {value!r:.60}")
        else:
            clean.append(value)
    return clean


def _features(
    check: _Checker,
    raw: dict[str, Any],
    page_type: str | None,
    rules: PageRules | None,
    fields: list[DataField],
) -> list[str]:
    found: list[str] = []
    for index, feature in enumerate(check.items(raw, "features", len(FEATURES) * 2)):
        if feature not in FEATURES:
            check.fail(
                ("features", index), f"must be one of: {', '.join(FEATURES)} (got {feature!r:.60})", "enum"
            )
        elif feature in found:
            check.fail(("features", index), f"{feature!r} is listed twice")
        elif rules is not None and feature not in rules.features:
            allowed = ", ".join(rules.features) or "none"
            check.fail(
                ("features", index), f"{page_type} pages do not support {feature!r} (supported: {allowed})"
            )
        else:
            found.append(feature)
    kinds = {f.type for f in fields}
    if "search" in found and not kinds & SEARCHABLE_TYPES:
        check.fail(("features",), "'search' needs at least one text or enum field to search in")
    if "filter" in found and not kinds & FILTERABLE_TYPES:
        check.fail(("features",), "'filter' needs at least one enum or boolean field to filter by")
    return found


def _fit_page_type(
    check: _Checker, page_type: str, rules: PageRules, endpoints: list[ApiEndpoint], fields: list[DataField]
) -> None:
    reads = sum(e.method == "GET" for e in endpoints)
    writes = sum(e.method in WRITE_METHODS for e in endpoints)
    others = [e for e in endpoints if e.method not in ("GET", *WRITE_METHODS)]
    for label, count, (low, high) in (("GET", reads, rules.reads), ("POST/PUT/PATCH", writes, rules.writes)):
        if not low <= count <= high:
            wanted = f"exactly {low}" if low == high else f"{low} to {high}"
            check.fail(
                ("api_endpoints",),
                f"{page_type} pages take {wanted} {label} endpoint(s), got {count} ({rules.endpoint_roles})",
            )
    if others:
        check.fail(("api_endpoints",), f"{page_type} pages cannot wire {others[0].method} endpoints")
    if len(fields) < rules.min_fields:
        check.fail(("data_fields",), f"{page_type} pages need at least {rules.min_fields} data field(s)")
    if rules.needs_numeric and not any(f.type in NUMERIC_TYPES for f in fields):
        check.fail(("data_fields",), f"{page_type} pages need at least one number or integer field to chart")


def _humanize(name: str) -> str:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ").split()
    return " ".join(words).capitalize() or name
