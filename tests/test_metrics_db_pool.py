"""The spec's db_pool in /api/v1/admin/metrics: filled with the gateway's NATS
connection and the requests in flight on it, with a DB pool's arithmetic."""

from __future__ import annotations

import asyncio

from gateway.views import nats_pool
from services.runtime.bus import barrier
from services.runtime.testing import connect_plain

API = "/api/v1/admin"


async def test_metrics_carry_the_spec_db_pool_object(http):
    pool = (await http.get(f"{API}/metrics")).json()["db_pool"]
    assert set(pool) >= {"size", "checked_in", "checked_out", "overflow"}
    assert pool["size"] == 1 and pool["kind"] == "nats"
    assert pool["checked_out"] == pool["size"] - pool["checked_in"] + pool["overflow"]


async def test_requests_in_flight_are_checked_out_and_overflow_past_the_connections(nats_server):
    responder = await connect_plain(nats_server.url)
    client = await connect_plain(nats_server.url)
    answer = asyncio.Event()

    async def slow(msg):
        await answer.wait()
        await msg.respond(b"ok")

    await responder.subscribe("test.slow", cb=slow)
    await barrier(responder)  # flush() alone can PONG before the SUB is in (services/runtime/bus.py)
    try:
        assert nats_pool(client) == {**nats_pool(client), "size": 1, "checked_in": 1, "checked_out": 0}
        requests = [asyncio.create_task(client.request("test.slow", b"", timeout=10)) for _ in range(3)]

        async def in_flight():
            while nats_pool(client)["checked_out"] < 3:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(in_flight(), 5)
        pool = nats_pool(client)
        assert (pool["size"], pool["checked_in"], pool["checked_out"], pool["overflow"]) == (1, 0, 3, 2)
        answer.set()
        await asyncio.gather(*requests)
        assert nats_pool(client)["checked_out"] == 0
    finally:
        await client.close()
        await responder.close()
    assert nats_pool(client)["size"] == 0  # closed: nothing held
