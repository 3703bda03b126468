"""/admin-ops in a real browser against a real stack: cards, actions, banner, live
updates (stream and polling), the activity feed, the drawer, and hostile data."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from contracts.systems import SYSTEMS
from gateway.routes.ui import CSP
from tests.browser.conftest import bearer_token

# generous for the polling fallback: one 8 s poll interval plus slack
POLL_WAIT_MS = 14_000
XSS = "<img src=x onerror=alert(1)>"


def read_text(path) -> str:
    return Path(path).read_text()


def card(tab, slug: str):
    return tab.page.locator(f'.card[data-system="{slug}"]')


async def all_running(tab) -> None:
    await expect(tab.page.locator('.card .state[data-state="running"]')).to_have_count(len(SYSTEMS))


async def test_seven_cards_render_with_state_label_and_a_strict_csp(tab):
    response = await tab.open("/admin-ops")
    assert response.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    page = tab.page
    await expect(page.locator(".card")).to_have_count(7)
    await all_running(tab)
    for slug, info in SYSTEMS.items():
        one = card(tab, slug)
        await expect(one.locator(".card-title")).to_have_text(info.label)
        await expect(one.locator(".state")).to_have_text("Running")  # a label, not only a colour
        await expect(one.locator(".facts")).to_contain_text(info.schedule)
        await expect(one.locator(".facts")).to_contain_text("Heartbeat")
    await expect(card(tab, "frontend-factory").locator(".extras")).to_contain_text("Total requirements")
    await expect(page.locator("#emergency")).to_be_hidden()
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("#live-label")).to_have_text("Live")
    await expect(page.locator("#metric-tiles")).to_contain_text("7 / 7")
    await expect(page.locator("#stream-tiles")).to_contain_text("Messages")
    await expect(page.locator("#charts figure")).to_have_count(4)
    await expect(page.locator("#charts svg").first).to_have_attribute("aria-label", re.compile("CPU"))
    await expect(page.locator("#activity-rows tr").first).to_be_visible()


async def test_stop_confirms_toasts_and_raises_the_banner_then_start_clears_it(tab, http):
    page = tab.page
    await page.clock.install()  # time runs normally; the test can jump it to see toasts go
    await tab.open("/admin-ops")
    await all_running(tab)
    soc = card(tab, "soc-cycle")

    # cancelling the confirmation changes nothing
    await soc.locator('[data-action="stop"]').click()
    await expect(page.locator("#confirm")).to_be_visible()
    await page.locator("#confirm-cancel").click()
    await expect(page.locator("#confirm")).to_be_hidden()
    await expect(soc.locator(".state")).to_have_text("Running")

    # keyboard: focus Stop, Enter opens the dialog with the reason field focused
    await soc.locator('[data-action="stop"]').focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#confirm-reason")).to_be_focused()
    await page.keyboard.type("browser drill")
    await page.locator("#confirm-ok").click()

    toast = page.locator(".toast-ok", has_text="Autonomous SOC Engine stopped")
    await expect(toast).to_be_visible()
    await expect(toast.locator(".toast-label")).to_have_text("Autonomous SOC Engine")
    await expect(soc.locator(".state")).to_have_text("Stopped")
    await expect(soc).to_have_attribute("data-state", "stopped")
    banner = page.locator("#emergency")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("1 of 7 systems not running: Autonomous SOC Engine (stopped)")
    await expect(soc.locator('[data-action="trigger"]')).to_be_disabled()
    await expect(page.locator("#activity-rows")).to_contain_text("browser drill")

    board = (await http.get("/api/v1/admin/dashboard")).json()
    assert board["systems"]["soc-cycle"]["state"] == "stopped" and board["emergency_mode"] is True
    await page.clock.fast_forward(4_100)  # toasts go after 4 s
    await expect(toast).to_have_count(0)

    await soc.locator('[data-action="start"]').click()
    await expect(page.locator(".toast-ok").last).to_contain_text("Autonomous SOC Engine started")
    await expect(soc.locator(".state")).to_have_text("Running")
    await expect(banner).to_be_hidden()


async def test_a_stop_sent_on_raw_nats_shows_up_live_without_a_reload(tab, nc):
    await tab.open("/admin-ops")
    page = tab.page
    await all_running(tab)
    await page.evaluate("window.__notReloaded = true")

    reply = json.loads((await nc.request("aoc.ctl.deploy.stop", b"", timeout=2)).data)
    assert reply["ok"] is True

    deploy = card(tab, "deploy")
    await expect(deploy.locator(".state")).to_have_text("Stopped")
    await expect(page.locator("#emergency")).to_contain_text("Auto-Deploy Pipeline (stopped)")
    audit = page.locator("#activity-rows tr", has_text="command_stop").filter(has_text="nats:anonymous")
    await expect(audit.filter(has_text="deploy").first).to_be_visible()

    await nc.request("aoc.ctl.deploy.start", b"", timeout=2)
    await expect(deploy.locator(".state")).to_have_text("Running")
    await expect(page.locator("#emergency")).to_be_hidden()
    assert await page.evaluate("window.__notReloaded") is True
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")


async def test_a_second_live_instance_shows_on_the_card(tab, nc):
    """A standby instance of deploy beats: the card says "2 instances, 1 active"; when it
    stops beating (past the heartbeat timeout) the line goes away."""
    import asyncio
    import contextlib

    from contracts.events import encode
    from tests.gateway.events import heartbeat, heartbeat_subject

    await tab.open("/admin-ops")
    await all_running(tab)
    line = card(tab, "deploy").locator(".instances")
    await expect(line).to_be_hidden()

    async def standby() -> None:
        seq = 0
        while True:
            seq += 1
            beat = heartbeat("deploy", instance="deploy-standby", role="standby", state="stopped", seq=seq)
            await nc.publish(heartbeat_subject(beat), encode(beat))
            await asyncio.sleep(0.2)

    beating = asyncio.create_task(standby())
    try:
        await expect(line).to_have_text("2 instances, 1 active")
        await expect(card(tab, "deploy").locator(".state")).to_have_text("Running")
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
    await expect(line).to_be_hidden()


async def test_without_the_event_stream_the_page_polls_and_says_so(tab, nc):
    page = tab.page
    await page.route("**/api/v1/admin/stream", lambda route: route.abort())
    await tab.open("/admin-ops")
    await all_running(tab)
    await expect(page.locator("#live")).to_have_attribute("data-state", "polling")
    await expect(page.locator("#live-label")).to_contain_text("Polling")

    await nc.request("aoc.ctl.ml-retrain.stop", b"", timeout=2)
    await expect(card(tab, "ml-retrain").locator(".state")).to_have_text("Stopped", timeout=POLL_WAIT_MS)
    await expect(page.locator("#emergency")).to_be_visible()
    await nc.request("aoc.ctl.ml-retrain.start", b"", timeout=2)


async def test_hostile_text_in_an_activity_detail_is_shown_as_text(tab, nc):
    await tab.open("/admin-ops")
    page = tab.page
    await all_running(tab)
    # an idempotent start with a reason: audited, and the reason lands in the detail
    body = json.dumps({"actor": "x", "reason": XSS}).encode()
    reply = json.loads((await nc.request("aoc.ctl.heal-check.start", body, timeout=2)).data)
    assert reply["ok"] is True

    row = page.locator("#activity-rows tr", has_text=XSS)
    await expect(row.first).to_be_visible()
    await expect(row.first.locator("td.detail")).to_contain_text(XSS)
    await expect(row.first).to_contain_text("x")
    await expect(page.locator("main img")).to_have_count(0)

    # searching for it goes through the query string and still renders text
    await page.locator("#f-q").fill("onerror")
    await expect(page.locator("#activity-rows tr")).to_have_count(1)
    await expect(page.locator("#activity-rows td.detail")).to_contain_text(XSS)
    await page.wait_for_timeout(300)  # give a would-be onerror handler time to fire
    assert tab.dialogs == []
    assert await page.evaluate("document.querySelectorAll('img').length") == 0


async def test_activity_filters_pages_by_cursor_and_exports(tab, http):
    for _ in range(30):  # enough events for more than one page of 50
        assert (await http.post("/api/v1/admin/trigger/integrity-scan")).status_code == 200
    await tab.open("/admin-ops")
    page = tab.page
    rows = page.locator("#activity-rows tr")
    await expect(rows.nth(49)).to_be_attached()  # the first page: 50 rows
    oldest = "rows => Math.min(...rows.map(r => Number(r.dataset.seq)))"
    first_page_oldest = await rows.evaluate_all(oldest)
    # scrolling to the end fetches older rows with the cursor
    await page.locator("#activity-scroll").evaluate("el => el.scrollTo(0, el.scrollHeight)")
    all_rows = "[...document.querySelectorAll('#activity-rows tr')]"
    await page.wait_for_function(
        f"seq => Math.min(...{all_rows}.map(r => +r.dataset.seq)) < seq", arg=first_page_oldest
    )
    seqs = [int(s) for s in await rows.evaluate_all("rows => rows.map(r => r.dataset.seq)")]
    assert len(seqs) > 50
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)  # newest first, no repeats

    await page.locator("#f-system").select_option("deploy")
    await expect(rows.first).to_contain_text("deploy")
    await expect(page.locator("#activity-rows td:nth-child(2)", has_not_text="deploy")).to_have_count(0)

    # the actor the gateway recorded for this suite's HTTP calls (whoever the credentials name)
    newest = (await http.get("/api/v1/admin/activity-log", params={"limit": 1, "result": "accepted"})).json()
    actor = newest["events"][0]["actor"]
    await page.locator("#f-system").select_option("")
    await page.locator("#f-result").select_option("accepted")
    await page.locator("#f-actor").fill(actor)
    await expect(rows.first).to_contain_text("command_trigger")
    await expect(page.locator("#activity-rows .result", has_not_text="accepted")).to_have_count(0)
    await expect(page.locator("#activity-rows td:nth-child(5)", has_not_text=actor)).to_have_count(0)

    async with page.expect_download() as info:
        await page.locator("#export-csv").click()
    download = await info.value
    assert download.suggested_filename.endswith(".csv")
    exported = list(csv.DictReader(io.StringIO(read_text(await download.path()))))
    assert exported and {row["result"] for row in exported} == {"accepted"}
    assert {row["actor"] for row in exported} == {actor}

    async with page.expect_download() as info:
        await page.locator("#export-json").click()
    body = json.loads(read_text(await (await info.value).path()))
    assert body["count"] == len(exported)


async def test_detail_drawer_kill_switch_and_restart_all(tab):
    await tab.open("/admin-ops")
    page = tab.page
    await all_running(tab)

    await card(tab, "deploy").locator('[data-action="details"]').click()
    drawer = page.locator("#drawer")
    await expect(drawer).to_be_visible()
    await expect(page.locator("#drawer-title")).to_have_text("Auto-Deploy Pipeline")
    await expect(drawer.locator(".drawer-section h3", has_text="Deploy history")).to_be_visible()
    await expect(drawer).to_contain_text("Loops")
    await page.keyboard.press("Escape")
    await expect(drawer).to_be_hidden()

    await page.locator("#kill-switch").click()
    await expect(page.locator("#confirm-title")).to_have_text("Stop every system?")
    await page.locator("#confirm-ok").click()
    await expect(page.locator(".toast").last).to_contain_text("7 succeeded, 0 failed")
    await expect(page.locator("#emergency")).to_contain_text("7 of 7 systems not running")
    await expect(page.locator('.card .state[data-state="stopped"]')).to_have_count(7)

    await page.locator("#restart-all").click()
    await page.locator("#confirm-ok").click()
    await all_running(tab)
    await expect(page.locator("#emergency")).to_be_hidden()


async def test_a_new_visitor_signs_in_with_a_token(signed_out_tab, api_headers):
    token = bearer_token(api_headers)
    if token is None:
        pytest.skip("the gateway runs without auth: nobody is asked for a token")
    tab = signed_out_tab
    await tab.open("/admin-ops")
    page = tab.page
    dialog = page.locator("#signin")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#signin-token")).to_be_focused()

    await page.locator("#signin-token").fill("not-a-token")
    await page.locator("#signin-ok").click()
    await expect(page.locator("#signin-error")).to_have_text("That token was refused.")

    await page.locator("#signin-token").fill(token)
    await page.locator("#signin-ok").click()
    await expect(page.locator('.card .state[data-state="running"]')).to_have_count(len(SYSTEMS))
    await expect(page.locator("#identity-name")).to_contain_text("Signed in as")
    await expect(dialog).to_be_hidden()

    await page.locator("#signout").click()
    await expect(page.locator("#signin")).to_be_visible()


async def test_usable_at_phone_width(phone_tab):
    await phone_tab.open("/admin-ops")
    page = phone_tab.page
    await expect(page.locator('.card .state[data-state="running"]')).to_have_count(7)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at phone width ({width}px)"
    stop = card(phone_tab, "soc-cycle").locator('[data-action="stop"]')
    await stop.scroll_into_view_if_needed()
    await expect(stop).to_be_visible()
    box = await stop.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390

    await phone_tab.open("/admin-ops/factory")
    await expect(page.locator("#r-submit")).to_be_visible()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the factory page scrolls sideways at phone width ({width}px)"
