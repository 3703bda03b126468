"""The JSON Schema (2020-12) of a submission, built from the same constants as the
validation; the cross-field rules are stated in ``x-aoc-rules``."""

from __future__ import annotations

from typing import Any

from contracts.factory.requirement import (
    FEATURES,
    FIELD_TYPES,
    HTTP_METHODS,
    LIMITS,
    PAGE_RULES,
    PAGE_TYPES,
    PRIORITIES,
    WRITE_METHODS,
)
from contracts.factory.validation import ICON, IDENTIFIER, RESERVED_IDENTIFIERS, SECTION


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
