"""The TypeScript compiler for the type-check of generated pages.

Installed with ``npm ci`` from the pinned tests/factory/tsc/package(-lock).json into a
cache directory (``.cache/tsc``, or ``AOC_TSC_CACHE``) on first use, and reused while
the pins are unchanged. No network and no npm is a test failure, not a skip: CI has the
npm registry, and a check that silently does not run proves nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PINS = Path(__file__).parent / "tsc"
CACHE = Path(os.environ.get("AOC_TSC_CACHE", ROOT / ".cache" / "tsc"))

# Next.js's tsconfig defaults, plus the strictness a reviewer would ask for
TSC_FLAGS = [
    "--noEmit",
    "--strict",
    "--jsx",
    "preserve",
    "--target",
    "es2017",
    "--lib",
    "dom,dom.iterable,esnext",
    "--module",
    "esnext",
    "--moduleResolution",
    "bundler",
    "--isolatedModules",
    "--noUnusedLocals",
    "--noUnusedParameters",
    "--noImplicitReturns",
    "--noFallthroughCasesInSwitch",
    "--pretty",
    "false",
]


def _pins_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((PINS / name).read_bytes())
    return digest.hexdigest()


def ensure_typescript() -> Path:
    """Path of the cached node_modules (installing it if needed)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    stamp = CACHE / ".installed"
    with open(CACHE.parent / ".tsc.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs install once
        if (
            stamp.exists()
            and stamp.read_text() == _pins_digest()
            and (CACHE / "node_modules/.bin/tsc").exists()
        ):
            return CACHE / "node_modules"
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not installed: the generated pages cannot be type-checked")
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(PINS / name, CACHE / name)
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            failure = f"npm ci of typescript/@types/react failed (exit {result.returncode})"
            pytest.fail(f"{failure}:\n{result.stderr[-3000:]}")
        stamp.write_text(_pins_digest())
    return CACHE / "node_modules"


def typecheck(directory: Path, files: list[str]) -> tuple[int, dict[str, list[str]]]:
    """Run tsc over ``files`` in ``directory``; returns (exit code, errors by file)."""
    node_modules = ensure_typescript()
    link = directory / "node_modules"
    if not link.exists():
        link.symlink_to(node_modules, target_is_directory=True)
    result = subprocess.run(
        [str(node_modules / ".bin" / "tsc"), *TSC_FLAGS, *files],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        if "): error TS" in line:
            errors.setdefault(line.split("(", 1)[0], []).append(line)
    if result.returncode not in (0, 1, 2) or (result.returncode and not errors):
        output = result.stdout[-2000:] + result.stderr[-2000:]
        pytest.fail(f"tsc did not run cleanly (exit {result.returncode}):\n{output}")
    return result.returncode, errors
