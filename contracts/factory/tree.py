"""The layout of the frontend tree the factory writes into (paths relative to
``AOC_FRONTEND_ROOT``) and the digest that names a tree's content. Reading files is
the services' business (services/shared/frontend_kit/files.py); this is only the
vocabulary they agree on."""

from __future__ import annotations

import hashlib

APP_DIR = "src/app"  # Next.js App Router pages: <APP_DIR>/<route>/page.tsx
SIDEBAR_REGISTRY = "src/config/factory-sidebar.json"  # the sidebar entries of generated pages
# the lucide icons those entries name, as imports (written beside the registry): a bundler
# only ships the icons a page or the sidebar really uses
SIDEBAR_ICONS = "src/config/factory-sidebar-icons.ts"
OWNERSHIP_MANIFEST = ".aoc-factory/ownership.json"  # which files the factory wrote, by sha256
# build output and dependencies: rebuilt from the sources, never part of a release
EXCLUDED_DIRS = frozenset({"node_modules", ".next", ".git", ".turbo", ".cache", "out", "dist"})


def tree_digest(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{files[path]}\n".encode())
    return digest.hexdigest()


def page_file(route: str) -> str:
    """The App Router file of a (validated) route."""
    return f"{APP_DIR}{route}/page.tsx"
