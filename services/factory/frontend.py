"""Writing generated pages and their sidebar entries into the frontend tree.

The safety rules (confinement to the root, atomic writes, the ownership manifest that
leaves a human's file alone) are the shared ``OwnedTree``'s
(services/shared/frontend_kit/owned.py), which the kit installer writes through too.
"""

from __future__ import annotations

from typing import Any

from contracts.factory.tree import SIDEBAR_ICONS, SIDEBAR_REGISTRY, page_file
from services.shared.frontend_kit.owned import OwnedTree, RefusedWrite, WriteResult, confined
from services.shared.frontend_kit.sidebar import read_entries, registry_json, sidebar_icons_module

__all__ = ["FrontendTree", "RefusedWrite", "WriteResult", "confined"]


class FrontendTree(OwnedTree):
    def write_page(self, route: str, code: str, requirement_id: str) -> WriteResult:
        return self.write(page_file(route), code.encode(), requirement_id=requirement_id)

    def register_sidebar(self, entry: dict[str, Any]) -> str:
        """Add or replace the entry for ``entry['href']`` in the sidebar registry, and
        rewrite the icon imports beside it."""
        with self.transaction():
            target = confined(self.root, SIDEBAR_REGISTRY)
            entries: list[dict[str, Any]] = []
            if target.exists() and not target.is_symlink():
                self.check_replaceable(SIDEBAR_REGISTRY, self.ownership())
                entries = read_entries(target.read_bytes())
            entries = [e for e in entries if e.get("href") != entry["href"]] + [entry]
            entries.sort(key=lambda e: (e.get("section", ""), e.get("label", "").lower(), e.get("href", "")))
            # both checked before either is written: a hand-edited icon module fails the
            # deploy before the registry names an icon the module does not import
            self.check_replaceable(SIDEBAR_ICONS, self.ownership())
            self.write(SIDEBAR_REGISTRY, registry_json(entries), requirement_id=entry["id"])
            self.write(SIDEBAR_ICONS, sidebar_icons_module(entries), requirement_id=entry["id"])
        return SIDEBAR_REGISTRY
