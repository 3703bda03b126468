"""The deploy engine's built-in release build: a tree with a package.json is released
only when ``next build`` of exactly its files succeeds. A failing build fails the
release (``deploy_failed`` with the tail of the compiler's error), ``current`` stays on
the last good release, and a rollback switches back to a release that is already built.
Without AOC_FRONTEND_NODE_MODULES the dependencies come from the release's lockfile
through ``npm ci``, once per lockfile (tested with a lockfile of no packages, so the
mechanism costs a second, not a 400 MB install)."""

from __future__ import annotations

import json
import os

import msgspec
import pytest

from contracts.factory import DeployFailed
from services.runtime.testing import running_engines
from services.shared.frontend_kit.install import install
from tests.factory.conftest import eventually
from tests.factory.nextapp import require_node
from tests.factory.test_deploy_engine import trigger
from tests.factory.toolchain import ensure_toolchain

pytestmark = pytest.mark.timeout(600)  # npm ci on a cold npm cache, and three builds

PAGE = """\
"use client";

import { PageHeader } from "@/components/factory/page-header";

export default function ReportsPage() {
  return <PageHeader title={TITLE} />;
}

const TITLE: string = "Reports";
"""

BROKEN = """\
export default function BrokenPage() {
  return <p>{</p>;
}
"""


async def test_a_failing_next_build_fails_the_release_and_rollback_returns_to_a_built_one(
    line_settings, nc, tap, monkeypatch
):
    require_node()
    monkeypatch.setenv("AOC_DEPLOY_BUILD", "auto")  # no deploy command: the built-in build runs
    monkeypatch.setenv("AOC_FRONTEND_NODE_MODULES", str(ensure_toolchain()))
    async with running_engines(line_settings, ["deploy"]) as hosts:
        engine = hosts["deploy"].engine
        report = install(engine.frontend)  # an empty root: the kit's Next.js app
        assert report.bootstrapped
        page = engine.frontend / "src/app/reports/page.tsx"
        page.parent.mkdir(parents=True)
        page.write_text(PAGE)

        # 1. a good tree: next build, released and current
        await trigger(nc, {})
        first = await eventually(lambda: engine.history and engine.history[0], timeout=400)
        assert first.status == "success", first.error
        assert first.build is not None and first.build.exit_code == 0 and first.build.command == "next build"
        current = engine.store.root / "current"
        assert os.readlink(current) == first.release_id
        routes = json.loads((current / "app/.next/app-path-routes-manifest.json").read_text())
        assert "/reports" in routes.values()
        assert (current / "app/node_modules/next/package.json").stat().st_nlink > 1  # hard links

        # 2. a page that does not compile: the release fails with the compiler's words
        broken = engine.frontend / "src/app/broken/page.tsx"
        broken.parent.mkdir(parents=True)
        broken.write_text(BROKEN)
        errors_before = hosts["deploy"].counters.errors
        await trigger(nc, {})
        failed = await eventually(
            lambda: engine.history[0].status == "failed" and engine.history[0], timeout=300
        )
        assert failed.build is not None and failed.build.exit_code not in (0, None)
        assert failed.error.startswith("next build failed (exit ")
        assert (
            "src/app/broken/page.tsx" in failed.error
            and "Parsing ecmascript source code failed" in failed.error
        )
        assert len(failed.error) <= 1600  # a bounded tail, not the whole log
        assert os.readlink(current) == first.release_id  # the last good release stays
        assert not (engine.store.root / failed.release_id).exists()
        assert hosts["deploy"].counters.errors == errors_before + 1
        event = await tap.wait_for(lambda e: e.type == DeployFailed.TYPE, timeout=10)
        payload = msgspec.json.decode(event.data, type=DeployFailed)
        assert (
            payload.record.error == failed.error and payload.record.build.exit_code == failed.build.exit_code
        )
        assert engine.status_extras()["deploy_history"][0]["build"]["exit_code"] == failed.build.exit_code

        # 3. fixed: a second good release
        broken.unlink()
        page.write_text(PAGE.replace('"Reports"', '"Monthly reports"'))
        await trigger(nc, {})
        second = await eventually(
            lambda: (
                engine.history[0].status == "success"
                and engine.history[0].release_id != first.release_id
                and engine.history[0]
            ),
            timeout=300,
        )
        assert os.readlink(current) == second.release_id
        served = (current / "app/.next/server/app/reports.html").read_text()
        assert "Monthly reports" in served

        # 4. rollback: back to the first release, whose build is still there
        result = await trigger(nc, {"action": "rollback"})
        assert result.get("result") != "rejected", result
        rolled = await eventually(lambda: engine.history[0].action == "rollback" and engine.history[0])
        assert rolled.status == "success" and rolled.build is None  # nothing rebuilt
        assert os.readlink(current) == first.release_id
        assert "Monthly reports" not in (current / "app/.next/server/app/reports.html").read_text()
        assert engine.status_extras()["pinned_release"] == first.release_id


async def test_dependencies_are_installed_with_npm_ci_once_per_lockfile(tmp_path):
    from services.deploy.build import DEPS, ReleaseBuilder
    from services.deploy.releases import ReleaseStore

    store = ReleaseStore(tmp_path / "releases")
    source = tmp_path / "frontend"
    source.mkdir()
    (source / "package.json").write_text('{"name": "tiny", "version": "1.0.0", "private": true}\n')
    lock = {"name": "tiny", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
            "packages": {"": {"name": "tiny", "version": "1.0.0"}}}  # fmt: skip
    (source / "package-lock.json").write_text(json.dumps(lock))
    builder = ReleaseBuilder(store.root, node_modules=None, timeout=120)

    first = await builder.build(store.build(source, "r1", previous=None, info={}))
    # npm ci ran (and stamped the lockfile's install), and a lockfile without next cannot build
    assert not first.ok and "has no next package" in first.error
    (installed,) = (store.root / DEPS).iterdir()
    assert (installed / ".installed").read_text() == installed.name
    stamp = (installed / ".installed").stat().st_mtime_ns

    (source / "README.md").write_text("same lockfile, new release\n")
    await builder.build(store.build(source, "r2", previous=None, info={}))
    assert (installed / ".installed").stat().st_mtime_ns == stamp  # no second npm ci

    lock["packages"][""]["version"] = "1.0.1"  # another lockfile: its own install
    (source / "package-lock.json").write_text(json.dumps(lock))
    third = await builder.build(store.build(source, "r3", previous=None, info={}))
    assert len(list((store.root / DEPS).iterdir())) == 2, third.error
    removed = builder.prune_dependencies([store.get("r3")])
    assert removed == [installed.name] and [p.name for p in (store.root / DEPS).iterdir()] != [installed.name]


async def test_without_a_lockfile_or_dependencies_the_build_fails_clearly(line_settings, nc, monkeypatch):
    monkeypatch.setenv("AOC_DEPLOY_BUILD", "always")
    async with running_engines(line_settings, ["deploy"]) as hosts:
        engine = hosts["deploy"].engine
        engine.frontend.mkdir(parents=True)
        (engine.frontend / "package.json").write_text('{"name": "theirs", "private": true}\n')
        await trigger(nc, {})
        failed = await eventually(lambda: engine.history and engine.history[0])
        assert failed.status == "failed" and failed.error.startswith("dependencies: ")
        assert "package-lock.json" in failed.error
        assert engine.store.current_id() is None


async def test_a_tree_without_package_json_is_released_without_a_build(line_settings, nc, monkeypatch):
    monkeypatch.setenv("AOC_DEPLOY_BUILD", "always")
    async with running_engines(line_settings, ["deploy"]) as hosts:
        engine = hosts["deploy"].engine
        page = engine.frontend / "src/app/reports/page.tsx"
        page.parent.mkdir(parents=True)
        page.write_text("export default function Reports() { return null; }\n")
        await trigger(nc, {})
        done = await eventually(lambda: engine.history and engine.history[0])
        assert done.status == "success" and done.build is None
