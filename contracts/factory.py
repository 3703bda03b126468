"""The factory line's contract: page requirements, their validation, the events of the
three engines that turn them into deployed pages, and the subjects they meet on.

Who writes what
- The gateway (HTTP) and anyone on NATS put a ``RequirementSubmission`` on
  ``aoc.in.factory.requirements`` (the work-queue stream ``AOC_FACTORY_INPUT``). The
  gateway validates first and answers 422 per field; the factory validates again,
  because a raw NATS publish skips the gateway.
- Only the factory engine writes ``aoc.evt.frontend-factory.requirement_*``: it is the
  single writer of requirement state. The gateway's views and the integrity scan fold
  the same events with the same reducer (services/factory/ledger.py).
- Operations that need the factory's decision (generate, deploy, cancel, preview) are
  core NATS request/reply on ``aoc.factory.<verb>``, answered within 2 s.
- The integrity engine flags the deploy engine with ``deploy_flagged``; the deploy engine
  records each release as ``release_deployed`` / ``release_rolled_back`` /
  ``deploy_failed``.

Validation is here, not in a service, because both sides of the input run it and must
agree to the letter: a pure function over decoded JSON that returns every error at
once, each with its location (FastAPI's 422 shape).
"""

from __future__ import annotations

import hashlib
import keyword
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.settings import Settings
from contracts.streams import DAY, ensure_stream

# --- subjects and streams ------------------------------------------------------------------

FACTORY = "frontend-factory"
INTEGRITY = "integrity-scan"
DEPLOY = "deploy"

INPUT_STREAM = "AOC_FACTORY_INPUT"
INPUT_SUBJECTS = "aoc.in.factory.>"
SUBMIT_SUBJECT = "aoc.in.factory.requirements"
INTAKE_CONSUMER = "frontend-factory-intake"

# core NATS request/reply, answered by the factory engine (never inside a stream)
REQUEST_PREFIX = "aoc.factory"
REQUEST_VERBS = ("generate", "deploy", "cancel", "preview")
# answered by the gateway: the API routes it serves (the integrity scan's inventory)
GATEWAY_ROUTES = "aoc.gateway.routes"

DEPLOY_CONSUMER = "deploy-watch"

# --- the frontend tree (relative to AOC_FRONTEND_ROOT) ----------------------------------------

APP_DIR = "src/app"  # Next.js App Router pages: <APP_DIR>/<route>/page.tsx
SIDEBAR_REGISTRY = "src/config/factory-sidebar.json"  # the sidebar entries of generated pages
OWNERSHIP_MANIFEST = ".aoc-factory/ownership.json"  # which files the factory wrote, by sha256
# build output and dependencies: rebuilt from the sources, never part of a release
EXCLUDED_DIRS = frozenset({"node_modules", ".next", ".git", ".turbo", ".cache", "out", "dist"})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def scan_tree(root: Path) -> dict[str, str]:
    """The identity of a frontend tree: relative posix path -> sha256 of every regular
    file (symlinks are not followed; EXCLUDED_DIRS are skipped). The deploy engine
    releases it; the integrity scan compares it with the current release."""
    found: dict[str, str] = {}
    if not root.is_dir():
        return found
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not (here / d).is_symlink())
        for name in sorted(files):
            path = here / name
            if path.is_symlink() or not path.is_file():
                continue
            found[path.relative_to(root).as_posix()] = sha256_file(path)
    return found


def tree_digest(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{files[path]}\n".encode())
    return digest.hexdigest()


# headers a submission may carry (the gateway sets them; `nats pub` may)
REQUIREMENT_ID_HEADER = "Aoc-Requirement-Id"
ACTOR_HEADER = "Aoc-Actor"
ORIGIN_HEADER = "Aoc-Origin"
CORRELATION_HEADER = "X-Correlation-ID"

REQUIREMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def request_subject(verb: str) -> str:
    return f"{REQUEST_PREFIX}.{verb}"


def input_stream(settings: Settings) -> StreamConfig:
    # A work queue: a submission is removed once the factory acked it (its record is
    # then the requirement_submitted event). While the factory is stopped, submissions
    # wait here, durably.
    return StreamConfig(
        name=INPUT_STREAM,
        description="Page requirements waiting for the frontend factory",
        subjects=[INPUT_SUBJECTS],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=7 * DAY,
        max_msgs=100_000,
        max_msg_size=256 * 1024,
        discard=DiscardPolicy.NEW,  # refuse new input rather than drop queued input
        duplicate_window=settings.duplicate_window_s,
        num_replicas=settings.stream_replicas,
    )


async def ensure_factory_streams(js: JetStreamContext, settings: Settings) -> None:
    await ensure_stream(js, input_stream(settings))


# --- settings of the factory line ----------------------------------------------------------


class FactorySettings(BaseSettings):
    """Environment of the factory line; the shared ``Settings`` stays as it is."""

    model_config = SettingsConfigDict(env_prefix="AOC_", extra="ignore")

    frontend_root: Path | None = Field(
        None, description="Root of the Next.js frontend tree; default <AOC_DATA_DIR>/frontend."
    )
    releases_dir: Path | None = Field(
        None, description="Where the deploy engine keeps releases; default <AOC_DATA_DIR>/releases."
    )
    deploy_command: str | None = Field(
        None,
        description="Shell command run for each release (image build, kubectl rollout restart); "
        "its exit code decides success. Gets AOC_RELEASE_ID, AOC_RELEASE_DIR, AOC_DEPLOY_ACTION.",
    )
    deploy_timeout: float = Field(600.0, gt=0, description="Seconds before the deploy command is killed.")
    releases_keep: int = Field(20, ge=2, description="Releases kept on disk (the current one always is).")

    def frontend(self, settings: Settings) -> Path:
        return (self.frontend_root or settings.data_dir / "frontend").resolve()

    def releases(self, settings: Settings) -> Path:
        return (self.releases_dir or settings.data_dir / "releases").resolve()


# --- the requirement ----------------------------------------------------------------------

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

# --- validation ---------------------------------------------------------------------------

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


# --- JSON Schema of a submission --------------------------------------------------------


def submission_schema(page_type: str | None = None) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a submission, narrowed to one page type when given.

    Built from the same constants as ``validate_submission``; the cross-field rules
    (endpoint counts per page type, feature needs) are stated in ``x-aoc-rules``."""
    rules = PAGE_RULES.get(page_type or "")
    features = list(rules.features) if rules else list(FEATURES)
    methods = ["GET", *WRITE_METHODS] if rules else list(HTTP_METHODS)
    param = r"|\{[A-Za-z_][A-Za-z0-9_]*\}" if rules is None or rules.path_params else ""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"RequirementSubmission ({page_type})" if page_type else "RequirementSubmission",
        "type": "object",
        "additionalProperties": False,
        "required": ["title", "page_type", "route"],
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": LIMITS["title"]},
            "description": {"type": "string", "maxLength": LIMITS["description"], "default": ""},
            "page_type": {"const": page_type} if page_type else {"enum": list(PAGE_TYPES)},
            "route": {
                "type": "string",
                "maxLength": LIMITS["route"],
                "pattern": r"^(/[a-z0-9]+(-[a-z0-9]+)*){1,6}$",
                "description": "Lowercase slug segments under '/'; no '..', [x], (x), @x, _x; not /api",
            },
            "api_endpoints": {
                "type": "array",
                "maxItems": LIMITS["endpoints"],
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["path"],
                    "properties": {
                        "method": {"enum": methods, "default": "GET"},
                        "path": {
                            "type": "string",
                            "maxLength": LIMITS["endpoint_path"],
                            "pattern": rf"^/api(/([A-Za-z0-9._~-]+{param}))+$",
                        },
                        "description": {"type": "string", "maxLength": LIMITS["endpoint_description"]},
                    },
                },
            },
            "data_fields": {
                "type": "array",
                "maxItems": LIMITS["fields"],
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {
                            "type": "string",
                            "maxLength": LIMITS["field_name"],
                            "pattern": IDENTIFIER.pattern,
                            "not": {"enum": sorted(RESERVED_IDENTIFIERS)},
                        },
                        "label": {"type": "string", "maxLength": LIMITS["field_label"]},
                        "type": {"enum": list(FIELD_TYPES), "default": "string"},
                        "required": {"type": "boolean", "default": False},
                        "values": {
                            "type": "array",
                            "maxItems": LIMITS["enum_values"],
                            "uniqueItems": True,
                            "items": {"type": "string", "minLength": 1, "maxLength": LIMITS["enum_value"]},
                            "description": "Required for (and only for) type 'enum'",
                        },
                    },
                },
            },
            "features": {"type": "array", "uniqueItems": True, "items": {"enum": features}},
            "refresh_interval": {
                "type": "integer",
                "default": 0,
                "description": f"Seconds between refreshes: 0 (off) or {LIMITS['refresh_min']}-"
                f"{LIMITS['refresh_max']}",
                "anyOf": [
                    {"const": 0},
                    {"minimum": LIMITS["refresh_min"], "maximum": LIMITS["refresh_max"]},
                ],
            },
            "sidebar_section": {"type": "string", "pattern": SECTION.pattern, "default": "main"},
            "sidebar_icon": {"type": "string", "pattern": ICON.pattern, "default": "FileText"},
            "priority": {"enum": list(PRIORITIES), "default": "medium"},
            "requested_by": {"type": "string", "maxLength": LIMITS["requested_by"]},
        },
    }
    if rules is not None:
        schema["x-aoc-rules"] = {
            "GET endpoints": {"min": rules.reads[0], "max": rules.reads[1]},
            "POST/PUT/PATCH endpoints": {"min": rules.writes[0], "max": rules.writes[1]},
            "endpoint roles": rules.endpoint_roles,
            "min data fields": rules.min_fields,
            "needs a number field": rules.needs_numeric,
            "path parameters": rules.path_params,
            "refreshes": rules.refreshes,
            "search needs": "a text or enum field",
            "filter needs": "an enum or boolean field",
        }
    return schema


# --- events -----------------------------------------------------------------------------


class RequirementSubmitted(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_submitted"
    requirement_id: str
    submission: RequirementSubmission
    origin: str = "nats"  # http | nats | integrity-scan


class RequirementRejected(msgspec.Struct, kw_only=True):
    """A submission the factory refused at intake (invalid, or a route already taken)."""

    TYPE: ClassVar[str] = "requirement_rejected"
    requirement_id: str
    reason: str  # invalid | conflict | duplicate
    errors: list[FieldError] = []
    origin: str = "nats"


class RequirementGenerating(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_generating"
    requirement_id: str
    attempt: int
    template: str


class RequirementGenerated(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_generated"
    requirement_id: str
    template: str
    template_version: str  # sha256 prefix of the template sources
    tsx_code: str
    code_sha256: str
    code_lines: int
    generation_time_ms: float
    file_path: str  # relative to the frontend root
    api_wiring: dict[str, Any]
    sidebar_entry: dict[str, Any]


class RequirementFailed(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_failed"
    requirement_id: str
    stage: str  # generate | deploy
    error: str


class RequirementDeployed(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_deployed"
    requirement_id: str
    route: str
    file_path: str  # relative to the frontend root
    code_sha256: str
    bytes: int
    sidebar_registry: str  # relative to the frontend root
    replaced: bool  # an earlier factory-written version was overwritten


class RequirementCancelled(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_cancelled"
    requirement_id: str
    previous_status: str
    reason: str = ""


REQUIREMENT_EVENTS: dict[str, type[msgspec.Struct]] = {
    cls.TYPE: cls
    for cls in (
        RequirementSubmitted,
        RequirementRejected,
        RequirementGenerating,
        RequirementGenerated,
        RequirementFailed,
        RequirementDeployed,
        RequirementCancelled,
    )
}


class DeployFlagged(msgspec.Struct, kw_only=True):
    """The integrity scan asks for a release: the tree differs from the current release,
    and/or generated pages wait to be deployed (for an operator's decision)."""

    TYPE: ClassVar[str] = "deploy_flagged"
    tree_changed: bool  # the tree is not what the current release holds
    tree_sha256: str
    waiting_requirements: list[str] = []  # generated, not yet deployed into the tree
    current_release: str | None = None


class CommandRun(msgspec.Struct, kw_only=True):
    command: str
    exit_code: int | None
    timed_out: bool = False
    duration_ms: float = 0.0
    output: str = ""  # stdout+stderr, the tail


class DeployRecord(msgspec.Struct, kw_only=True):
    """One entry of the deploy history."""

    release_id: str | None
    action: str  # deploy | rollback
    status: str  # success | failed
    started: str
    duration_ms: float
    files: int = 0
    tree_sha256: str | None = None  # what was (or would have been) released
    changed_files: list[str] = []
    previous_release: str | None = None
    triggered_by: list[str] = []  # event types (and requirement ids) or "manual"
    command: CommandRun | None = None
    error: str | None = None


class ReleaseDeployed(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "release_deployed"
    record: DeployRecord


class ReleaseRolledBack(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "release_rolled_back"
    record: DeployRecord


class DeployFailed(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "deploy_failed"
    record: DeployRecord


DEPLOY_EVENTS: dict[str, type[msgspec.Struct]] = {
    cls.TYPE: cls for cls in (ReleaseDeployed, ReleaseRolledBack, DeployFailed)
}

# --- request/reply with the factory engine ------------------------------------------------


class FactoryRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of aoc.factory.<generate|deploy|cancel>; preview takes a submission instead."""

    requirement_id: str
    actor: str = "nats:anonymous"
    reason: str = ""
    correlation_id: str = ""


class FactoryReply(msgspec.Struct, kw_only=True):
    ok: bool
    message: str
    # not_found | conflict | not_running | invalid | internal
    error: str | None = None
    requirement: dict[str, Any] | None = None
    seq: int = 0  # stream sequence of the last event this request caused (read-your-writes)
    result: dict[str, Any] | None = None


HTTP_STATUS = {"not_found": 404, "conflict": 409, "not_running": 409, "invalid": 422, "internal": 500}


class RouteField(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    type: str  # one of FIELD_TYPES
    values: list[str] = []


class GatewayRoute(msgspec.Struct, kw_only=True, frozen=True):
    path: str  # /api/v1/factory/requirements/{req_id}
    methods: list[str]
    name: str = ""
    # for a GET that returns a list of records: the record's fields, when the route declares them
    list_of: list[RouteField] | None = None


class GatewayRoutes(msgspec.Struct, kw_only=True):
    routes: list[GatewayRoute]


encode = msgspec.json.encode
submission_decoder = msgspec.json.Decoder(RequirementSubmission)
reply_decoder = msgspec.json.Decoder(FactoryReply)
request_decoder = msgspec.json.Decoder(FactoryRequest)
routes_decoder = msgspec.json.Decoder(GatewayRoutes)
