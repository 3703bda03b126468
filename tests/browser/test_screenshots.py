"""Screenshots of both pages, in a realistic state, for the README.

Every run takes them (so a page that cannot render fails here); they land in docs/ only
with AOC_UPDATE_SCREENSHOTS=1, so an ordinary test run leaves the tree untouched:

    AOC_UPDATE_SCREENSHOTS=1 .venv/bin/pytest tests/browser -k screenshots
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from playwright.async_api import expect

from tests.browser.test_factory import FACTORY_API

DOCS = Path(__file__).resolve().parents[2] / "docs"


def target_dir(tmp_path: Path) -> Path:
    return DOCS if os.environ.get("AOC_UPDATE_SCREENSHOTS") == "1" else tmp_path


async def test_screenshots_of_both_pages(tab, http, tmp_path):
    out = target_dir(tmp_path)
    updating = out == DOCS
    page = tab.page
    for system in ("integrity-scan", "soc-cycle", "heal-check"):
        await http.post(f"/api/v1/admin/trigger/{system}")
    stop = await http.post(
        "/api/v1/admin/emergency-stop/advisory-refresh", json={"reason": "feed maintenance window"}
    )
    assert stop.status_code == 200
    try:
        await tab.open("/admin-ops")
        await expect(page.locator('.card .state[data-state="stopped"]')).to_have_count(1)
        await expect(page.locator("#emergency")).to_be_visible()
        if updating:
            await page.wait_for_timeout(11_000)  # a few metric samples, so the charts have lines
        await page.evaluate("document.querySelectorAll('.toast').forEach(t => t.remove())")
        await page.screenshot(path=out / "admin-ops.png", full_page=True)
    finally:
        await http.post("/api/v1/admin/start/advisory-refresh")

    if FACTORY_API.exists():
        body = {
            "title": "Vulnerability Risk Matrix",
            "description": "Table of open CVEs grouped by CVSS score and affected asset",
            "page_type": "data_table",
            "route": f"/vulnerabilities/risk-{uuid.uuid4().hex[:4]}",
            "api_endpoints": [
                {"method": "GET", "path": "/api/v1/vulnerabilities", "description": "List CVEs"}
            ],
            "data_fields": [
                {"name": "cve_id", "label": "CVE ID", "type": "string", "required": True},
                {"name": "cvss_score", "label": "CVSS", "type": "number"},
                {"name": "status", "label": "Status", "type": "enum", "values": ["open", "mitigated"]},
            ],
            "features": ["search", "filter", "export", "pagination"],
            "sidebar_icon": "ShieldAlert",
            "priority": "high",
        }
        created = (await http.post("/api/v1/factory/requirements", json=body)).json()
        await http.post(f"/api/v1/factory/requirements/{created['id']}/generate")
    await tab.open("/admin-ops/factory")
    await expect(page.locator("#template-tabs [role=tab]")).to_have_count(6)
    if FACTORY_API.exists():
        row = page.locator(f'#req-rows tr[data-id="{created["id"]}"]')
        await row.get_by_role("button", name="Preview").click()
        await expect(page.locator("#preview-code code")).to_contain_text("export default")
    await page.evaluate("document.querySelectorAll('.toast').forEach(t => t.remove())")
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=out / "admin-ops-factory.png", full_page=True)
    for name in ("admin-ops.png", "admin-ops-factory.png"):
        assert (out / name).stat().st_size > 10_000
