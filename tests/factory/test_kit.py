"""The frontend kit: its real sources are what the registry (GET component-library)
says, prop for prop as the TypeScript compiler sees them; the installer bootstraps an
empty root, leaves an existing app alone, upgrades what it owns and keeps what a person
edited."""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path

import msgspec
import pytest

from contracts.factory import LUCIDE_ICONS, OWNERSHIP_MANIFEST, SIDEBAR_ICONS, SIDEBAR_REGISTRY
from contracts.factory.catalog import API_MODULE, COMPONENTS, SUPPORT_MODULES, TYPES_MODULE
from services.shared.frontend_kit import install as kit
from services.shared.frontend_kit.install import KIT_SOURCES, KitFile, install, installed_version, kit_version
from tests.factory.toolchain import ensure_toolchain, lucide_names, typecheck

COMPONENT_DIR = KIT_SOURCES / "src" / "components" / "factory"
SHARED_TYPES = (
    "ChartKind",
    "ChartPoint",
    "ColumnDef",
    "DetailItem",
    "FieldSpec",
    "FieldValue",
    "FilterOption",
    "LucideIcon",
    "SortState",
    "ValueFormat",
)


# --- the registry is the sources -------------------------------------------------------------


def test_every_registered_component_is_a_kit_source_and_nothing_else_is():
    sources = {p.name for p in COMPONENT_DIR.iterdir()}
    components = {Path(c.file).name for c in COMPONENTS.values()}
    support = {m.rsplit("/", 1)[1] + ".ts" for m in SUPPORT_MODULES}
    assert {s for s in sources if s.endswith(".tsx")} == components
    assert {s for s in sources if s.endswith(".ts")} == support
    assert sources - components - support == {"factory.css"}
    assert (KIT_SOURCES / "src" / (API_MODULE.removeprefix("@/") + ".ts")).is_file()
    for component in COMPONENTS.values():
        source = (KIT_SOURCES / component.file).read_text()
        generic = "<T>" if component.generic else ""
        assert f"export interface {component.name}Props{generic} {{" in source, component.name
        assert f"export function {component.name}{generic}(" in source, component.name
        # the description the API lists is the one the source documents
        assert f"/** {component.description} */" in source, component.name


def registry_check(wrong: str | None = None) -> str:
    """TypeScript that fails to compile unless every <Name>Props equals the registry's
    props. ``wrong`` names a component whose first prop is declared with a wrong type."""
    lines = [
        'import type { ReactNode } from "react";',
        f"import type {{ {', '.join(SHARED_TYPES)} }} from {json.dumps(TYPES_MODULE)};",
        "",
        "type Same<A, G> = G extends A ? 1 : 2;",
        "type Equal<A, B> = (<G>() => Same<A, G>) extends <G>() => Same<B, G> ? true : false;",
        "type Expect<T extends true> = T;",
        "interface Row {",
        "  id: string;",
        "  score: number;",
        "}",
        "// every shared type is used, so none is reported unused",
        "export type Shared = [{}, ReactNode];".format(
            ", ".join(f"{name}<Row>" if name in ("ColumnDef", "SortState") else name for name in SHARED_TYPES)
        ),
    ]
    for component in COMPONENTS.values():
        lines.insert(0, f"import {{ {component.name} }} from {json.dumps(component.module)};")
        lines.insert(0, f"import type {{ {component.name}Props }} from {json.dumps(component.module)};")
        generic = "<T>" if component.generic else ""
        applied = "<Row>" if component.generic else ""
        lines.append(f"interface Declared{component.name}{generic} {{")
        for index, prop in enumerate(component.props):
            kind = "symbol" if component.name == wrong and index == 0 else prop.type
            lines.append(f"  {prop.name}{'' if prop.required else '?'}: {kind};")
        lines.append("}")
        lines.append(
            f"export type Check{component.name} = "
            f"Expect<Equal<{component.name}Props{applied}, Declared{component.name}{applied}>>;"
        )
        # and the function takes them
        lines.append(
            f"export const accepts{component.name}: (props: Declared{component.name}{applied}) => unknown = "
            f"{component.name}{applied};"
        )
    return "\n".join(lines) + "\n"


def test_the_props_of_every_source_equal_the_registry_as_tsc_sees_them(tmp_path: Path):
    install(tmp_path)
    (tmp_path / "src" / "registry-check.ts").write_text(registry_check())
    (tmp_path / "src" / "registry-wrong.ts").write_text(registry_check(wrong="PageHeader"))

    code, errors = typecheck(tmp_path)

    # the honest declaration compiles; the one with a wrong prop type does not
    assert code != 0 and set(errors) == {"src/registry-wrong.ts"}, errors
    assert any("CheckPageHeader" in e or "PageHeader" in e for e in errors["src/registry-wrong.ts"])


def test_the_icon_names_are_those_of_the_pinned_lucide_react():
    modules = ensure_toolchain()
    version = json.loads((modules / "lucide-react" / "package.json").read_text())["version"]
    from contracts.factory.icons import LUCIDE_VERSION

    assert version == LUCIDE_VERSION
    assert set(lucide_names(modules)) == LUCIDE_ICONS, "python -m tests.factory.toolchain icons"


def test_the_bootstrapped_app_pins_exact_versions_and_locks_them():
    package = json.loads((kit.APP_SOURCES / "package.json").read_text())
    lock = json.loads((kit.APP_SOURCES / "package-lock.json").read_text())
    pinned = {**package["dependencies"], **package["devDependencies"]}
    assert {"next", "react", "react-dom", "lucide-react", "typescript"} <= set(pinned)
    assert all(v[0].isdigit() for v in pinned.values()), pinned  # no ^ or ~ ranges
    for name, version in pinned.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, name
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    tsconfig = json.loads((kit.APP_SOURCES / "tsconfig.json").read_text())
    assert tsconfig["compilerOptions"]["paths"] == {"@/*": ["./src/*"]}
    assert tsconfig["compilerOptions"]["strict"] is True


def test_package_data_ships_the_library():
    """The Dockerfile installs a wheel: the library must be package data."""
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["services.shared.frontend_kit"]
    base = KIT_SOURCES.parent.parent
    # setuptools matches package data with the glob module (no dotfiles for a bare *)
    found = {Path(base, p) for pattern in patterns for p in glob.glob(pattern, root_dir=base, recursive=True)}
    shipped = {p for p in found if p.is_file()}
    assert {p for p in (base / "library").rglob("*") if p.is_file()} == shipped


# --- installing ------------------------------------------------------------------------------


def manifest(root: Path) -> dict:
    return json.loads((root / OWNERSHIP_MANIFEST).read_text())


def test_an_empty_root_becomes_a_next_app_with_the_kit(tmp_path: Path):
    root = tmp_path / "frontend"  # not even there yet
    report = install(root)

    assert report.bootstrapped and report.previous_version is None and not report.kept
    for path in (
        "package.json",
        "package-lock.json",
        "tsconfig.json",
        "src/app/layout.tsx",
        "src/app/api/[...path]/route.ts",
        "src/components/factory/data-table.tsx",
        "src/lib/api-client.ts",
        SIDEBAR_REGISTRY,
        SIDEBAR_ICONS,
    ):
        assert (root / path).is_file(), path
        assert path in report.written
    layout = (root / "src/app/layout.tsx").read_text()
    assert 'from "@/components/factory/sidebar"' in layout and "<Sidebar" in layout
    assert json.loads((root / SIDEBAR_REGISTRY).read_text())["entries"] == []
    owned = manifest(root)
    assert owned["kit"]["version"] == kit_version() == installed_version(root)
    assert owned["files"]["src/lib/api-client.ts"]["kit_version"] == kit_version()
    assert (
        owned["files"]["src/lib/api-client.ts"]["sha256"]
        == hashlib.sha256((root / "src/lib/api-client.ts").read_bytes()).hexdigest()
    )

    again = install(root)  # the same kit: nothing to do
    assert not again.written and not again.removed and not again.changed


def test_an_existing_next_app_is_used_as_it_is(tmp_path: Path):
    (tmp_path / "package.json").write_text('{"name": "theirs", "dependencies": {"next": "15.0.0"}}\n')
    (tmp_path / "src/lib").mkdir(parents=True)
    (tmp_path / "src/lib/api-client.ts").write_text("export const api = 1;\n")  # their own client

    report = install(tmp_path)

    assert not report.bootstrapped
    assert json.loads((tmp_path / "package.json").read_text())["name"] == "theirs"
    assert not (tmp_path / "tsconfig.json").exists() and not (tmp_path / "src/app/layout.tsx").exists()
    assert (tmp_path / "src/components/factory/data-table.tsx").is_file()
    assert (tmp_path / "src/lib/api-client.ts").read_text() == "export const api = 1;\n"
    assert report.kept == {"src/lib/api-client.ts": "not written by the factory"}


def test_an_upgrade_replaces_what_nobody_edited_and_keeps_what_someone_did(tmp_path: Path, monkeypatch):
    install(tmp_path)
    before = kit_version()
    edited = "src/components/factory/button.tsx"
    (tmp_path / edited).write_text((tmp_path / edited).read_text() + "// our tweak\n")
    old = kit.kit_sources()
    # the next kit: every component changes, and one file is gone from it
    dropped = "src/components/factory/success-banner.tsx"
    newer = tuple(
        KitFile(f.path, f.data + b"// v2\n" if f.path.endswith(".tsx") else f.data, f.part)
        for f in old
        if f.path != dropped
    )
    monkeypatch.setattr(kit, "kit_sources", lambda: newer)
    monkeypatch.setattr(kit, "kit_version", lambda: "v2-test")

    report = install(tmp_path)

    assert report.previous_version == before and report.version == "v2-test"
    assert "src/components/factory/data-table.tsx" in report.written
    assert (tmp_path / "src/components/factory/data-table.tsx").read_text().endswith("// v2\n")
    assert report.kept == {edited: "edited by hand since the factory wrote it"}
    assert (tmp_path / edited).read_text().endswith("// our tweak\n")
    assert report.removed == [dropped] and not (tmp_path / dropped).exists()
    assert manifest(tmp_path)["kit"]["version"] == "v2-test"
    assert "tsconfig.json" not in report.written  # unchanged in the new kit: left as it is


def test_the_sidebar_data_is_seeded_once_and_then_the_factorys(tmp_path: Path):
    from services.factory.frontend import FrontendTree

    install(tmp_path)
    FrontendTree(tmp_path).register_sidebar(
        {"id": "r1", "label": "Risk", "href": "/risk", "section": "main", "icon": "ShieldAlert"}
    )
    report = install(tmp_path)
    assert SIDEBAR_REGISTRY not in report.written
    assert [e["href"] for e in json.loads((tmp_path / SIDEBAR_REGISTRY).read_text())["entries"]] == ["/risk"]
    icons = (tmp_path / SIDEBAR_ICONS).read_text()
    assert 'import { ShieldAlert } from "lucide-react";' in icons
    assert "SIDEBAR_ICONS: Readonly<Record<string, LucideIcon>> = { ShieldAlert };" in icons


@pytest.mark.parametrize("icon", ["NotAnIcon", "Shieldalert"])
def test_an_icon_lucide_does_not_have_is_refused_at_submit(icon: str):
    from contracts.factory import validate_submission
    from tests.factory.conftest import example

    result = validate_submission(example("data_table", sidebar_icon=icon))
    assert not result.ok
    assert [e.loc for e in result.errors] == [("sidebar_icon",)]
    assert "lucide" in result.errors[0].msg


def test_aoc_factory_init_installs_the_kit_without_importing_an_engine(tmp_path: Path):
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from services.launcher.cli import main\n"
        f"code = main(['factory', 'init', '--root', {str(tmp_path / 'frontend')!r}])\n"
        "engines = sorted(m for m in sys.modules if m.split('.')[:2] in (\n"
        "    ['services', 'factory'], ['services', 'deploy'], ['services', 'integrity']))\n"
        "print('ENGINES', engines)\n"
        "sys.exit(code)\n"
    )
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "bootstrapped a Next.js app with frontend kit" in first.stdout
    assert "  wrote    src/components/factory/data-table.tsx" in first.stdout
    assert "ENGINES []" in first.stdout
    assert installed_version(tmp_path / "frontend") == kit_version()

    again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert f"frontend kit {kit_version()} is up to date" in again.stdout


async def test_the_factory_installs_the_kit_on_its_first_deploy_and_upgrades_it_at_start(
    line_settings, nc, tap, monkeypatch
):
    from contracts.factory import (
        REQUIREMENT_ID_HEADER,
        SUBMIT_SUBJECT,
        FactoryRequest,
        FrontendKitInstalled,
        encode,
        reply_decoder,
        request_subject,
    )
    from services.runtime.testing import running_engines
    from tests.factory.conftest import eventually, example

    async def ask(verb: str, requirement_id: str):
        reply = await nc.request(
            request_subject(verb), encode(FactoryRequest(requirement_id=requirement_id)), 5
        )
        return reply_decoder.decode(reply.data)

    async with running_engines(line_settings, ["frontend-factory"]) as hosts:
        engine = hosts["frontend-factory"].engine
        await nc.jetstream().publish(
            SUBMIT_SUBJECT,
            json.dumps(example("data_table")).encode(),
            headers={REQUIREMENT_ID_HEADER: "kit-1"},
        )
        await eventually(lambda: engine.ledger.get("kit-1"))
        assert (await ask("generate", "kit-1")).ok
        assert not (engine.tree.root / "package.json").exists()  # nothing before the first deploy
        assert (await ask("deploy", "kit-1")).ok

        event = await tap.wait_for(lambda e: e.type == FrontendKitInstalled.TYPE)
        installed = msgspec.json.decode(event.data, type=FrontendKitInstalled)
        assert installed.bootstrapped and installed.previous_version is None
        assert installed.version == kit_version() == installed_version(engine.tree.root)
        assert "src/components/factory/data-table.tsx" in installed.written

        # a newer AOC ships a newer kit: the factory upgrades the tree when it starts
        newer = tuple(
            KitFile(f.path, f.data + b"\n", f.part) if f.path.endswith(".css") else f
            for f in kit.kit_sources()
        )
        monkeypatch.setattr(kit, "kit_sources", lambda: newer)
        monkeypatch.setattr(kit, "kit_version", lambda: "newer-kit")
        monkeypatch.setattr("services.factory.engine.kit_version", lambda: "newer-kit")
        body = json.dumps({"actor": "test", "reason": "a newer kit"}).encode()
        await nc.request("aoc.ctl.frontend-factory.restart", body, timeout=5)
        event = await tap.wait_for(
            lambda e: e.type == FrontendKitInstalled.TYPE and b"newer-kit" in bytes(e.data), timeout=10
        )
        upgraded = msgspec.json.decode(event.data, type=FrontendKitInstalled)
        assert upgraded.previous_version == installed.version and upgraded.bootstrapped
        assert upgraded.written == ["src/components/factory/factory.css"]
        assert installed_version(engine.tree.root) == "newer-kit"
