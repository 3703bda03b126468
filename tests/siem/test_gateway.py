"""The gateway's side: /api/v1/siem (sinks with health, alerts), /metrics, and the kill
switch's kill_switch_engaged event turning into one kill-switch-used alert."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec

from contracts.events import command_of
from contracts.siem import SIEM_STATUS_BUCKET, STATUS_KEY, ensure_status_bucket, status_decoder
from contracts.streams import ensure_all
from services.runtime.testing import EventTap
from tests.conftest import api_client
from tests.siem.conftest import Hec, siem_settings, until
from tests.siem.test_sinks import HEC_TOKEN, publish, running_siem


async def test_sinks_and_their_health_in_the_api_and_metrics(
    http_receivers, settings, nc, live_gateway, api_headers
):
    hec = Hec(HEC_TOKEN)
    receiver = await http_receivers(hec)
    sink = {"name": "splunk", "kind": "hec", "url": receiver.url, "allow_http": True, "token": HEC_TOKEN}
    async with api_client(live_gateway, api_headers) as http:
        never = (await http.get("/api/v1/siem/sinks")).json()
        assert never["service"]["state"] == "not_running" and never["sinks"] == []

        async with running_siem(siem_settings(settings, [sink])) as service:
            await until(lambda: service.runners[0].status.state != "starting", what="the sink bound")
            await publish(nc, 12)
            await until(lambda: len(hec.events) >= 12, what="delivery")
            await until(lambda: service.runners[0].status.delivered == 12, what="all 12 acknowledged")
            await service.write_status()
            await asyncio.sleep(1.1)  # the gateway caches the view for a second
            body = (await http.get("/api/v1/siem/sinks")).json()
            assert body["service"]["state"] == "up" and not body["service"]["sinks_error"]
            [shown] = body["sinks"]
            assert shown["name"] == "splunk" and shown["kind"] == "hec" and shown["health"] == "ok"
            assert shown["delivered"] == 12 and shown["lag"] == 0 and shown["last_delivery"]
            assert shown["durable"] == "siem-splunk" and "token" not in str(shown)
            metrics = (await http.get("/metrics")).text
            assert 'aoc_siem_sink_delivered_events_total{kind="hec",sink="splunk"} 12.0' in metrics
            assert 'aoc_siem_sink_lag_events{kind="hec",sink="splunk"} 0.0' in metrics
            assert "aoc_siem_service_up 1.0" in metrics

        # the service is gone and its last status has aged: the view says so, and the
        # lag, read from the sink's consumer on the server, keeps counting
        kv = await ensure_status_bucket(nc.jetstream(), settings)
        last = status_decoder.decode((await kv.get(STATUS_KEY)).value)
        last.updated = datetime.now(UTC) - timedelta(seconds=60)
        await kv.put(STATUS_KEY, msgspec.json.encode(last))
        await publish(nc, 7, start=12)
        await asyncio.sleep(1.1)
        body = (await http.get("/api/v1/siem/sinks")).json()
        assert body["service"]["state"] == "down" and "down" in body["service"]["detail"]
        [shown] = body["sinks"]
        assert shown["health"] == "down" and shown["lag"] == 7
        metrics = (await http.get("/metrics")).text
        assert "aoc_siem_service_up 0.0" in metrics
        assert 'aoc_siem_sink_up{kind="hec",sink="splunk"} 0.0' in metrics


async def test_kill_switch_is_one_event_and_one_alert(engines, settings, nc, live_gateway, api_headers):
    await ensure_all(nc.jetstream(), settings)
    tap = await EventTap(nc).start()
    try:
        async with (
            running_siem(siem_settings(settings, [])) as service,
            api_client(live_gateway, api_headers) as http,
        ):
            await until(lambda: service.follower.ready.is_set(), what="rules ready")
            headers = {"X-Request-ID": "incident-42-stop-all"}
            body = {"reason": "incident 42"}
            for _ in range(2):  # a client retrying the same request
                response = await http.post("/api/v1/admin/emergency-stop-all", json=body, headers=headers)
                assert response.status_code == 200
            engaged = await tap.wait_for(lambda e: e.type == "kill_switch_engaged")
            payload = msgspec.json.decode(engaged.data)
            assert (
                engaged.actor == "admin"
                and engaged.system == "gateway"
                and payload["reason"] == "incident 42"
            )
            assert payload["succeeded"] == 7 and payload["outcomes"] == {"accepted": 7}

            def fired():
                return [
                    e
                    for e in tap.matching(lambda e: e.type == "alert_fired")
                    if msgspec.json.decode(e.data)["rule"] == "kill-switch-used"
                ]

            await until(fired, what="the kill-switch-used alert")
            await until(lambda: service.engine.open_alerts(), what="open in the service")
            await service.write_status()
            await asyncio.sleep(1.1)
            alerts = (await http.get("/api/v1/siem/alerts")).json()
            assert [a["rule"] for a in alerts["open_alerts"] if a["target"] == "all"] == ["kill-switch-used"]

            assert (await http.post("/api/v1/admin/start-all", json={"reason": "over"})).status_code == 200

            def resolved():
                return [
                    e
                    for e in tap.matching(lambda e: e.type == "alert_resolved")
                    if msgspec.json.decode(e.data)["rule"] == "kill-switch-used"
                ]

            await until(resolved, what="resolved once every system runs")
            # a broadcast stop over NATS is a new engagement: one more alert, not seven
            replies = []
            inbox = nc.new_inbox()

            async def keep(msg) -> None:
                replies.append(msg)

            sub = await nc.subscribe(inbox, cb=keep)
            await nc.publish("aoc.ctl.all.stop", b'{"reason": "drill"}', reply=inbox)
            await until(lambda: len(replies) >= 7, what="seven replies")
            await sub.unsubscribe()
            await until(lambda: len(fired()) == 2, what="the second engagement")
            await until(
                lambda: (
                    len(
                        tap.matching(
                            lambda e: command_of(e) is not None and e.summary.action == "command_stop"
                        )
                    )
                    >= 21
                ),
                what="the stops recorded",
            )
            await asyncio.sleep(0.5)
            assert len(fired()) == 2
            assert (
                len(tap.matching(lambda e: e.type == "kill_switch_engaged")) == 1
            )  # the retry was stored once
            await http.post("/api/v1/admin/start-all", json={"reason": "drill over"})
    finally:
        await tap.stop()


async def test_the_status_bucket_is_the_siem_service_s(settings, nc):
    kv = await ensure_status_bucket(nc.jetstream(), settings)
    assert (await nc.jetstream().stream_info(f"KV_{SIEM_STATUS_BUCKET}")).config.max_msgs_per_subject == 1
    assert kv is not None
