"""Releases on disk (pure filesystem): snapshot, manifest hashes, hard links, atomic
switch, verify, prune; and the deploy command runner."""

from __future__ import annotations

import json
import os
import stat

import pytest

from contracts.factory import tree_digest
from services.deploy.command import run_deploy_command
from services.deploy.releases import ReleaseError, ReleaseStore, changed_files, new_release_id
from services.shared.frontend_kit.files import scan_tree, sha256_file


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "frontend"
    (root / "src/app/a").mkdir(parents=True)
    (root / "src/app/a/page.tsx").write_text("export default function A() { return null; }\n")
    (root / "src/config").mkdir()
    (root / "src/config/factory-sidebar.json").write_text("{}\n")
    (root / "node_modules/react").mkdir(parents=True)  # never part of a release
    (root / "node_modules/react/index.js").write_text("module.exports = {};\n")
    (root / "src/app/link.tsx").symlink_to("/etc/passwd")  # never followed
    return root


def build(store: ReleaseStore, tree, previous=None):
    files = scan_tree(tree)
    return store.build(
        tree, new_release_id(tree_digest(files)), previous=previous, info={"triggered_by": ["test"]}
    )


def test_a_release_is_a_read_only_snapshot_with_a_manifest(tmp_path, tree):
    store = ReleaseStore(tmp_path / "releases")
    release = build(store, tree)
    assert set(release.files) == {"src/app/a/page.tsx", "src/config/factory-sidebar.json"}
    manifest = json.loads((release.path / "manifest.json").read_text())
    assert manifest["tree_sha256"] == tree_digest(scan_tree(tree))
    for path, sha in release.files.items():
        copy = release.path / "tree" / path
        assert sha256_file(copy) == sha
        assert not copy.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert not list(store.root.glob(".building-*"))
    assert store.verify(release.id) == []


def test_unchanged_files_are_hard_linked_and_changes_listed(tmp_path, tree):
    store = ReleaseStore(tmp_path / "releases")
    first = build(store, tree)
    (tree / "src/app/b").mkdir()
    (tree / "src/app/b/page.tsx").write_text("export default function B() { return null; }\n")
    second = build(store, tree, previous=first)
    same = "src/app/a/page.tsx"
    assert os.stat(first.path / "tree" / same).st_ino == os.stat(second.path / "tree" / same).st_ino
    assert changed_files(first.files, second.files) == ["src/app/b/page.tsx"]


def test_current_switches_atomically_and_rollback_targets_are_verified(tmp_path, tree):
    store = ReleaseStore(tmp_path / "releases")
    first = build(store, tree)
    store.switch(first.id)
    assert store.current_id() == first.id and os.readlink(store.root / "current") == first.id
    (tree / "src/app/a/page.tsx").write_text("changed\n")
    second = build(store, tree, previous=first)
    store.switch(second.id)
    assert store.current_id() == second.id
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".current")] == []
    # tampering with a release is detected before anyone switches to it
    copy = first.path / "tree/src/app/a/page.tsx"
    copy.chmod(0o644)
    copy.write_text("tampered\n")
    assert store.verify(first.id) == ["src/app/a/page.tsx: content differs from the manifest"]
    with pytest.raises(ReleaseError):
        store.switch("r-missing")
    with pytest.raises(ReleaseError):
        store.get("../etc")
    with pytest.raises(ReleaseError):
        store.remove(second.id)  # the current release stays


def test_prune_keeps_the_newest_and_the_current(tmp_path, tree):
    store = ReleaseStore(tmp_path / "releases")
    ids = []
    previous = None
    for n in range(4):
        (tree / "src/app/a/page.tsx").write_text(f"version {n}\n")
        previous = build(store, tree, previous)
        ids.append(previous.id)
    store.switch(ids[0])
    removed = store.prune(keep=2)
    assert removed == [ids[1]]
    assert store.ids() == [ids[0], ids[2], ids[3]]


async def test_the_command_runner_captures_exit_output_and_timeouts(tmp_path):
    ok = await run_deploy_command(
        'echo "$AOC_RELEASE_ID $AOC_DEPLOY_ACTION"; echo oops >&2',
        timeout=5,
        release_id="r1",
        release_dir=tmp_path,
        action="deploy",
        frontend_root=tmp_path,
    )
    assert ok.exit_code == 0 and "r1 deploy" in ok.output and "oops" in ok.output
    bad = await run_deploy_command(
        "exit 7", timeout=5, release_id="r1", release_dir=tmp_path, action="deploy", frontend_root=tmp_path
    )
    assert bad.exit_code == 7 and not bad.timed_out
    slow = await run_deploy_command(
        "sleep 30 | cat",
        timeout=0.3,
        release_id="r1",
        release_dir=tmp_path,
        action="deploy",
        frontend_root=tmp_path,
    )
    assert slow.timed_out and slow.exit_code is None and slow.duration_ms < 5000
