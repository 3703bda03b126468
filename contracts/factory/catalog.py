"""What the factory knows how to build: the six page templates and the component
registry their output imports. Static data and pure functions; the gateway serves it
as-is (GET templates, templates/{type}/schema, component-library).

The registry is the contract between generated pages and the frontend kit's real
components: the renderer derives a page's imports from it, the gateway lists it, and
tests/factory/test_kit.py proves with tsc that each kit source exports exactly these
props. A template that passes a prop the registry does not declare fails the type-check
of the generated pages against the kit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.factory.requirement import PAGE_RULES, PAGE_TYPES
from contracts.factory.schema import submission_schema

# --- templates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    type: str
    label: str
    description: str
    config_keys: tuple[str, ...]
    example_config: dict[str, Any]


COMMON_KEYS = ("title", "description", "route", "sidebar_section", "sidebar_icon", "priority", "requested_by")

TEMPLATES: dict[str, Template] = {
    t.type: t
    for t in (
        Template(
            "data_table",
            "Data Table",
            "Sortable, filterable table with search and pagination",
            (*COMMON_KEYS, "api_endpoints", "data_fields", "features", "refresh_interval"),
            {
                "title": "Vulnerability Risk Matrix",
                "description": "Table of open CVEs grouped by CVSS score and affected asset",
                "page_type": "data_table",
                "route": "/vulnerabilities/risk",
                "api_endpoints": [
                    {"method": "GET", "path": "/api/v1/vulnerabilities", "description": "List CVEs"}
                ],
                "data_fields": [
                    {"name": "cve_id", "label": "CVE ID", "type": "string", "required": True},
                    {"name": "cvss_score", "label": "CVSS", "type": "number"},
                    {
                        "name": "status",
                        "label": "Status",
                        "type": "enum",
                        "values": ["open", "mitigated", "accepted"],
                    },
                ],
                "features": ["search", "filter", "export", "pagination"],
                "refresh_interval": 30,
                "sidebar_section": "main",
                "sidebar_icon": "ShieldAlert",
                "priority": "high",
                "requested_by": "admin",
            },
        ),
        Template(
            "dashboard",
            "Dashboard",
            "Metric cards, charts, and summary widgets",
            (*COMMON_KEYS, "api_endpoints", "data_fields", "features", "refresh_interval"),
            {
                "title": "SOC Overview",
                "description": "Alert volume and response times across the SOC",
                "page_type": "dashboard",
                "route": "/soc/overview",
                "api_endpoints": [
                    {"method": "GET", "path": "/api/v1/soc/summary", "description": "Alert counters"},
                    {"method": "GET", "path": "/api/v1/soc/response-times", "description": "MTTD and MTTR"},
                ],
                "data_fields": [
                    {"name": "open_alerts", "label": "Open alerts", "type": "integer"},
                    {"name": "auto_resolved", "label": "Auto-resolved", "type": "integer"},
                    {"name": "mttr_minutes", "label": "MTTR (min)", "type": "number"},
                    {
                        "name": "posture",
                        "label": "Posture",
                        "type": "enum",
                        "values": ["green", "amber", "red"],
                    },
                    {"name": "generated_at", "label": "As of", "type": "datetime"},
                ],
                "features": ["export"],
                "refresh_interval": 15,
                "sidebar_icon": "LayoutDashboard",
            },
        ),
        Template(
            "form",
            "Form Page",
            "Create/edit forms with field validation",
            (*COMMON_KEYS, "api_endpoints", "data_fields"),
            {
                "title": "Report Phishing Email",
                "description": "Send a suspicious message to the SOC for triage",
                "page_type": "form",
                "route": "/report/phishing",
                "api_endpoints": [
                    {"method": "POST", "path": "/api/v1/phishing/reports", "description": "File a report"}
                ],
                "data_fields": [
                    {"name": "reporter_email", "label": "Your email", "type": "email", "required": True},
                    {"name": "subject", "label": "Subject line", "type": "string", "required": True},
                    {"name": "received_at", "label": "Received", "type": "datetime"},
                    {
                        "name": "severity",
                        "label": "How urgent",
                        "type": "enum",
                        "values": ["low", "medium", "high"],
                    },
                    {"name": "clicked_link", "label": "I clicked a link", "type": "boolean"},
                    {"name": "notes", "label": "Notes", "type": "text"},
                ],
                "sidebar_icon": "MailWarning",
            },
        ),
        Template(
            "detail",
            "Detail View",
            "Single entity detail page with related data panels",
            (*COMMON_KEYS, "api_endpoints", "data_fields", "features", "refresh_interval"),
            {
                "title": "Asset Detail",
                "description": "One asset with its open findings and recent alerts",
                "page_type": "detail",
                "route": "/assets/detail",
                "api_endpoints": [
                    {"method": "GET", "path": "/api/v1/assets/{asset_id}", "description": "The asset"},
                    {
                        "method": "GET",
                        "path": "/api/v1/assets/{asset_id}/findings",
                        "description": "Open findings",
                    },
                    {
                        "method": "GET",
                        "path": "/api/v1/assets/{asset_id}/alerts",
                        "description": "Recent alerts",
                    },
                ],
                "data_fields": [
                    {"name": "hostname", "label": "Hostname", "type": "string", "required": True},
                    {"name": "ip_address", "label": "IP address", "type": "string"},
                    {
                        "name": "criticality",
                        "label": "Criticality",
                        "type": "enum",
                        "values": ["low", "high"],
                    },
                    {"name": "risk_score", "label": "Risk score", "type": "number"},
                    {"name": "managed", "label": "Managed", "type": "boolean"},
                    {"name": "last_seen", "label": "Last seen", "type": "datetime"},
                    {"name": "owner_url", "label": "Owner", "type": "url"},
                ],
                "features": ["export"],
                "sidebar_icon": "Server",
            },
        ),
        Template(
            "analytics",
            "Analytics Page",
            "Charts, graphs, and statistical analysis panels",
            (*COMMON_KEYS, "api_endpoints", "data_fields", "features", "refresh_interval"),
            {
                "title": "Detection Trends",
                "description": "Daily detections and false-positive rate by source",
                "page_type": "analytics",
                "route": "/analytics/detections",
                "api_endpoints": [
                    {"method": "GET", "path": "/api/v1/detections/daily", "description": "Per day"}
                ],
                "data_fields": [
                    {"name": "day", "label": "Day", "type": "date", "required": True},
                    {"name": "source", "label": "Source", "type": "enum", "values": ["edr", "siem", "ndr"]},
                    {"name": "detections", "label": "Detections", "type": "integer"},
                    {"name": "false_positive_rate", "label": "False positives (%)", "type": "number"},
                ],
                "features": ["filter", "export"],
                "refresh_interval": 300,
                "sidebar_icon": "LineChart",
            },
        ),
        Template(
            "settings",
            "Settings Page",
            "Configuration and preferences management form",
            (*COMMON_KEYS, "api_endpoints", "data_fields", "features"),
            {
                "title": "Notification Settings",
                "description": "Where and when the SOC pages the on-call analyst",
                "page_type": "settings",
                "route": "/settings/notifications",
                "api_endpoints": [
                    {
                        "method": "GET",
                        "path": "/api/v1/settings/notifications",
                        "description": "Current settings",
                    },
                    {
                        "method": "PUT",
                        "path": "/api/v1/settings/notifications",
                        "description": "Save settings",
                    },
                ],
                "data_fields": [
                    {"name": "email_enabled", "label": "Email alerts", "type": "boolean"},
                    {"name": "pager_email", "label": "Pager address", "type": "email", "required": True},
                    {
                        "name": "min_severity",
                        "label": "Minimum severity",
                        "type": "enum",
                        "values": ["low", "high"],
                    },
                    {"name": "quiet_hours", "label": "Quiet hours per day", "type": "integer"},
                    {"name": "webhook_url", "label": "Webhook", "type": "url"},
                ],
                "features": ["search"],
                "sidebar_section": "settings",
                "sidebar_icon": "Bell",
            },
        ),
    )
}
assert tuple(TEMPLATES) == PAGE_TYPES


def template_list() -> list[dict[str, Any]]:
    return [
        {
            "type": t.type,
            "label": t.label,
            "description": t.description,
            "config_keys": list(t.config_keys),
            "features": list(PAGE_RULES[t.type].features),
            "endpoints": PAGE_RULES[t.type].endpoint_roles,
            "example_config": t.example_config,
        }
        for t in TEMPLATES.values()
    ]


def template_schema(page_type: str) -> dict[str, Any]:
    schema = submission_schema(page_type)
    schema["examples"] = [TEMPLATES[page_type].example_config]
    return schema


# --- the component registry ----------------------------------------------------------------
#
# What the frontend kit's components are and take: the one list the gateway serves
# (GET component-library) and the renderer imports from. The kit's real sources
# (services/shared/frontend_kit/library/kit/src/components/factory/*.tsx) are checked
# against it by tests/factory/test_kit.py: every component here is a file there and no
# other file is, and each ``<Name>Props`` type equals the props below, as the
# TypeScript compiler sees them.


@dataclass(frozen=True)
class Prop:
    name: str
    type: str  # a TypeScript type over the shared types (TYPES_MODULE), React's and lucide's
    required: bool
    description: str


@dataclass(frozen=True)
class Component:
    name: str
    module: str
    description: str
    props: tuple[Prop, ...]
    generic: bool = False  # typed by its rows: <T>

    @property
    def file(self) -> str:
        """Where the kit installs it, relative to the frontend root."""
        return "src/" + self.module.removeprefix("@/") + ".tsx"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "file": self.file,
            "description": self.description,
            "generic": self.generic,
            "props": [
                {"name": p.name, "type": p.type, "required": p.required, "description": p.description}
                for p in self.props
            ],
        }


COMPONENTS_MODULE = "@/components/factory"
TYPES_MODULE = f"{COMPONENTS_MODULE}/types"  # ColumnDef, SortState, FieldSpec, ... (types.ts)
FORMAT_MODULE = f"{COMPONENTS_MODULE}/format"  # formatValue, plainValue (format.ts)
API_MODULE = "@/lib/api-client"  # api, ApiError, recordsOf, getToken/setToken
SUPPORT_MODULES = (TYPES_MODULE, FORMAT_MODULE)  # the kit's .ts modules next to the components


def _c(name: str, module: str, description: str, *props: Prop, generic: bool = False) -> Component:
    return Component(name, f"{COMPONENTS_MODULE}/{module}", description, props, generic)


def _p(name: str, type_: str, description: str, required: bool = True) -> Prop:
    return Prop(name, type_, required, description)


COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        _c(
            "PageHeader",
            "page-header",
            "Page title, description, the page's lucide icon and a slot for page actions",
            _p("title", "string", "Page title"),
            _p("description", "string", "One line under the title", False),
            _p("icon", "LucideIcon", "The page's lucide icon (the one its sidebar entry shows)", False),
            _p("actions", "ReactNode", "Buttons shown at the right of the header", False),
        ),
        _c(
            "DataTable",
            "data-table",
            "Table of typed rows with sortable columns, loading and empty states",
            _p("columns", "readonly ColumnDef<T>[]", "Which keys to show, with labels and types"),
            _p("rows", "readonly T[]", "The rows of the current page"),
            _p("rowKey", "(row: T, index: number) => string", "Stable React key of a row"),
            _p("loading", "boolean", "Show a skeleton instead of rows", False),
            _p("emptyMessage", "string", "Shown when there are no rows", False),
            _p("sort", "SortState<T> | null", "The active sort", False),
            _p(
                "onSortChange",
                "(sort: SortState<T> | null) => void",
                "Called when a header is clicked",
                False,
            ),
            generic=True,
        ),
        _c(
            "SearchInput",
            "search-input",
            "Debounced text search box",
            _p("value", "string", "Current text"),
            _p("onChange", "(value: string) => void", "Called with the new text"),
            _p("placeholder", "string", "Hint shown when empty", False),
        ),
        _c(
            "FilterSelect",
            "filter-select",
            "Single-choice filter; the empty value means 'all'",
            _p("label", "string", "What is filtered"),
            _p("value", "string", "Selected option value, or '' for all"),
            _p("options", "readonly FilterOption[]", "The choices"),
            _p("onChange", "(value: string) => void", "Called with the chosen value"),
        ),
        _c(
            "ExportButton",
            "export-button",
            "Downloads the given rows as CSV or JSON",
            _p("rows", "readonly T[]", "What to export"),
            _p("columns", "readonly ColumnDef<T>[]", "Columns and their headers"),
            _p("filename", "string", "File name without extension"),
            _p("disabled", "boolean", "Grey it out", False),
            generic=True,
        ),
        _c(
            "Pagination",
            "pagination",
            "Page switcher with total count",
            _p("page", "number", "1-based current page"),
            _p("pageCount", "number", "Number of pages (at least 1)"),
            _p("onPageChange", "(page: number) => void", "Called with the new page"),
            _p("total", "number", "Number of rows over all pages", False),
        ),
        _c(
            "MetricCard",
            "metric-card",
            "One number with its label",
            _p("label", "string", "What is measured"),
            _p("value", "number | string | null", "The value; null shows a dash"),
            _p("format", "ValueFormat", "How to format the value", False),
            _p("hint", "string", "Small print under the value", False),
        ),
        _c(
            "ChartPanel",
            "chart-panel",
            "Line, bar or area chart of labelled values",
            _p("title", "string", "Panel title"),
            _p("kind", "ChartKind", "Chart type"),
            _p("data", "readonly ChartPoint[]", "Points in display order"),
            _p("valueFormat", "ValueFormat", "Axis and tooltip format", False),
        ),
        _c(
            "FormField",
            "form-field",
            "Input for one typed field (text, number, select, checkbox, date), with its error",
            _p("spec", "FieldSpec", "Name, label, type, required, options"),
            _p("value", "FieldValue", "Current value"),
            _p("onChange", "(value: FieldValue) => void", "Called with the new value"),
            _p("error", "string", "Validation message shown under the input", False),
            _p("disabled", "boolean", "Read-only while saving", False),
        ),
        _c(
            "Button",
            "button",
            "Button in the design system's variants",
            _p("children", "ReactNode", "Label"),
            _p("onClick", "() => void", "Click handler", False),
            _p("type", '"button" | "submit"', "Form role (default button)", False),
            _p("variant", '"primary" | "secondary" | "danger"', "Look", False),
            _p("disabled", "boolean", "Disabled", False),
        ),
        _c(
            "DetailList",
            "detail-list",
            "Label/value pairs of one entity",
            _p("items", "readonly DetailItem[]", "The pairs in display order"),
        ),
        _c(
            "RecordList",
            "record-list",
            "Panel listing related records with automatic columns",
            _p("title", "string", "Panel title"),
            _p("records", "readonly Record<string, unknown>[]", "The records"),
            _p("loading", "boolean", "Show a skeleton", False),
            _p("emptyMessage", "string", "Shown when there are no records", False),
        ),
        _c(
            "StatusBadge",
            "status-badge",
            "Coloured badge for an enum value",
            _p("value", "string | null | undefined", "The value; empty shows a dash"),
        ),
        _c(
            "ErrorBanner",
            "error-banner",
            "Error message with an optional retry button",
            _p("message", "string", "What went wrong"),
            _p("onRetry", "() => void", "Retry handler", False),
        ),
        _c(
            "LoadingState",
            "loading-state",
            "Placeholder shown while the first load is in flight",
            _p("label", "string", "What is loading", False),
        ),
        _c(
            "SuccessBanner",
            "success-banner",
            "Confirmation message",
            _p("message", "string", "What succeeded"),
        ),
        _c(
            "RefreshControl",
            "refresh-control",
            "Last-updated time, auto-refresh interval and a refresh button",
            _p("lastUpdated", "Date | null", "When the data was loaded"),
            _p("refreshing", "boolean", "A load is in flight"),
            _p("onRefresh", "() => void", "Reload now"),
            _p("intervalSeconds", "number", "Auto-refresh period, if any", False),
        ),
        _c(
            "SettingsSection",
            "settings-section",
            "Titled group of settings",
            _p("title", "string", "Section title"),
            _p("children", "ReactNode", "The fields"),
            _p("description", "string", "Section help text", False),
        ),
        _c(
            "Sidebar",
            "sidebar",
            "Navigation from the sidebar registry (src/config/factory-sidebar.json), by section",
            _p("title", "string", "Heading above the links", False),
            _p("footer", "ReactNode", "Shown below the links (e.g. TokenSignIn)", False),
        ),
        _c(
            "TokenSignIn",
            "token-sign-in",
            "Sign-in with an AOC API token, kept in this tab's sessionStorage (as the dashboard does)",
            _p("label", "string", "Label of the token field", False),
        ),
    )
}


def component_library() -> list[dict[str, Any]]:
    return [component.as_dict() for component in COMPONENTS.values()]
