"""The dashboard's "SIEM export & alerts" panel in Debian's Chromium: sinks with their
health (a healthy one and a refused one), an open control-plane alert, and the service
shown as down once its status ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from contracts.siem import STATUS_KEY, ensure_status_bucket, status_decoder
from services.runtime.bus import EventPublisher
from tests.browser.conftest import DESKTOP, _tab, bearer_token, browser  # noqa: F401 - the fixture
from tests.siem.conftest import Hec, siem_settings, until
from tests.siem.test_alerts import event
from tests.siem.test_sinks import HEC_TOKEN, publish, running_siem


async def test_the_panel_shows_sinks_alerts_and_a_down_service(
    browser,  # noqa: F811
    http_receivers,
    settings,
    nc,
    live_gateway,
    api_headers,
    tmp_path,
):
    from playwright.async_api import expect

    hec = Hec(HEC_TOKEN)
    receiver = await http_receivers(hec)
    sinks = [
        {"name": "splunk", "kind": "hec", "url": receiver.url, "allow_http": True, "token": HEC_TOKEN},
        {"name": "offsite", "kind": "syslog", "url": "tls://10.9.8.7:6514"},  # private: refused
    ]
    settings = siem_settings(settings, sinks, siem_allowed_hosts=["127.0.0.1", "10.9.8.7"])
    context, tab = await _tab(browser, live_gateway, DESKTOP, bearer_token(api_headers))
    try:
        async with running_siem(settings) as service:
            await until(lambda: service.follower.ready.is_set(), what="rules ready")
            await publish(nc, 3)
            await until(lambda: len(hec.events) >= 3, what="delivery")
            await EventPublisher(nc.jetstream()).publish(
                event(
                    "kill_switch_engaged",
                    "gateway",
                    {"reason": "drill", "succeeded": 7, "failed": 0},
                    at=datetime.now(UTC),
                )
            )
            await until(lambda: service.engine.open_alerts(), what="the alert open")
            # the sink carries the alert like any event: 3 + kill_switch_engaged + alert_fired
            await until(lambda: len(hec.events) >= 5, what="the alert at the HEC")
            assert hec.events[-1]["event"]["type"] == "alert_fired"
            await until(lambda: service.runners[0].status.delivered == 5, what="all 5 acknowledged")
            await service.write_status()

            await tab.open("/admin-ops")
            page = tab.page
            panel = page.locator("#siem-panel")
            await expect(panel.locator('.siem-badge[data-value="up"]')).to_be_visible()
            # the lease holder is named: with two instances, the one that delivers
            await expect(panel.locator('[data-field="instances"]')).to_contain_text(
                f"active: {service.instance}"
            )
            splunk = panel.locator('tr[data-sink="splunk"]')
            await expect(splunk).to_have_attribute("data-health", "ok")
            await expect(splunk.locator('[data-field="delivered"]')).to_have_text("5")
            offsite = panel.locator('tr[data-sink="offsite"]')
            await expect(offsite).to_have_attribute("data-health", "refused")
            await expect(offsite.locator(".siem-last-error")).to_contain_text("private")
            alert = panel.locator('.siem-alert[data-rule="kill-switch-used"]')
            await expect(alert).to_contain_text("kill switch engaged")
            await expect(alert.locator(".siem-badge")).to_have_text("critical")
            await panel.screenshot(path=str(tmp_path / "siem-panel.png"))  # to look at, by hand

        # the service is gone and its last status is old: the page says so
        kv = await ensure_status_bucket(nc.jetstream(), settings)
        last = status_decoder.decode((await kv.get(STATUS_KEY)).value)
        last.updated = datetime.now(UTC) - timedelta(minutes=5)
        await kv.put(STATUS_KEY, msgspec.json.encode(last))
        await page.evaluate("window.aocSiem.poll()")
        await expect(panel.locator('#siem-service .siem-badge[data-value="down"]')).to_be_visible(
            timeout=10_000
        )
        await expect(splunk).to_have_attribute("data-health", "down")
    finally:
        await context.close()
    assert not tab.errors, tab.errors
