"""Installing the frontend kit into a frontend tree, the way shadcn/ui's CLI copies its
components into a project: the files become the tree's own, owned by the factory.

- The kit (``library/kit``: the components, their CSS, ``@/lib/api-client``) goes into
  every tree. A root that is not a Next.js app yet (no ``package.json``, no
  ``next.config.*``) also gets the app around it (``library/app``: ``package.json`` and
  its lockfile with pinned next/react/react-dom, ``tsconfig.json`` with ``@/*`` ->
  ``src/*``, ``src/app/layout.tsx`` with the sidebar, the ``/api`` forwarder to the
  gateway). An existing Next.js app is used as it is: only the kit is added.
- The sidebar registry and its icon module are seeded empty when absent; after that
  they are the factory's data (rewritten on each deploy), not kit files.
- Version-stamped: the manifest's ``kit`` section and each file's entry carry
  ``KIT_VERSION`` (a digest of the kit's sources). Installing again upgrades every file
  the factory owns and nobody edited, removes unedited files a newer kit no longer
  ships, and leaves a file edited by hand (or never the factory's) alone, saying so.

Pure file work, no bus: the factory engine runs it on its first deploy and when the
kit changed; ``aoc factory init`` runs it from the command line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from contracts.events import utcnow
from contracts.factory.tree import SIDEBAR_ICONS, SIDEBAR_REGISTRY
from services.shared.frontend_kit.owned import OwnedTree
from services.shared.frontend_kit.sidebar import registry_json, sidebar_icons_module

LIBRARY = Path(__file__).resolve().parent / "library"
KIT_SOURCES = LIBRARY / "kit"
APP_SOURCES = LIBRARY / "app"
NEXT_CONFIGS = ("next.config.js", "next.config.mjs", "next.config.ts", "next.config.cjs")

STATE_REASONS = {
    "edited": "edited by hand since the factory wrote it",
    "foreign": "not written by the factory",
    "not_a_file": "a symbolic link or a directory",
}


@dataclass(frozen=True)
class KitFile:
    path: str  # relative to the frontend root
    data: bytes
    part: str  # kit | app


def _read(base: Path, part: str) -> list[KitFile]:
    return [
        KitFile(path.relative_to(base).as_posix(), path.read_bytes(), part)
        for path in sorted(base.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]


@cache
def kit_sources() -> tuple[KitFile, ...]:
    """Every file the kit can install: the kit itself, then the app around it."""
    return (*_read(KIT_SOURCES, "kit"), *_read(APP_SOURCES, "app"))


@cache
def kit_version() -> str:
    digest = hashlib.sha256()
    for kit_file in kit_sources():
        digest.update(f"{kit_file.part}:{kit_file.path}\0".encode())
        digest.update(hashlib.sha256(kit_file.data).digest())
    return digest.hexdigest()[:12]


def seed_files() -> dict[str, bytes]:
    """Data the kit's sidebar reads, created empty when a tree has none."""
    return {SIDEBAR_REGISTRY: registry_json([]), SIDEBAR_ICONS: sidebar_icons_module([])}


def is_next_app(root: Path) -> bool:
    return (root / "package.json").exists() or any((root / name).exists() for name in NEXT_CONFIGS)


@dataclass
class InstallReport:
    root: str
    version: str
    previous_version: str | None
    bootstrapped: bool  # the kit's app is (now) this tree's app
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # path -> why it was left alone

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed) or self.previous_version != self.version

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "version": self.version,
            "previous_version": self.previous_version,
            "bootstrapped": self.bootstrapped,
            "written": self.written,
            "unchanged": len(self.unchanged),
            "removed": self.removed,
            "kept": self.kept,
        }


def installed_version(root: Path) -> str | None:
    """The kit version the tree's manifest records, if any."""
    try:
        return (OwnedTree(root).manifest().get("kit") or {}).get("version")
    except Exception:
        return None


def install(root: Path) -> InstallReport:
    """Install or upgrade the kit in ``root`` (created when missing)."""
    root.mkdir(parents=True, exist_ok=True)
    tree = OwnedTree(root)
    version = kit_version()
    with tree.transaction():
        body = tree.manifest()
        stamp = body.get("kit") or {}
        previous = stamp.get("version")
        # once the kit's app, always (so its package.json is upgraded with the kit)
        app = bool(stamp.get("app")) if previous else not is_next_app(tree.root)
        report = InstallReport(str(tree.root), version, previous, bootstrapped=app)
        wanted = [f for f in kit_sources() if f.part == "kit" or app]
        for kit_file in wanted:
            state = tree.state(kit_file.path)
            if state in ("absent", "ours"):
                current = tree.ownership().get(kit_file.path, {}).get("sha256")
                if state == "ours" and current == hashlib.sha256(kit_file.data).hexdigest():
                    report.unchanged.append(kit_file.path)
                    continue
                tree.write(kit_file.path, kit_file.data, kit_version=version)
                report.written.append(kit_file.path)
            else:
                report.kept[kit_file.path] = STATE_REASONS[state]
        shipped = {f.path for f in wanted} | set(seed_files())
        for path, entry in sorted(tree.ownership().items()):
            if entry.get("kit_version") and path not in shipped:
                state = tree.state(path)
                if state in ("ours", "absent"):
                    tree.remove(path)
                    report.removed.append(path)
                else:
                    report.kept[path] = f"no longer in the kit, but {STATE_REASONS[state]}"
        for path, data in seed_files().items():
            if tree.state(path) == "absent":
                tree.write(path, data, kit_version=version)
                report.written.append(path)
        body = tree.manifest()
        body["kit"] = {"version": version, "app": app, "installed_at": utcnow().isoformat()}
        tree.save_manifest(body)
    return report
