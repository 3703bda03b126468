"""The identity of a frontend tree: the sha256 of every file in it. The deploy engine
releases it, the integrity scan compares it with the current release, the factory
checks its own files with it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from contracts.factory.tree import EXCLUDED_DIRS


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def scan_tree(root: Path) -> dict[str, str]:
    """Relative posix path -> sha256 of every regular file under ``root`` (symlinks are
    not followed; build output and dependencies, EXCLUDED_DIRS, are skipped)."""
    found: dict[str, str] = {}
    if not root.is_dir():
        return found
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not (here / d).is_symlink())
        for name in sorted(files):
            path = here / name
            if path.is_symlink() or not path.is_file():
                continue
            found[path.relative_to(root).as_posix()] = sha256_file(path)
    return found
