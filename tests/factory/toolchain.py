"""The real frontend toolchain for the factory's tests: next, react, react-dom,
lucide-react, TypeScript and the @types, exactly as the kit's bootstrapped app pins
them (services/shared/frontend_kit/library/app/package.json + package-lock.json).

``npm ci`` installs them from the npm registry into a cache directory
(``.cache/next-toolchain``, or ``AOC_NEXT_TOOLCHAIN``) on first use; the cache is reused
while the lockfile is unchanged. No npm or no registry is a test failure, never a skip:
a check that silently does not run proves nothing.

``python -m tests.factory.toolchain icons`` rewrites contracts/factory/icons.py from
the installed lucide-react.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services.shared.frontend_kit.install import APP_SOURCES

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("AOC_NEXT_TOOLCHAIN", ROOT / ".cache" / "next-toolchain"))
PINS = ("package.json", "package-lock.json")

# what a reviewer asks of generated code on top of the app's own "strict": true
STRICT_FLAGS = [
    "--strict",
    "--noUnusedLocals",
    "--noUnusedParameters",
    "--noImplicitReturns",
    "--noFallthroughCasesInSwitch",
]

# the build and the server must not phone home or fetch anything
NODE_ENV = {"NEXT_TELEMETRY_DISABLED": "1", "NO_COLOR": "1", "FORCE_COLOR": "0", "CI": "1"}


def _pins_digest() -> str:
    digest = hashlib.sha256()
    for name in PINS:
        digest.update((APP_SOURCES / name).read_bytes())
    return digest.hexdigest()


def ensure_toolchain() -> Path:
    """The cached node_modules (installing it if needed)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    stamp = CACHE / ".installed"
    with open(CACHE.parent / f".{CACHE.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs install once
        if (
            stamp.exists()
            and stamp.read_text() == _pins_digest()
            and (CACHE / "node_modules/.bin/next").exists()
        ):
            return CACHE / "node_modules"
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not installed: the generated pages cannot be type-checked or built")
        for name in PINS:
            shutil.copyfile(APP_SOURCES / name, CACHE / name)
        stamp.unlink(missing_ok=True)
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            env={**os.environ, **NODE_ENV},
        )
        if result.returncode != 0:
            failure = f"npm ci of the frontend toolchain (next, react, ...) failed (exit {result.returncode})"
            pytest.fail(f"{failure}:\n{result.stderr[-3000:]}")
        stamp.write_text(_pins_digest())
    return CACHE / "node_modules"


def link_node_modules(tree: Path) -> Path:
    """``tree/node_modules`` -> the toolchain (enough for tsc; next build clones it)."""
    node_modules = ensure_toolchain()
    link = tree / "node_modules"
    if not link.exists():
        link.symlink_to(node_modules, target_is_directory=True)
    return node_modules


def typecheck(tree: Path, *extra: str) -> tuple[int, dict[str, list[str]]]:
    """tsc over the whole tree with its own tsconfig.json and STRICT_FLAGS; returns
    (exit code, errors by file)."""
    node_modules = link_node_modules(tree)
    result = subprocess.run(
        [
            str(node_modules / ".bin" / "tsc"),
            "--noEmit",
            "-p",
            "tsconfig.json",
            *STRICT_FLAGS,
            "--pretty",
            "false",
            *extra,
        ],
        cwd=tree,
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


def lucide_names(node_modules: Path) -> list[str]:
    """Every icon component the installed lucide-react exports (aliases included)."""
    script = textwrap.dedent(
        """
        const lucide = require("lucide-react");
        const names = Object.keys(lucide).filter(
          (k) => /^[A-Z]/.test(k) && lucide[k] && typeof lucide[k] === "object" && lucide[k].$$typeof,
        );
        const all = new Set(names);
        const icons = names.filter(
          (k) => k !== "Icon" && !(k.endsWith("Icon") && all.has(k.slice(0, -4))) &&
                 !(k.startsWith("Lucide") && all.has(k.slice(6))),
        );
        process.stdout.write(JSON.stringify(icons.sort()));
        """
    )
    result = subprocess.run(
        ["node", "-e", script],
        cwd=node_modules.parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def write_icons_module(names: list[str], version: str) -> None:
    wrapped = textwrap.fill(" ".join(names), width=100)
    target = ROOT / "contracts" / "factory" / "icons.py"
    source = target.read_text()
    head = source.split("_NAMES = ", 1)[0]
    head = head.replace(head.split('LUCIDE_VERSION = "', 1)[1].split('"', 1)[0], version, 1)
    target.write_text(f'{head}_NAMES = """\n{wrapped}\n"""\n\nLUCIDE_ICONS = frozenset(_NAMES.split())\n')


if __name__ == "__main__":
    if sys.argv[1:] != ["icons"]:
        sys.exit("usage: python -m tests.factory.toolchain icons")
    modules = ensure_toolchain()
    version = json.loads((modules / "lucide-react" / "package.json").read_text())["version"]
    write_icons_module(lucide_names(modules), version)
    print(f"contracts/factory/icons.py: lucide-react {version}")
