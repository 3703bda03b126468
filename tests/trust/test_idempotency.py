"""Issue 11 §1: an Idempotency-Key (a `command_id` on the bus) is bound to the request it
first came with — (caller, verb, target, body) — and the binding outlives the engine
process. Real parts: nats-server, heal-check as its own process (killed with -9 and
started again), the gateway under uvicorn."""

from __future__ import annotations

import signal

import pytest

from contracts.commands import reply_decoder
from services.runtime import idempotency
from services.runtime.idempotency import Binding, answer, bind, caller_key
from tests.conftest import api_client, serve_gateway
from tests.trust.conftest import answering, spawn_engine, stop_process

API = "/api/v1/admin"


@pytest.fixture
def heal_check_env(settings_env):
    # heal-check alone: it watches nobody, so it sends no remediation of its own
    return {**settings_env, "AOC_HEALING_WATCHED": "[]"}


async def test_a_key_cannot_turn_one_command_into_another(
    settings, heal_check_env, callers, nc, tap, tmp_path
):
    engine = spawn_engine("heal-check", heal_check_env, tmp_path / "heal-check.log")
    try:
        await answering(nc, "heal-check")
        key = {"Idempotency-Key": "K-incident-7"}
        operator, admin = callers["operator"].headers, callers["admin"].headers
        async with serve_gateway(settings) as url, api_client(url, {}) as http:
            start = await http.post(f"{API}/start/heal-check", headers={**operator, **key})
            assert start.status_code == 200 and start.json()["verb"] == "start"

            # the reproduction: the admin's kill switch with the same key is NOT a
            # replay of the operator's start — keys are scoped per caller, so it runs
            stop = await http.post(f"{API}/emergency-stop/heal-check", headers={**admin, **key})
            assert stop.status_code == 200, stop.text
            body = stop.json()
            assert body["verb"] == "stop" and body["state"] == "stopped" and not body["duplicate"]

            # the same caller reusing its key for another request: 422, naming the first
            reused = await http.post(f"{API}/restart/heal-check", headers={**operator, **key})
            assert reused.status_code == 422, reused.text
            refusal = reused.json()
            assert refusal["error"] == "idempotency_key_reused"
            first = refusal["result"]["first_request"]
            assert (first["verb"], first["target"], first["actor"]) == ("start", "heal-check", "oscar")
            assert first["time"] and "restart" not in refusal["message"].split("first used")[0]

            # ... also for another target: an engine knows only its own keys, the gateway
            # binds the key to its target too (deploy is not even running: nothing is sent)
            elsewhere = await http.post(f"{API}/start/deploy", headers={**operator, **key})
            assert elsewhere.status_code == 422 and elsewhere.json()["error"] == "idempotency_key_reused"
            assert elsewhere.json()["result"]["first_request"]["target"] == "heal-check"

            # same key, other body (a reason): also another request
            other_body = await http.post(
                f"{API}/start/heal-check", headers={**operator, **key}, json={"reason": "again"}
            )
            assert other_body.status_code == 422 and "body" in other_body.json()["message"]

            # the same request again: the original reply, marked duplicate, nothing done
            again = await http.post(f"{API}/start/heal-check", headers={**operator, **key})
            assert again.status_code == 200 and again.json()["duplicate"] is True
            assert again.json()["verb"] == "start"
            status_msg = await nc.request("aoc.ctl.heal-check.status", b"", timeout=2)
            status = reply_decoder.decode(status_msg.data)
            assert status.state == "stopped"  # the replayed start did not start it

            # kill -9 and a fresh process: the bindings are in KV, not in the dead process
            engine.send_signal(signal.SIGKILL)
            engine.wait(10)
            engine = spawn_engine("heal-check", heal_check_env, tmp_path / "heal-check.log")
            await answering_any(nc, "heal-check")
            after = await http.post(f"{API}/restart/heal-check", headers={**operator, **key})
            assert after.status_code == 422 and after.json()["error"] == "idempotency_key_reused"
            same = await http.post(f"{API}/emergency-stop/heal-check", headers={**admin, **key})
            assert same.status_code == 200 and same.json()["duplicate"] is True

        # every refusal is on record, as rejected, with the operator as the actor
        reuses = tap.matching(
            lambda e: e.type == "command_handled" and "idempotency key" in e.payload().message
        )
        assert len(reuses) >= 3 and {e.actor for e in reuses} == {"oscar"}
        assert {e.summary.result for e in reuses} == {"rejected"}
    finally:
        stop_process(engine)


async def answering_any(nc, slug: str) -> None:
    """Wait until the engine answers status in any state (it comes back stopped here)."""
    import asyncio

    for _ in range(300):
        try:
            await nc.request(f"aoc.ctl.{slug}.status", b"", timeout=0.5)
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{slug} never answered")


async def test_the_same_rule_holds_for_command_id_on_the_bus(settings, nc):
    """Raw NATS: the command_id of a body is bound the same way (here to nats:anonymous)."""
    from services.runtime.testing import running_engines

    async with running_engines(settings, ["deploy"]) as hosts:
        stop = b'{"command_id": "bus-key-1", "reason": "patch"}'
        first = reply_decoder.decode((await nc.request("aoc.ctl.deploy.stop", stop, timeout=3)).data)
        again = reply_decoder.decode((await nc.request("aoc.ctl.deploy.stop", stop, timeout=3)).data)
        start = reply_decoder.decode(
            (await nc.request("aoc.ctl.deploy.start", b'{"command_id": "bus-key-1"}', timeout=3)).data
        )
        assert first.changed and again.duplicate and not again.changed
        assert not start.ok and start.error == idempotency.REUSED
        assert hosts["deploy"].lifecycle.state == "stopped"
        # the binding record in KV names the request, not just b"1"
        kv = await nc.jetstream().key_value("aoc_command_ids")
        entry = await kv.get(f"deploy.{caller_key('nats:anonymous')}.bus-key-1")
        record = idempotency._decode_binding(entry.value)
        assert (record.verb, record.target, record.caller) == ("stop", "deploy", "nats:anonymous")
        assert record.reply is not None and record.reply.changed


def test_binding_rules_without_a_bus():
    from contracts.commands import Command

    def alice(verb="stop", target="deploy", **body):
        command = Command(command_id="k", **{"reason": "x", **body})
        return bind(command, caller="alice", verb=verb, target=target)

    first = alice()
    assert answer(first, first, state="stopped", desired="stopped").duplicate
    for changed in (alice("start"), alice(target="soc-cycle"), alice(reason="y"), alice(args={"a": 1})):
        reply = answer(first, changed, state="stopped", desired="stopped")
        assert not reply.ok and reply.error == "idempotency_key_reused"
    # a correlation id names one HTTP attempt: a retry may change it
    assert answer(first, alice(correlation_id="other"), state="stopped", desired="stopped").ok
    assert caller_key("alice") != caller_key("bob")
    assert isinstance(first, Binding)
