"""Writing into the frontend tree (pure filesystem): confinement with resolve +
relative_to, the ownership manifest, the sidebar registry, atomic writes."""

from __future__ import annotations

import json

import pytest

from contracts.factory import OWNERSHIP_MANIFEST, SIDEBAR_REGISTRY
from services.factory.frontend import FrontendTree, RefusedWrite, confined


@pytest.fixture
def tree(tmp_path) -> FrontendTree:
    return FrontendTree(tmp_path / "frontend")


def test_paths_stay_inside_the_root(tree, tmp_path):
    assert confined(tree.root, "src/app/a/page.tsx") == tree.root / "src/app/a/page.tsx"
    for escape in ("../outside.tsx", "src/../../outside.tsx", "/etc/passwd", "."):
        with pytest.raises(RefusedWrite):
            confined(tree.root, escape)
    # a sibling that shares the root's name as a prefix: startswith would let it through
    (tmp_path / "frontend-evil").mkdir()
    with pytest.raises(RefusedWrite):
        confined(tree.root, "../frontend-evil/page.tsx")


def test_a_symlinked_directory_cannot_lead_out(tree, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tree.root / "src/app").mkdir(parents=True)
    (tree.root / "src/app/evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RefusedWrite, match="outside the frontend root"):
        tree.write_page("/evil", "code", "r1")
    assert list(outside.iterdir()) == []


def test_the_factory_replaces_only_what_it_wrote(tree):
    first = tree.write_page("/reports", "one\n", "r1")
    assert first.replaced is False and (tree.root / first.file_path).read_text() == "one\n"
    second = tree.write_page("/reports", "two\n", "r1")
    assert second.replaced is True
    owned = json.loads((tree.root / OWNERSHIP_MANIFEST).read_text())["files"]
    assert owned[first.file_path]["sha256"] == second.sha256
    # edited by hand since: left alone
    (tree.root / first.file_path).write_text("edited by a human\n")
    with pytest.raises(RefusedWrite, match="edited since the factory wrote it"):
        tree.write_page("/reports", "three\n", "r1")
    # never written by the factory: left alone
    foreign = tree.root / "src/app/mine/page.tsx"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("mine\n")
    with pytest.raises(RefusedWrite, match="not written by the factory"):
        tree.write_page("/mine", "x\n", "r2")
    assert foreign.read_text() == "mine\n"
    # a symlink in place of the page is never followed or replaced
    (tree.root / "src/app/link").mkdir()
    (tree.root / "src/app/link/page.tsx").symlink_to(foreign)
    with pytest.raises(RefusedWrite, match="symbolic link"):
        tree.write_page("/link", "x\n", "r3")
    assert not [p for p in tree.root.rglob("*.tmp")]


def test_the_sidebar_registry_is_upserted_by_route(tree):
    entry = {"id": "r1", "label": "Reports", "href": "/reports", "section": "main", "icon": "FileText"}
    tree.register_sidebar(entry)
    tree.register_sidebar({**entry, "label": "Reports v2"})
    tree.register_sidebar({**entry, "id": "r2", "label": "Assets", "href": "/assets"})
    entries = json.loads((tree.root / SIDEBAR_REGISTRY).read_text())["entries"]
    assert [(e["href"], e["label"]) for e in entries] == [("/assets", "Assets"), ("/reports", "Reports v2")]
    (tree.root / SIDEBAR_REGISTRY).write_text('{"entries": []}\n')  # edited by a human
    with pytest.raises(RefusedWrite):
        tree.register_sidebar(entry)
