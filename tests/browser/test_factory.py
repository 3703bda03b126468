"""/admin-ops/factory in a real browser: the whole requirement flow against the real
factory API and engine, validation errors, templates, components."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.async_api import expect

FACTORY_API = Path(__file__).resolve().parents[2] / "gateway" / "routes" / "factory.py"
needs_factory_api = pytest.mark.skipif(
    not FACTORY_API.exists(), reason="waits for gateway/routes/factory.py (the /api/v1/factory API)"
)


def requirement_row(tab, title: str):
    return tab.page.locator("#req-rows tr", has_text=title)


@needs_factory_api
async def test_factory_flow_submit_generate_preview_deploy(tab, http):
    await tab.open("/admin-ops/factory")
    page = tab.page
    await expect(page.locator("#engine-state")).to_have_text("Running")
    suffix = uuid.uuid4().hex[:6]
    title = f"Vulnerability Risk Matrix {suffix}"
    route = f"/vulnerabilities/risk-{suffix}"

    await page.locator("#r-title").fill(title)
    await page.locator("#r-description").fill("Open CVEs by CVSS score")
    await page.locator("#r-page-type").select_option("data_table")
    await page.locator("#r-route").fill(route)
    first = page.locator('#r-fields [data-kind="field"]').first
    await first.get_by_label("Field name").fill("cve_id")
    await first.get_by_label("Field label").fill("CVE ID")
    await first.get_by_label("required").check()
    await page.locator("#add-field").click()
    second = page.locator('#r-fields [data-kind="field"]').nth(1)
    await second.get_by_label("Field name").fill("status")
    await second.get_by_label("Field type").select_option("enum")
    await second.get_by_label("Enum values (comma separated)").fill("open, mitigated, accepted")
    await (
        page.locator('#r-endpoints [data-kind="endpoint"]')
        .first.get_by_label("Endpoint path")
        .fill("/api/v1/vulnerabilities")
    )
    await page.locator('#r-features input[value="search"]').check()
    await page.locator("#r-priority").select_option("high")

    await page.locator("#r-submit").click()
    await expect(page.locator(".toast-ok").last).to_contain_text("Queued as")
    row = requirement_row(tab, title)
    await expect(row.locator(".status")).to_have_text("Pending")
    await expect(row).to_contain_text(route)

    await row.get_by_role("button", name="Generate").click()
    await expect(row.locator(".status")).to_have_text("Generated")
    preview = page.locator("#preview")
    await expect(preview).to_be_visible()
    await expect(page.locator("#preview-title")).to_contain_text(title)
    await expect(page.locator("#preview-meta")).to_contain_text("lines of TSX")
    requirement_id = await row.get_attribute("data-id")
    api_preview = (await http.get(f"/api/v1/factory/requirements/{requirement_id}/preview")).json()
    await expect(page.locator("#preview-meta")).to_contain_text(f"{api_preview['code_lines']} lines of TSX")
    code = page.locator("#preview-code code")
    assert await code.text_content() == api_preview["tsx_code"]  # highlighting keeps the text exact
    assert await code.locator(".tok-kw").count() > 0
    assert await code.locator(".tok-str").count() > 0
    await expect(page.locator("#preview-wiring")).to_contain_text("/api/v1/vulnerabilities")
    await expect(page.locator("#preview-sidebar")).to_contain_text(route)

    await row.get_by_role("button", name="Deploy").click()
    await expect(page.locator("#confirm-title")).to_contain_text(f"Deploy {title}")
    await page.locator("#confirm-ok").click()
    await expect(page.locator(".toast-ok").last).to_contain_text("Deployed to")
    await expect(row.locator(".status")).to_have_text("Deployed")
    detail = (await http.get(f"/api/v1/factory/requirements/{requirement_id}")).json()
    assert detail["status"] == "deployed" and detail["priority"] == "high"
    assert [f["name"] for f in detail["data_fields"]] == ["cve_id", "status"]
    assert detail["data_fields"][1]["values"] == ["open", "mitigated", "accepted"]
    await expect(page.locator("#factory-stats")).to_contain_text("Deployed")


@needs_factory_api
async def test_factory_validation_templates_components_and_delete(tab):
    await tab.open("/admin-ops/factory")
    page = tab.page
    await expect(page.locator("#template-tabs [role=tab]")).to_have_count(6)
    await expect(page.locator("#components .component").first).to_be_visible()

    # the gateway's 422 is shown next to the form and marks the field
    await page.locator("#r-title").fill("Bad route")
    await page.locator("#r-route").fill("/Not_A_Slug")
    await page.locator("#r-submit").click()
    await expect(page.locator("#form-errors")).to_contain_text("route")
    await expect(page.locator("#r-route")).to_have_attribute("aria-invalid", "true")

    # templates: schema and example, and the example fills the form
    await page.locator("#template-tabs [role=tab]", has_text="Dashboard").click()
    detail = page.locator("#template-detail")
    await expect(detail).to_contain_text("Metric cards")
    await expect(detail.locator("table")).to_contain_text("page_type")
    await detail.get_by_role("button", name="Use this example in the form").click()
    await expect(page.locator("#r-page-type")).to_have_value("dashboard")
    title = f"Example board {uuid.uuid4().hex[:6]}"
    await page.locator("#r-title").fill(title)
    await page.locator("#r-route").fill(f"/example/board-{uuid.uuid4().hex[:6]}")

    # one-shot preview saves nothing
    await page.locator("#r-preview").click()
    await expect(page.locator("#preview-meta")).to_contain_text("not saved")
    await expect(page.locator("#preview-code code")).to_contain_text("export default")

    await page.locator("#r-submit").click()
    row = requirement_row(tab, title)
    await expect(row.locator(".status")).to_have_text("Pending")
    await row.get_by_role("button", name="Delete").click()
    await page.locator("#confirm-ok").click()
    await expect(row.locator(".status")).to_have_text("Cancelled")
    await expect(row.get_by_role("button", name="Generate")).to_have_count(0)
