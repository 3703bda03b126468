"""Immutable releases of the frontend tree (filesystem only; no NATS).

    <releases>/
      r20261122-035348-193-519970b9/     one release: a snapshot of the tree
        tree/src/app/.../page.tsx        read-only copies (unchanged files hard-linked
        manifest.json                    to the previous release) + sha256 of each file
      current -> r20261122-035348-193-519970b9

- A release is built under ``.building-<id>`` and renamed into place, so a half-built
  release never has a name.
- The manifest lists the sha256 of each file *as copied* (not as it was when scanned),
  so it describes exactly the bytes in the release even if the tree changed meanwhile.
- ``current`` is switched atomically: a new symlink beside it, then ``os.replace``.
- Rollback only switches to a release whose files still match its manifest.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.factory.tree import tree_digest
from services.shared.frontend_kit.files import scan_tree, sha256_file

CURRENT = "current"
MANIFEST = "manifest.json"
TREE = "tree"


class ReleaseError(Exception):
    pass


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Added, modified and removed paths, sorted."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


@dataclass(frozen=True)
class Release:
    id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def files(self) -> dict[str, str]:
        return {path: entry["sha256"] for path, entry in self.manifest["files"].items()}


def new_release_id(digest: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"r{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}-{digest[:8]}"


def _read_only(path: Path) -> None:
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


class ReleaseStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # --- reading ------------------------------------------------------------------------------

    def current_id(self) -> str | None:
        link = self.root / CURRENT
        if not link.is_symlink():
            return None
        return Path(os.readlink(link)).name

    def get(self, release_id: str) -> Release:
        if "/" in release_id or release_id.startswith(".") or release_id in ("", CURRENT):
            raise ReleaseError(f"{release_id!r} is not a release id")
        path = self.root / release_id
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise ReleaseError(f"no release {release_id!r} ({type(exc).__name__})") from None
        return Release(release_id, path, manifest)

    def current(self) -> Release | None:
        release_id = self.current_id()
        return self.get(release_id) if release_id else None

    def ids(self) -> list[str]:
        """Release ids, oldest first (ids start with their creation time)."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.name.startswith("r") and (p / MANIFEST).is_file()
        )

    def verify(self, release_id: str) -> list[str]:
        """What no longer matches the release's manifest (empty: intact)."""
        release = self.get(release_id)
        problems = []
        for path, sha in release.files.items():
            target = release.path / TREE / path
            if not target.is_file():
                problems.append(f"{path}: missing")
            elif sha256_file(target) != sha:
                problems.append(f"{path}: content differs from the manifest")
        return problems

    # --- writing ------------------------------------------------------------------------------

    def build(
        self, source: Path, release_id: str, *, previous: Release | None, info: dict[str, Any]
    ) -> Release:
        """Snapshot ``source`` as release ``release_id``; unchanged files are hard links."""
        final = self.root / release_id
        if final.exists():
            raise ReleaseError(f"release {release_id} exists already")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".building-{release_id}"
        self._remove_dir(staging)
        known = previous.files if previous else {}
        files: dict[str, dict[str, Any]] = {}
        try:
            for relative, scanned_sha in scan_tree(source).items():
                target = staging / TREE / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if previous is not None and known.get(relative) == scanned_sha:
                    try:
                        os.link(previous.path / TREE / relative, target)
                        files[relative] = {"sha256": scanned_sha, "bytes": target.stat().st_size}
                        continue
                    except OSError:
                        pass  # another filesystem, or the previous copy is gone: copy instead
                shutil.copyfile(source / relative, target)
                _read_only(target)
                files[relative] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
            digest = tree_digest({path: entry["sha256"] for path, entry in files.items()})
            manifest = {
                "release_id": release_id,
                "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "source": str(source),
                "tree_sha256": digest,
                "previous": previous.id if previous else None,
                "file_count": len(files),
                "bytes": sum(entry["bytes"] for entry in files.values()),
                **info,
                "files": files,
            }
            manifest_path = staging / MANIFEST
            manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
            _read_only(manifest_path)
            os.rename(staging, final)
        except BaseException:
            self._remove_dir(staging)
            raise
        return Release(release_id, final, manifest)

    def switch(self, release_id: str) -> None:
        """Point ``current`` at the release, atomically."""
        self.get(release_id)  # it must exist
        temporary = self.root / f".{CURRENT}-{os.getpid()}-{release_id}"
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        os.symlink(release_id, temporary)  # relative: the releases dir can move
        os.replace(temporary, self.root / CURRENT)

    def remove(self, release_id: str) -> None:
        if release_id == self.current_id():
            raise ReleaseError(f"release {release_id} is current; switch away before removing it")
        self._remove_dir(self.root / self.get(release_id).id)

    def prune(self, keep: int) -> list[str]:
        """Remove the oldest releases beyond ``keep`` (never the current one)."""
        current = self.current_id()
        ids = self.ids()
        doomed = [r for r in ids[: max(len(ids) - keep, 0)] if r != current]
        for release_id in doomed:
            self._remove_dir(self.root / release_id)
        return doomed

    def clean_staging(self) -> None:
        """Remove half-built releases left by a crash."""
        if self.root.is_dir():
            for leftover in self.root.glob(".building-*"):
                self._remove_dir(leftover)

    @staticmethod
    def _remove_dir(path: Path) -> None:
        # files are read-only, directories are not: unlinking needs only the directory
        if path.exists():
            shutil.rmtree(path)
