"""The hostile corpus: strings that would break out of a string, a comment, a template
literal, JSX or a path, if they ever reached the TSX as anything but data."""

from __future__ import annotations

from typing import Any

from tests.factory.conftest import example

HOSTILE = [
    "${x}",
    "${alert(document.cookie)}",
    "*/ alert(1); /*",
    "</script><script>alert(1)</script>",
    "`backtick` and `${template}`",
    'double " quote',
    "single ' quote",
    "line\u2028separator and paragraph\u2029separator",
    "{alert(1)}",
    "../../etc/passwd",
    "[slug]",
    "back\\slash and newline\nand tab\t",
    "<!-- comment --> & &amp; <b>bold</b>",
    "// line comment",
    "emoji \U0001f4a5 and nul \x00",
]

# the fragments of the strings above that must never appear outside a string literal
MARKERS = ["${", "*/", "</script", "`", "alert(", "\u2028", "\u2029", "../", "[slug]", "<!--", "<b>", "\x00"]


def hostile_requirements() -> dict[str, dict[str, Any]]:
    """One requirement per template with hostile text in every data position it has."""
    text = " ".join(HOSTILE)
    bodies: dict[str, dict[str, Any]] = {}
    for page_type in ("data_table", "dashboard", "form", "detail", "analytics", "settings"):
        body = example(page_type)
        body["title"] = "`${x}` */ </script> {alert(1)}"  # within the 120-character limit
        body["description"] = text[:2000]
        body["requested_by"] = "${x}`"
        for index, field in enumerate(body["data_fields"]):
            field["label"] = HOSTILE[index % len(HOSTILE)][:80]
            if field.get("type") == "enum":  # as many values as before: the same program
                field["values"] = [
                    HOSTILE[(index + n) % len(HOSTILE)][:100] for n in range(len(field["values"]))
                ]
        for endpoint in body["api_endpoints"]:
            endpoint["description"] = HOSTILE[2]
        bodies[page_type] = body
    return bodies


# hostile input where an identifier, a route or a path goes: refused, field by field
HOSTILE_STRUCTURE = {
    ("route",): {"route": "/../../etc"},
    ("route", "slug"): {"route": "/x/[slug]"},
    ("api_endpoints", 0, "path"): {"api_endpoints": [{"path": "/api/${x}`"}]},
    ("data_fields", 0, "name"): {"data_fields": [{"name": "x}; alert(1); //"}]},
    ("sidebar_icon",): {"sidebar_icon": "Icon\u2028"},
    ("sidebar_section",): {"sidebar_section": "*/"},
}
