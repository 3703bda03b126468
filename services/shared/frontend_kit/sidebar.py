"""The sidebar registry: ``src/config/factory-sidebar.json`` (the entries of deployed
pages: label, href, section, icon name) and ``src/config/factory-sidebar-icons.ts``,
the lucide icons those entries name, imported one by one so a bundle carries only the
icons in use. The kit's ``Sidebar`` component reads both; the factory rewrites both on
each deploy; the kit installer seeds them empty."""

from __future__ import annotations

import json
from typing import Any

from contracts.factory.icons import LUCIDE_ICONS

REGISTRY_WRITER = "aoc frontend-factory"


def read_entries(data: bytes) -> list[dict[str, Any]]:
    entries = json.loads(data).get("entries", [])
    return [e for e in entries if isinstance(e, dict)]


def registry_json(entries: list[dict[str, Any]]) -> bytes:
    body = {"written_by": REGISTRY_WRITER, "entries": entries}
    return json.dumps(body, indent=2, ensure_ascii=False).encode() + b"\n"


def sidebar_icons_module(entries: list[dict[str, Any]]) -> bytes:
    # only names of the pinned lucide-react: anything else would break the build (the
    # submission's validation refuses them already; a hand-edited registry might not)
    names = sorted({e.get("icon") for e in entries} & LUCIDE_ICONS)
    lines = [
        "// Written by the AOC Frontend Factory from factory-sidebar.json: the lucide icons its",
        "// entries name. Rewritten on every deploy; the sidebar falls back to a default icon.",
        'import type { LucideIcon } from "lucide-react";',
    ]
    if names:
        lines.append(f'import {{ {", ".join(names)} }} from "lucide-react";')
    lines += [
        "",
        "export const SIDEBAR_ICONS: Readonly<Record<string, LucideIcon>> = {"
        + (f" {', '.join(names)} " if names else "")
        + "};",
    ]
    return ("\n".join(lines) + "\n").encode()
