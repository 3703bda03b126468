"""Operator tools in the dashboard, in real Chromium: an operator tags and comments an
activity entry (and filters by the tag); a viewer is refused; a trigger that outlasts
the reply is followed and toasted when its job ends.

Its own small stack (nats-server, ml-retrain in-process, the gateway): the test holds
the engine's training lock to keep a real retrain running as long as it needs."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from contracts.identity import Role
from contracts.settings import Settings
from services.launcher.natsserver import NatsServer
from services.runtime.testing import running_engines, settled
from services.shared.tokens import TokenStore
from tests.browser.conftest import DESKTOP, _tab
from tests.conftest import ADMIN_TOKEN, FAST, api_client, serve_gateway

ML = "ml-retrain"


@pytest.fixture
async def ops_stack(browser, tmp_path):
    server = NatsServer(tmp_path / "nats").start()
    liveness = {**FAST, "heartbeat_interval": 0.5, "heartbeat_timeout": 3.0}
    settings = Settings(nats_url=server.url, data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, **liveness)
    store = TokenStore(settings.effective_api_tokens_file)
    tokens = {
        "operator": store.create("olga", Role.OPERATOR, created_by="test"),
        "viewer": store.create("victor", Role.VIEWER, created_by="test"),
    }
    try:
        async with running_engines(settings, [ML]) as hosts:
            await settled(hosts, lambda: hosts[ML].engine.status_extras()["active_version"] is not None)
            async with serve_gateway(settings) as url:
                yield url, hosts[ML], tokens
    finally:
        server.stop()


async def open_dashboard(browser, url: str, token: str):
    context, tab = await _tab(browser, url, DESKTOP, token)
    await tab.open("/admin-ops")
    await expect(tab.page.locator("#activity-rows tr").first).to_be_visible()
    return context, tab


async def test_operator_tags_and_comments_an_entry_and_filters_by_tag(browser, ops_stack):
    url, _, tokens = ops_stack
    context, tab = await open_dashboard(browser, url, tokens["operator"])
    page = tab.page
    try:
        row = page.locator("#activity-rows tr").first
        entry_id = await row.get_attribute("data-id")
        await row.locator("button.annotate").click()
        dialog = page.locator("#annotate")
        await expect(dialog).to_be_visible()
        await page.fill("#annotate-tags", "Incident-7, triage")
        await page.fill("#annotate-comment", "looked at it <b>twice</b>")
        await page.click("#annotate-save")
        await expect(dialog).to_be_hidden()
        tagged = page.locator(f'#activity-rows tr[data-id="{entry_id}"]')
        await expect(tagged.locator(".tag")).to_have_text(["incident-7", "triage"])
        await expect(tagged.locator(".note-count")).to_have_text("1 comment")
        await expect(tagged.locator(".note-count")).to_have_attribute(
            "title", "olga: looked at it <b>twice</b>"
        )
        await expect(page.locator(".toast-ok").last).to_contain_text("annotated")

        await page.fill("#f-tag", "incident-7")
        await expect(page.locator("#activity-rows tr")).to_have_count(1)
        await expect(page.locator("#activity-rows tr").first).to_have_attribute("data-id", entry_id)

        # the dialog shows what was written before
        await page.locator("#activity-rows tr button.annotate").first.click()
        await expect(page.locator("#annotate-history li")).to_contain_text(
            ["olga [incident-7, triage]: looked at"]
        )
        await page.click("#annotate-cancel")
    finally:
        await context.close()
    assert not tab.errors and not tab.dialogs, (tab.errors, tab.dialogs)

    async with api_client(url, {"Authorization": f"Bearer {tokens['viewer']}"}) as http:
        events = (await http.get("/api/v1/admin/activity-log", params={"tag": "triage"})).json()["events"]
        assert [e["id"] for e in events] == [entry_id]
        assert events[0]["annotations"][0]["actor"] == "olga"


async def test_a_viewer_is_refused(browser, ops_stack):
    url, _, tokens = ops_stack
    context, tab = await open_dashboard(browser, url, tokens["viewer"])
    page = tab.page
    try:
        await page.locator("#activity-rows tr button.annotate").first.click()
        await page.fill("#annotate-tags", "mine")
        await page.click("#annotate-save")
        await expect(page.locator(".toast-error")).to_contain_text("needs operator")
        await expect(page.locator("#activity-rows .tag")).to_have_count(0)
    finally:
        await context.close()


async def test_a_long_trigger_toasts_when_its_job_ends(browser, ops_stack):
    url, host, tokens = ops_stack
    lock = host.engine._train_lock
    context, tab = await open_dashboard(browser, url, tokens["operator"])
    page = tab.page
    await lock.acquire()
    try:
        card = page.locator(f'.card[data-system="{ML}"]')
        await card.locator("button", has_text="Trigger").click()
        await expect(page.locator(".toast-ok").last).to_contain_text("you will be told when it ends")
        # the run survives a reload of the page: the tab keeps following it
        await page.reload()
        await expect(page.locator("#activity-rows tr").first).to_be_visible()
        lock.release()
        done = page.locator(".toast-ok", has_text="job succeeded")
        await expect(done).to_be_visible(timeout=60_000)
        await expect(done).to_contain_text("finished in")
    finally:
        if lock.locked():
            lock.release()
        await context.close()
    assert not tab.errors and not tab.dialogs, (tab.errors, tab.dialogs)
