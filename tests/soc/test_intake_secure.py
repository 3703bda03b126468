"""The SOC intake on the secure embedded server of `aoc up`: soc-cycle's FastStream
subscribers connect as its own NATS user, the `producer` user may send alerts in every
format and nothing else, and a whole round runs without one permissions violation."""

from __future__ import annotations

from pathlib import Path

import msgspec

from contracts import soc
from contracts.settings import Settings
from services.launcher.natsserver import NatsServer
from services.runtime.bus import barrier
from services.runtime.testing import running_engines
from tests.security.conftest import violations
from tests.security.test_nats_permissions import connected
from tests.soc.conftest import FAST_LOOPS, wait_until

SAMPLES = Path(__file__).parent / "samples"


async def test_a_producer_sends_alerts_in_every_format_and_nothing_else(
    secure_nats: NatsServer, secure_settings: Settings
):
    settings = secure_settings.model_copy(update={"schedules": {**FAST_LOOPS}})
    async with (
        running_engines(settings, ["ml-retrain", "soc-cycle"]) as hosts,
        connected(secure_nats, "producer") as producer,
    ):
        await wait_until(lambda: hosts["soc-cycle"].engine.bundle is not None, timeout=30)
        for subject, sample in [
            (f"{soc.ALERT_INTAKE}.suricata-eve", "suricata-eve/oisf-doc-alert-http.json"),
            (f"{soc.ALERT_INTAKE}.wazuh", "wazuh/integratord-sshd-5712.json"),
            (f"{soc.ALERT_INTAKE}.ecs", "ecs/kibana-8.1.0-threat-match-alert.json"),
            (f"{soc.ALERT_INTAKE}.ocsf", "ocsf/okta-detection-finding.json"),
            (soc.ALERT_INTAKE, "ocsf/prowler-detection-finding.json"),
        ]:
            reply = msgspec.json.decode(
                (await producer.nc.request(subject, (SAMPLES / sample).read_bytes(), timeout=5)).data,
                type=soc.IntakeReply,
            )
            assert reply.ok and reply.accepted == 1, (subject, reply)
        engine = hosts["soc-cycle"].engine
        await wait_until(lambda: engine.state.totals.alerts_processed >= 5)
        # what a producer must not do: write the queue directly, label alerts, command engines
        for refused in (
            soc.ALERT_QUEUE,
            soc.FEEDBACK_INTAKE,
            "aoc.ctl.soc-cycle.stop.producer",
            "aoc.evt.x.y",
        ):
            await producer.nc.publish(refused, b"{}")
            assert await producer.refused(refused), refused
        await barrier(producer.nc)
    # the engines (the intake's own connection included) needed nothing they were refused
    assert [line for line in violations(secure_nats) if "producer" not in line] == []
