"""The rules the dashboard's source keeps, checked on the files (no browser needed):
data is never parsed as HTML, nothing runs inline, nothing loads from elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.routes.ui import CSP, STATIC_DIR, TEMPLATES_DIR

SCRIPTS = sorted(STATIC_DIR.rglob("*.js"))
TEMPLATES = sorted(TEMPLATES_DIR.rglob("*.html"))
# sinks that turn a string into markup or code
SINKS = re.compile(
    r"\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(|"
    r"createContextualFragment|DOMParser|srcdoc"
)


def test_there_is_something_to_check():
    assert len(SCRIPTS) >= 5
    assert {p.name for p in TEMPLATES} >= {"base.html", "dashboard.html", "factory.html"}


def test_no_script_turns_strings_into_markup_or_code():
    offenders = [f"{p.name}: {m.group()}" for p in SCRIPTS for m in SINKS.finditer(p.read_text())]
    assert offenders == []


def test_templates_have_no_inline_script_style_or_handler_and_load_only_from_self():
    for path in TEMPLATES:
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"{path.name}: inline <script>"
        assert "<style" not in text, f"{path.name}: inline <style>"
        assert not re.search(r"\sstyle=", text), f"{path.name}: style attribute"
        assert not re.search(r"\son[a-z]+=", text), f"{path.name}: inline event handler"
        for url in re.findall(r'(?:src|href)="([^"]+)"', text):
            assert url.startswith(("/", "#")), f"{path.name}: {url} is not same-origin"
        assert "|safe" not in text and "autoescape false" not in text, f"{path.name}: escaping turned off"


def test_the_csp_allows_nothing_inline_and_nothing_foreign():
    directives = dict(d.split(" ", 1) for d in CSP.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert "unsafe" not in CSP and "http" not in CSP


def test_every_module_import_resolves_to_a_shipped_file():
    for path in SCRIPTS:
        for target in re.findall(r'from "(\./[^"]+)"', path.read_text()):
            assert (path.parent / target).resolve().is_file(), f"{path.name} imports missing {target}"


def test_no_vendored_library_without_its_licence():
    # none is vendored today; one that is must ship with its licence and version beside it
    for vendor in (STATIC_DIR / "vendor").glob("*") if (STATIC_DIR / "vendor").exists() else []:
        assert vendor.is_dir() and any(Path(vendor).glob("LICEN[CS]E*")), vendor
