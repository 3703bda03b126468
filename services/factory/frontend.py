"""Writing generated pages into the frontend tree, safely.

- Every path is confined to the root with ``Path.resolve()`` + ``relative_to`` (a
  symlinked directory pointing outside the root is caught; a string prefix check
  would not be).
- The factory keeps an ownership manifest (``.aoc-factory/ownership.json``): the sha256
  of every file it wrote. It refuses to replace a file that is not in the manifest (a
  human's page) or whose content no longer matches (a page edited by hand).
- Files are written atomically: a temporary file in the same directory, fsync, then
  ``os.replace``, so a reader (or a release snapshot) never sees half a page.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.events import utcnow
from contracts.factory import OWNERSHIP_MANIFEST, SIDEBAR_REGISTRY, sha256_file
from services.factory.render import page_file


class RefusedWrite(Exception):
    """The factory will not write this file; the message says why."""


@dataclass(frozen=True)
class WriteResult:
    file_path: str  # relative to the root
    sha256: str
    bytes: int
    replaced: bool


def confined(root: Path, relative: str) -> Path:
    """``root/relative`` resolved, or RefusedWrite when it would leave the root."""
    base = root.resolve()
    target = (base / relative).resolve()
    try:
        target.relative_to(base)
    except ValueError:
        raise RefusedWrite(f"{relative!r} resolves outside the frontend root") from None
    if target == base:
        raise RefusedWrite(f"{relative!r} is the frontend root itself")
    return target


def write_atomically(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


class FrontendTree:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    # --- ownership -----------------------------------------------------------------------

    def ownership(self) -> dict[str, dict[str, Any]]:
        path = self.root / OWNERSHIP_MANIFEST
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RefusedWrite(f"the ownership manifest {OWNERSHIP_MANIFEST} is unreadable: {exc}") from None

    def _save_ownership(self, files: dict[str, dict[str, Any]]) -> None:
        path = confined(self.root, OWNERSHIP_MANIFEST)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"written_by": "aoc frontend-factory", "files": dict(sorted(files.items()))}
        write_atomically(path, json.dumps(body, indent=2).encode() + b"\n")

    def _check_replaceable(self, relative: str, target: Path, files: dict[str, dict[str, Any]]) -> str | None:
        """The current sha256 of a file the factory may replace; None when it is absent."""
        if target.is_symlink():
            raise RefusedWrite(f"{relative} is a symbolic link; the factory only replaces its own files")
        if not target.exists():
            return None
        if not target.is_file():
            raise RefusedWrite(f"{relative} exists and is not a file")
        owned = files.get(relative)
        if owned is None:
            raise RefusedWrite(f"{relative} exists and was not written by the factory; it is left alone")
        current = sha256_file(target)
        # previous_sha256: a write that recorded its intent but died before the rename
        if current not in (owned.get("sha256"), owned.get("previous_sha256")):
            raise RefusedWrite(f"{relative} was edited since the factory wrote it; it is left alone")
        return current

    def write(self, relative: str, data: bytes, requirement_id: str) -> WriteResult:
        target = confined(self.root, relative)
        if (self.root / relative).is_symlink():  # resolve() followed it: look at the link itself
            raise RefusedWrite(f"{relative} is a symbolic link; the factory only replaces its own files")
        files = self.ownership()
        current = self._check_replaceable(relative, target, files)
        target.parent.mkdir(parents=True, exist_ok=True)
        confined(self.root, relative)  # again: a directory may have been swapped for a link
        digest = hashlib.sha256(data).hexdigest()
        # the manifest first: a crash between the two leaves a file we still recognise
        files[relative] = {
            "sha256": digest,
            "previous_sha256": current,
            "requirement_id": requirement_id,
            "written_at": utcnow().isoformat(),
        }
        self._save_ownership(files)
        write_atomically(target, data)
        return WriteResult(relative, digest, len(data), replaced=current is not None)

    # --- what the factory writes ------------------------------------------------------------

    def write_page(self, route: str, code: str, requirement_id: str) -> WriteResult:
        return self.write(page_file(route), code.encode(), requirement_id)

    def register_sidebar(self, entry: dict[str, Any]) -> str:
        """Add or replace the entry for ``entry['href']`` in the sidebar registry."""
        target = confined(self.root, SIDEBAR_REGISTRY)
        entries: list[dict[str, Any]] = []
        if target.exists() and not target.is_symlink():
            self._check_replaceable(SIDEBAR_REGISTRY, target, self.ownership())
            entries = json.loads(target.read_text()).get("entries", [])
        entries = [e for e in entries if e.get("href") != entry["href"]] + [entry]
        entries.sort(key=lambda e: (e.get("section", ""), e.get("label", "").lower(), e.get("href", "")))
        body = {"written_by": "aoc frontend-factory", "entries": entries}
        self.write(
            SIDEBAR_REGISTRY, json.dumps(body, indent=2, ensure_ascii=False).encode() + b"\n", entry["id"]
        )
        return SIDEBAR_REGISTRY
