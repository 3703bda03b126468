"""The container probe (`python -m services.siem --health`): it judges this process by its
own presence record, found by AOC_INSTANCE_ID when set, so two SIEM processes on one host
(`aoc up` with AOC_INSTANCES=2) are told apart."""

from __future__ import annotations

import socket
from datetime import timedelta

import msgspec
import pytest

from contracts.events import utcnow
from contracts.settings import Settings
from contracts.siem import STATUS_KEY, SiemInstance, SiemStatus, ensure_status_bucket, presence_key
from services.siem.service import health


async def _write(kv, fresh: str, stale: str) -> None:
    now = utcnow()
    status = SiemStatus(boot_id="b", started=now, updated=now, instance=fresh)
    await kv.put(STATUS_KEY, msgspec.json.encode(status))
    for instance, updated in ((fresh, now), (stale, now - timedelta(minutes=10))):
        record = SiemInstance(
            instance=instance,
            boot_id=instance,
            role="standby",
            pid=1,
            host=socket.gethostname(),
            updated=updated,
        )
        await kv.put(presence_key(instance), msgspec.json.encode(record))


async def test_the_probe_judges_the_instance_it_is_named_for(settings: Settings, nc):
    kv = await ensure_status_bucket(nc.jetstream(), settings)
    # both on this host: by host alone the probe could not tell which record is its own
    await _write(kv, fresh="siem-a", stale="siem-b")
    await health(settings.model_copy(update={"instance_id": "siem-a"}))
    with pytest.raises(RuntimeError, match=r"siem-b .*last said it was alive"):
        await health(settings.model_copy(update={"instance_id": "siem-b"}))
    # not named: the newest record of this host (a container's own) decides
    await health(settings.model_copy(update={"instance_id": None}))
