"""Issue 11 §6: identity claims. Names are case-insensitive (one canonical form); the
bootstrap name `admin` cannot be taken by a JWT or another token; a command's origin is
decided by the engine that receives it, never taken from the sender's headers; the
launcher's NATS user may record crashes and nothing else. Real nats-server with the
users of `aoc up`, the gateway under uvicorn."""

from __future__ import annotations

import time

import jwt
import msgspec
from pydantic import SecretStr

from contracts.commands import reply_decoder
from contracts.events import ProcessCrashed, Summary, command_of, new_event
from contracts.settings import Settings
from services.launcher.natsserver import NatsServer
from services.runtime.testing import EventTap, running_engines
from tests.conftest import api_client, serve_gateway
from tests.security.conftest import violations
from tests.security.test_nats_permissions import connected
from tests.trust.conftest import until

SECRET = "a-trust-test-hs256-secret-long-enough-0123456789abcdef-0123456789"
ISSUER, AUDIENCE = "https://idp.example.com/", "aoc"


def a_jwt(sub: str, roles=("operator",)) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "nbf": now - 5,
        "exp": now + 300,
        "roles": list(roles),
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


async def test_names_are_case_insensitive_and_admin_is_the_bootstrap_tokens(settings: Settings, callers):
    with_jwt = settings.model_copy(
        update={"jwt_secret": SecretStr(SECRET), "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    )
    async with serve_gateway(with_jwt) as url, api_client(url, callers["admin"].headers) as http:
        # the issue's pair: a JWT with sub "admin" and a token named "Admin"
        fullwidth = "".join(chr(0xFF21 + ord(ch) - ord("A")) for ch in "ADMIN")  # NFKC makes it ADMIN
        for sub in ("admin", "Admin", fullwidth):
            refused = await http.get("/api/v1/auth/me", headers=a_jwt(sub))
            assert refused.status_code == 401, sub
        taken = await http.post("/api/v1/auth/tokens", json={"name": "Admin", "role": "admin"})
        assert taken.status_code == 422 and "bootstrap" in taken.json()["detail"]
        # "oscar" exists (the operator's token): "OSCAR" is the same name
        clash = await http.post("/api/v1/auth/tokens", json={"name": "OSCAR", "role": "viewer"})
        assert clash.status_code == 409
        created = await http.post("/api/v1/auth/tokens", json={"name": "Carol.Ops", "role": "viewer"})
        assert created.status_code == 201 and created.json()["name"] == "carol.ops"
        me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {created.json()['token']}"})
        assert me.json()["name"] == "carol.ops"
        # a JWT's subject gets the same canonical form: one person, one name in the log
        alice = await http.get("/api/v1/auth/me", headers=a_jwt("Alice"))
        assert alice.status_code == 200 and alice.json()["name"] == "alice"
        lookalike = await http.get("/api/v1/auth/me", headers=a_jwt("\u0430lice"))  # a Cyrillic "a"
        assert lookalike.status_code == 401
        revoked = await http.delete("/api/v1/auth/tokens/CAROL.OPS")
        assert revoked.status_code == 204


async def test_the_origin_is_set_by_the_receiver_never_by_the_sender(
    secure_nats: NatsServer, secure_settings: Settings, callers
):
    async with (
        running_engines(secure_settings, ["deploy"]),
        connected(secure_nats, "admin") as admin,
        connected(secure_nats, "operator") as operator,
    ):
        tap = await EventTap(admin.nc).start()
        # a NATS user claiming to be the web: recorded as what it is, from nats
        forged = {"Aoc-Origin": "http", "Aoc-Actor": "alice"}
        msg = await operator.nc.request("aoc.ctl.deploy.stop.operator", b"", timeout=3, headers=forged)
        assert reply_decoder.decode(msg.data).ok
        audit = await tap.wait_for(lambda e: command_of(e) is not None and command_of(e).verb == "stop")
        assert command_of(audit).origin == "nats" and audit.actor == "nats:operator"
        assert audit.summary.detail.startswith("stop from nats")
        # the same header on a refused command changes nothing either
        await operator.nc.request("aoc.ctl.deploy.explode.operator", b"", timeout=3, headers=forged)
        refused = await tap.wait_for(lambda e: e.type == "command_handled" and e.payload().verb == "explode")
        assert refused.payload().origin == "nats"
        # the gateway relays people it authenticated on the four-token form: "from http"
        async with (
            serve_gateway(secure_settings) as url,
            api_client(url, callers["operator"].headers) as http,
        ):
            assert (await http.post("/api/v1/admin/start/deploy")).status_code == 200
        relayed = await tap.wait_for(lambda e: command_of(e) is not None and command_of(e).verb == "start")
        assert command_of(relayed).origin == "http" and relayed.actor == "oscar"
        await tap.stop()


async def test_the_launcher_user_records_crashes_and_nothing_else(secure_nats: NatsServer, secure_settings):
    async with running_engines(secure_settings, ["deploy"]), connected(secure_nats, "launcher") as launcher:
        js = launcher.nc.jetstream()
        record = ProcessCrashed(pid=1, exit_code=None, signal="SIGKILL", uptime_s=1.0)
        event = new_event(
            system="deploy", payload=record, summary=Summary(action="process_crashed"), source="launcher"
        )
        ack = await js.publish("aoc.evt.deploy.process_crashed", msgspec.json.encode(event), timeout=3)
        assert ack.seq > 0
        before = len(violations(secure_nats))
        for subject in ("aoc.evt.deploy.lifecycle_changed", "aoc.ctl.deploy.stop", "aoc.hb.deploy"):
            await launcher.nc.publish(subject, b"{}")
        await launcher.nc.subscribe("aoc.evt.>")
        await launcher.nc.flush()
        await until(lambda: len(violations(secure_nats)) >= before + 4, what="four refusals by the server")
        refused = violations(secure_nats)[before:]
        assert any("lifecycle_changed" in line for line in refused)
        assert any("aoc.ctl.deploy.stop" in line for line in refused)
        assert any("Subscription Violation" in line and "aoc.evt.>" in line for line in refused)
