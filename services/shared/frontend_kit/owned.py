"""Files the factory owns in a frontend tree, written safely.

- Every path is confined to the root with ``Path.resolve()`` + ``relative_to`` (a
  symlinked directory pointing outside the root is caught; a string prefix check
  would not be).
- The ownership manifest (``.aoc-factory/ownership.json``) holds the sha256 of every
  file the factory wrote (pages, the sidebar registry, the kit). A file that is not in
  it (a human's) or no longer matches it (edited by hand) is never replaced.
- Files are written atomically: a temporary file in the same directory, fsync, then
  ``os.replace``, so a reader (or a release snapshot) never sees half a file. The
  manifest is written first, so a crash in between leaves a file it still recognises.
- The factory engine and ``aoc factory init`` may write at the same time (two
  processes): a read-modify-write of the manifest holds an exclusive ``flock`` on the
  manifest's directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from contracts.events import utcnow
from contracts.factory.tree import OWNERSHIP_MANIFEST
from services.shared.frontend_kit.files import sha256_file

FileState = Literal["absent", "ours", "edited", "foreign", "not_a_file"]


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


class OwnedTree:
    """A frontend tree and the factory's ownership manifest in it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None

    # --- the manifest ---------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the manifest lock (re-entrant within this process) for a read-modify-write."""
        with self._thread_lock:
            if self._depth == 0:
                directory = confined(self.root, OWNERSHIP_MANIFEST).parent
                directory.mkdir(parents=True, exist_ok=True)
                self._lock_fd = os.open(directory, os.O_RDONLY)
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)  # closing releases the flock
                    self._lock_fd = None

    def manifest(self) -> dict[str, Any]:
        path = self.root / OWNERSHIP_MANIFEST
        if not path.exists():
            return {"files": {}}
        try:
            body = json.loads(path.read_text())
            if not isinstance(body.get("files"), dict):
                raise TypeError("no 'files' object")
            return body
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RefusedWrite(f"the ownership manifest {OWNERSHIP_MANIFEST} is unreadable: {exc}") from None

    def ownership(self) -> dict[str, dict[str, Any]]:
        return self.manifest()["files"]

    def save_manifest(self, body: dict[str, Any]) -> None:
        path = confined(self.root, OWNERSHIP_MANIFEST)
        path.parent.mkdir(parents=True, exist_ok=True)
        ordered = {
            "written_by": "aoc frontend-factory",
            **{k: v for k, v in body.items() if k not in ("written_by", "files")},
            "files": dict(sorted(body.get("files", {}).items())),
        }
        write_atomically(path, json.dumps(ordered, indent=2).encode() + b"\n")

    # --- what a file is to the factory --------------------------------------------------------

    def state(self, relative: str, files: dict[str, dict[str, Any]] | None = None) -> FileState:
        target = confined(self.root, relative)
        if (self.root / relative).is_symlink():
            return "not_a_file"
        if not target.exists():
            return "absent"
        if not target.is_file():
            return "not_a_file"
        owned = (files if files is not None else self.ownership()).get(relative)
        if owned is None:
            return "foreign"
        # previous_sha256: a write that recorded its intent but died before the rename
        current = sha256_file(target)
        return "ours" if current in (owned.get("sha256"), owned.get("previous_sha256")) else "edited"

    def check_replaceable(self, relative: str, files: dict[str, dict[str, Any]]) -> str | None:
        """The current sha256 of a file the factory may replace; None when it is absent."""
        state = self.state(relative, files)
        if state == "absent":
            return None
        if state == "not_a_file":
            raise RefusedWrite(
                f"{relative} is a symbolic link or not a file; the factory only replaces its own files"
            )
        if state == "foreign":
            raise RefusedWrite(f"{relative} exists and was not written by the factory; it is left alone")
        if state == "edited":
            raise RefusedWrite(f"{relative} was edited since the factory wrote it; it is left alone")
        return sha256_file(confined(self.root, relative))

    # --- writing ----------------------------------------------------------------------------

    def write(self, relative: str, data: bytes, **owner: Any) -> WriteResult:
        """Write a file the factory owns; ``owner`` is recorded with it (requirement_id or
        kit_version)."""
        with self.transaction():
            confined(self.root, relative)
            body = self.manifest()
            files = body["files"]
            current = self.check_replaceable(relative, files)
            target = confined(self.root, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            confined(self.root, relative)  # again: a directory may have been swapped for a link
            digest = hashlib.sha256(data).hexdigest()
            # the manifest first: a crash between the two leaves a file we still recognise
            files[relative] = {
                "sha256": digest,
                "previous_sha256": current,
                **owner,
                "written_at": utcnow().isoformat(),
            }
            self.save_manifest(body)
            write_atomically(target, data)
        return WriteResult(relative, digest, len(data), replaced=current is not None)

    def remove(self, relative: str) -> None:
        """Delete a file the factory owns and nobody edited (RefusedWrite otherwise)."""
        with self.transaction():
            body = self.manifest()
            if self.check_replaceable(relative, body["files"]) is not None:
                confined(self.root, relative).unlink()
            body["files"].pop(relative, None)
            self.save_manifest(body)
