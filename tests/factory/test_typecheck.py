"""The TSX of every template, of variants that switch its options off, and of the
hostile corpus, type-checks with tsc --strict in a real frontend tree: the kit's own
sources (components, api client, layout, sidebar), react, next and lucide-react from
the npm registry, and no ambient declarations at all. A deliberately wrong page in the
same run proves the check bites."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contracts.factory import PAGE_TYPES, validate_submission
from services.factory.frontend import FrontendTree
from services.factory.render import Renderer, sidebar_entry
from services.shared.frontend_kit.install import install
from tests.factory.conftest import example
from tests.factory.hostile import hostile_requirements
from tests.factory.toolchain import typecheck


def variants() -> dict[str, dict]:
    cases = {f"{page_type}_example": example(page_type) for page_type in PAGE_TYPES}
    cases |= {f"{page_type}_hostile": body for page_type, body in hostile_requirements().items()}
    cases |= {
        # every option off, the fewest fields
        "data_table_bare": example(
            "data_table", features=[], refresh_interval=0, data_fields=[{"name": "name"}]
        ),
        "data_table_boolean_filter": example(
            "data_table",
            features=["filter", "export"],
            data_fields=[
                {"name": "host"},
                {"name": "isolated", "type": "boolean"},
                {"name": "seen", "type": "date"},
            ],
        ),
        "dashboard_one_metric": example(
            "dashboard",
            features=[],
            refresh_interval=0,
            api_endpoints=[{"path": "/api/v1/soc/count"}],
            data_fields=[{"name": "count", "type": "integer"}],
        ),
        "form_with_prefill": example(
            "form",
            api_endpoints=[
                {"method": "GET", "path": "/api/v1/profile"},
                {"method": "PATCH", "path": "/api/v1/profile"},
            ],
        ),
        "detail_alone": example(
            "detail",
            features=[],
            refresh_interval=10,
            api_endpoints=[{"path": "/api/v1/alerts/{alert_id}"}],
            data_fields=[{"name": "severity", "type": "enum", "values": ["low", "high"]}],
        ),
        "analytics_numbers_only": example(
            "analytics", features=[], refresh_interval=0, data_fields=[{"name": "events", "type": "integer"}]
        ),
        "settings_plain": example(
            "settings",
            features=[],
            api_endpoints=[{"path": "/api/v1/prefs"}, {"method": "POST", "path": "/api/v1/prefs"}],
        ),
    }
    return cases


# Wrong on purpose, three ways: a column key that is not in the row type, a DataTable
# without its required rowKey, and a prop the registry does not declare.
BROKEN_PAGE = """\
"use client";

import { DataTable } from "@/components/factory/data-table";
import { PageHeader } from "@/components/factory/page-header";
import type { ColumnDef } from "@/components/factory/types";

interface Row {
  id: string;
}

const COLUMNS: readonly ColumnDef<Row>[] = [{ key: "identifier", label: "ID", type: "string" }];

export default function BrokenPage() {
  return (
    <>
      <PageHeader title="Broken" colour="red" />
      <DataTable<Row> columns={COLUMNS} rows={[]} />
    </>
  );
}
"""


def test_every_template_and_the_hostile_corpus_type_check_against_the_kit(tmp_path: Path):
    renderer = Renderer()
    install(tmp_path)  # an empty root: the kit and the Next.js app around it
    tree = FrontendTree(tmp_path)
    pages = []
    for name, body in variants().items():
        body = {**body, "route": "/check/" + name.replace("_", "-")}
        result = validate_submission(body)
        assert result.ok, (name, result.errors)
        tree.write_page(result.submission.route, renderer.render_code(result.submission), name)
        tree.register_sidebar(sidebar_entry(name, result.submission))
        pages.append(f"src/app{result.submission.route}/page.tsx")
    (tmp_path / "src/app/broken").mkdir(parents=True)
    (tmp_path / "src/app/broken/page.tsx").write_text(BROKEN_PAGE)
    declarations = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.d.ts")]
    assert [d for d in declarations if not d.startswith("node_modules/")] == ["next-env.d.ts"]

    code, errors = typecheck(tmp_path)

    assert code != 0 and set(errors) == {"src/app/broken/page.tsx"}, errors  # all else is clean
    broken = "\n".join(errors["src/app/broken/page.tsx"])
    assert "identifier" in broken  # a key not in Row
    assert "colour" in broken  # no such prop on the real PageHeader
    assert "rowKey" in broken  # a required prop left out
    assert len(pages) == len(variants()) == 19


def test_without_the_npm_registry_the_check_fails_instead_of_skipping(tmp_path, monkeypatch):
    from tests.factory import toolchain

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    npm = fake_bin / "npm"
    npm.write_text(
        "#!/bin/sh\necho 'npm error network request to https://registry.npmjs.org failed' >&2\nexit 1\n"
    )
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    monkeypatch.setattr(toolchain, "CACHE", tmp_path / "cache")  # an empty cache: it must install
    with pytest.raises(pytest.fail.Exception, match=r"npm ci of the frontend toolchain .* failed \(exit 1\)"):
        toolchain.ensure_toolchain()
