"""The gateway and the lease: it keeps the highest epoch per system, ignores what a
deposed instance still says, and lists every live instance of an engine (which one is
active) on the dashboard card and in the system detail."""

from __future__ import annotations

import asyncio

from contracts.events import encode
from contracts.streams import ensure_all
from tests.conftest import api_client, serve_gateway
from tests.gateway.events import heartbeat, heartbeat_subject, lifecycle
from tests.runtime.test_lease import crash, two_instances

API = "/api/v1/admin"


async def until(fetch, condition, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if condition(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, value
        await asyncio.sleep(0.05)


async def test_events_and_beats_of_a_deposed_epoch_change_nothing(settings, nc, api_headers):
    js = nc.jetstream()
    await ensure_all(js, settings)
    quiet = settings.model_copy(update={"heartbeat_timeout": 600.0, "snapshots": False})

    async def send(env) -> None:
        await js.publish(f"aoc.evt.{env.system}.{env.type}", encode(env), headers={"Nats-Msg-Id": env.id})

    async def beat(b) -> None:
        await js.publish(heartbeat_subject(b), encode(b))

    await send(lifecycle("deploy", "running", epoch=3, instance="deploy-1"))
    await beat(heartbeat("deploy", instance="deploy-1", epoch=3, seq=1))
    async with serve_gateway(quiet) as url, api_client(url, api_headers) as http:

        async def card() -> dict:
            return (await http.get(f"{API}/dashboard")).json()["systems"]["deploy"]

        assert (await card())["state"] == "running"
        # deploy-2 takes over at epoch 5 and stops the engine
        await send(lifecycle("deploy", "stopped", epoch=5, instance="deploy-2"))
        await beat(heartbeat("deploy", instance="deploy-2", epoch=5, seq=1, state="stopped"))
        await until(card, lambda c: c["state"] == "stopped")
        # the deposed deploy-1 has not noticed: its late event and beat say running
        await send(lifecycle("deploy", "running", epoch=3, instance="deploy-1"))
        await beat(heartbeat("deploy", instance="deploy-1", epoch=3, seq=2, state="running"))
        health = await until(
            lambda: http.get("/health/details"),
            lambda r: r.json()["readmodels"]["systems"]["ignored_deposed_heartbeats"] == 1,
        )
        assert health.json()["readmodels"]["systems"]["ignored_deposed_events"] == 1
        shown = await card()
        assert shown["state"] == "stopped" and shown["running"] is False
        assert (shown["instances"], shown["instances_active"]) == (1, 1)
        # a standby joins: two instances, one active
        await beat(heartbeat("deploy", instance="deploy-3", role="standby", state="stopped"))
        shown = await until(card, lambda c: c["instances"] == 2)
        assert shown["instances_active"] == 1 and shown["state"] == "stopped"
        # epoch 0: written without a lease (a standby recording a command while it was vacant)
        await send(lifecycle("deploy", "running", epoch=0, instance="deploy-3"))
        await until(card, lambda c: c["desired"] == "running")


async def test_two_real_instances_are_listed_and_a_takeover_shows(settings, nc, api_headers):
    async with (
        two_instances(settings) as (first, second),
        serve_gateway(settings) as url,
        api_client(url, api_headers) as http,
    ):

        async def detail() -> dict:
            return (await http.get(f"{API}/system/deploy/detail")).json()

        shown = await until(detail, lambda d: len(d["instances"]) == 2)
        assert [(i["id"], i["role"]) for i in shown["instances"]] == [
            ("deploy-1", "active"),
            ("deploy-2", "standby"),
        ]
        for instance in shown["instances"]:
            assert set(instance) >= {"id", "pid", "host", "role", "started", "last_heartbeat"}
            assert instance["pid"] > 0 and instance["host"] and instance["started"]
        assert shown["state"] == "running" and shown["instance"] == "deploy-1"
        board = (await http.get(f"{API}/dashboard")).json()["systems"]["deploy"]
        assert (board["instances"], board["instances_active"]) == (2, 1)

        await crash(first)  # kill -9, in process: no more beats, no lease renewal
        shown = await until(
            detail,
            lambda d: [(i["id"], i["role"]) for i in d["instances"]] == [("deploy-2", "active")],
            timeout=30.0,
        )
        assert second.role == "active" and shown["state"] == "running"
        board = (await http.get(f"{API}/dashboard")).json()["systems"]["deploy"]
        assert board["state"] == "running" and (board["instances"], board["instances_active"]) == (1, 1)
