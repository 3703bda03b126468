"""The built-in build of a release: ``next build`` of exactly the files the release holds.

    <releases>/<id>/tree/...        the immutable snapshot (read-only, hard links)
    <releases>/<id>/app/            the build workspace: a writable copy of tree/,
        node_modules/               the dependencies (hard links into the deps cache)
        .next/                      the build output: `next start` here serves the release
    <releases>/.deps/<lock digest>/node_modules   `npm ci` of a lockfile, once per lockfile

The snapshot is never built in place: ``next build`` may rewrite ``tsconfig.json`` and
``next-env.d.ts``, and the snapshot's files are hard links shared with older releases.
Dependencies come from ``AOC_FRONTEND_NODE_MODULES`` when set (yours to manage), else
from the release's own ``package-lock.json`` through ``npm ci`` (never ``npm install``:
a deploy must not resolve new versions). The workspace gets them as hard links, so
Turbopack sees a real directory inside the app (it refuses to follow a link out of its
root); across filesystems it falls back to a link plus ``AOC_NEXT_WORKSPACE_ROOT``,
which the kit's ``next.config.mjs`` reads.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from contracts.factory import CommandRun
from services.deploy.command import run_process
from services.deploy.releases import TREE, Release

WORKSPACE = "app"
DEPS = ".deps"
ERROR_TAIL = 1500  # characters of a failed step's output quoted in the deploy's error
BUILD_ENV = {
    # no telemetry, no colours in the history, and CI semantics: next build never
    # installs a missing package by itself
    "NEXT_TELEMETRY_DISABLED": "1",
    "NO_COLOR": "1",
    "FORCE_COLOR": "0",
    "CI": "1",
}


@dataclass(frozen=True)
class BuildOutcome:
    run: CommandRun  # the step that decided: next build, or the npm ci / setup that failed
    app_dir: Path
    ok: bool
    error: str | None = None  # for the deploy record: the failing step and its output's tail


def wants_build(release: Release) -> bool:
    return (release.path / TREE / "package.json").is_file()


def lock_digest(tree: Path) -> str | None:
    lock = tree / "package-lock.json"
    return hashlib.sha256(lock.read_bytes()).hexdigest()[:16] if lock.is_file() else None


class ReleaseBuilder:
    def __init__(self, releases_root: Path, *, node_modules: Path | None, timeout: float) -> None:
        self.root = releases_root
        self.node_modules = node_modules
        self.timeout = timeout

    async def build(self, release: Release) -> BuildOutcome:
        app = release.path / WORKSPACE
        await asyncio.to_thread(_copy_tree, release.path / TREE, app)
        deps = await self._dependencies(app)
        if isinstance(deps, BuildOutcome):
            return deps
        env = {**os.environ, **BUILD_ENV}
        linked = await asyncio.to_thread(_link_node_modules, deps, app / "node_modules")
        if not linked:  # another filesystem: a link, and a Turbopack root that holds both
            env["AOC_NEXT_WORKSPACE_ROOT"] = os.path.commonpath([str(app), str(deps.resolve())])
        next_bin = app / "node_modules" / "next" / "dist" / "bin" / "next"
        if shutil.which("node") is None:
            return _failure(app, "next build", "node is not installed on the deploy engine's host")
        if not next_bin.is_file():
            return _failure(app, "next build", f"{deps} has no next package: is it this app's node_modules?")
        run = await run_process(
            ["node", str(next_bin), "build"], timeout=self.timeout, env=env, cwd=app, label="next build"
        )
        if run.timed_out or run.exit_code != 0:
            return BuildOutcome(run, app, ok=False, error=_error("next build", run))
        # the compiler cache is not part of what is served; it would only fill the disk
        await asyncio.to_thread(shutil.rmtree, app / ".next" / "cache", True)
        return BuildOutcome(run, app, ok=True)

    async def _dependencies(self, app: Path) -> Path | BuildOutcome:
        if self.node_modules is not None:
            if not (self.node_modules / "next").is_dir():
                detail = f"AOC_FRONTEND_NODE_MODULES={self.node_modules} holds no next package"
                return _failure(app, "dependencies", detail)
            return self.node_modules
        digest = lock_digest(app)
        if digest is None:
            detail = (
                "the release has a package.json but no package-lock.json: the built-in build installs "
                "with npm ci only (commit a lockfile, or set AOC_FRONTEND_NODE_MODULES)"
            )
            return _failure(app, "dependencies", detail)
        target = self.root / DEPS / digest
        if (target / ".installed").is_file():
            return target / "node_modules"
        target.mkdir(parents=True, exist_ok=True)
        lock = await asyncio.to_thread(open, target / ".lock", "w")
        with lock:  # one npm ci per lockfile, whoever else builds
            await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
            if not (target / ".installed").is_file():
                for name in ("package.json", "package-lock.json"):
                    shutil.copyfile(app / name, target / name)
                npm = shutil.which("npm")
                if npm is None:
                    return _failure(app, "npm ci", "npm is not installed on the deploy engine's host")
                run = await run_process(
                    [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                    timeout=self.timeout,
                    env={**os.environ, **BUILD_ENV},
                    cwd=target,
                    label="npm ci",
                )
                if run.timed_out or run.exit_code != 0:
                    return BuildOutcome(run, app, ok=False, error=_error("npm ci", run))
                (target / ".installed").write_text(digest)
        return target / "node_modules"

    def prune_dependencies(self, keep: list[Release]) -> list[str]:
        """Remove the deps of lockfiles no kept release uses."""
        base = self.root / DEPS
        if not base.is_dir():
            return []
        used = {lock_digest(release.path / TREE) for release in keep}
        removed = []
        for entry in base.iterdir():
            if entry.name not in used:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed


def _copy_tree(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    # copyfile, not copy2: the snapshot's read-only bits stay behind
    shutil.copytree(source, target, copy_function=shutil.copyfile)


def _link_node_modules(source: Path, target: Path) -> bool:
    """Hard-link ``source`` into ``target`` (True), or link the directory (False) when
    hard links cannot reach it (another filesystem)."""
    probe = target.parent / ".aoc-link-probe"
    try:
        os.link(source / "next" / "package.json", probe)
        probe.unlink()
    except OSError:
        target.symlink_to(source.resolve(), target_is_directory=True)
        return False
    shutil.copytree(source, target, symlinks=True, copy_function=os.link)
    return True


def _error(step: str, run: CommandRun) -> str:
    if run.timed_out:
        return f"{step} timed out after {run.duration_ms / 1000:.1f} s"
    tail = run.output.strip()[-ERROR_TAIL:]
    return f"{step} failed (exit {run.exit_code}):\n{tail}"


def _failure(app: Path, step: str, detail: str) -> BuildOutcome:
    run = CommandRun(command=step, exit_code=None, output=detail)
    return BuildOutcome(run, app, ok=False, error=f"{step}: {detail}")
