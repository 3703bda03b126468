"""Issue 11 §2-3: what a refused command leaves behind is bounded, a burst from one
sender is folded into one record, a command too large to audit whole is still audited,
and slow-consumer drops are counted, answered and visible. Real nats-server with the
users and permissions of `aoc up`; the operator sends raw NATS as `nats pub`/`nats req`
would."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import sys

import msgspec
from structlog.testing import capture_logs

from contracts import subjects
from contracts.commands import reply_decoder
from contracts.events import command_of
from contracts.settings import Settings
from services.launcher.audit import ReplayOptions, replay
from services.launcher.natsserver import NatsServer
from services.runtime import refusals
from services.runtime.bus import NatsCredentials
from services.runtime.testing import EventTap, running_engines
from tests.conftest import api_client, serve_gateway
from tests.security.test_nats_permissions import connected
from tests.trust.conftest import until

ENGINES = ["deploy", "integrity-scan"]
AUDIT_LIMIT = 4096  # bytes: what one refusal may add to the stream at most


def handled(tap: EventTap, system: str | None = None, actor: str | None = None):
    return tap.matching(
        lambda e: (
            e.type == "command_handled"
            and (system is None or e.system == system)
            and (actor is None or e.actor == actor)
        )
    )


def collector() -> tuple[list, object]:
    replies: list = []

    async def keep(msg) -> None:
        replies.append(msg)

    return replies, keep


async def collect_replies(nc, subject: str, body: bytes, count: int) -> tuple[list, object]:
    # one reply subject per request, as `nats req` does (the server lets each responder
    # answer a reply subject once)
    inbox = nc.new_inbox()
    replies, keep = collector()
    sub = await nc.subscribe(f"{inbox}.*", cb=keep)
    for n in range(count):
        await nc.publish(subject, body, reply=f"{inbox}.{n}")
    return replies, sub


async def test_an_unknown_field_flood_cannot_push_the_audit_trail_out(secure_nats: NatsServer, settings):
    """The issue's flood: 15 x {"<450 KB name>": 1} to aoc.ctl.all.status.operator with a
    64 MiB stream evicted events 1-65 in 8.5 s. Here the stream is 4 MiB: the admin's stop
    and start stay in it, every refusal is answered, and what it recorded is bounded."""
    flood_settings = settings.model_copy(
        update={
            "nats_url": secure_nats.url,
            "nats_credentials_dir": secure_nats.credentials_dir,
            "stream_max_bytes": 4 * 1024 * 1024,
            "refusal_fold_window_s": 1.0,
        }
    )
    name = "A" * 450_000
    body = msgspec.json.encode({name: 1})
    with capture_logs() as logs:
        async with (
            running_engines(flood_settings, ENGINES) as hosts,
            connected(secure_nats, "admin") as admin,
            connected(secure_nats, "operator") as operator,
        ):
            tap = await EventTap(admin.nc).start()
            for verb in ("stop", "start"):
                msg = await operator.nc.request(
                    f"aoc.ctl.deploy.{verb}.operator", b'{"reason":"drill"}', timeout=3
                )
                assert reply_decoder.decode(msg.data).ok
            kept = {  # a stop or start is audited by its own lifecycle event (one write)
                e.id
                for e in tap.matching(lambda e: e.system == "deploy" and command_of(e) is not None)
                if command_of(e).verb in ("stop", "start")
            }
            assert len(kept) == 2

            replies, sub = await collect_replies(operator.nc, "aoc.ctl.all.status.operator", body, 15)
            await until(lambda: len(replies) == 15 * len(ENGINES), what="every refusal answered")
            await sub.unsubscribe()
            for msg in replies:
                assert len(msg.data) + sum(len(k) + len(v) for k, v in (msg.headers or {}).items()) < 4096
                reply = reply_decoder.decode(msg.data)
                assert not reply.ok and reply.error == "invalid_command" and "sha256:" in reply.message

            # folded: per engine 10 records one by one, then one that stands for the rest
            def folded_per_engine() -> dict[str, int]:
                return {
                    slug: sum(
                        1 + e.payload().repeats
                        for e in handled(tap, slug, "nats:operator")
                        if e.payload().outcome == "rejected"
                    )
                    for slug in ENGINES
                }

            await until(lambda: folded_per_engine() == dict.fromkeys(ENGINES, 15), what="the folded records")
            for slug in ENGINES:
                records = [
                    e for e in handled(tap, slug, "nats:operator") if e.payload().outcome == "rejected"
                ]
                assert len(records) == refusals.FOLD_BURST + 1
                burst = records[-1]
                assert burst.payload().repeats == 15 - refusals.FOLD_BURST - 1
                assert re.search(r"\d+ more refused commands from nats:operator in 1 s", burst.summary.detail)
                for event in records:
                    assert len(msgspec.json.encode(event)) < AUDIT_LIMIT
            for slug, host in hosts.items():
                assert host.lifecycle.state == "running", slug

            info = await admin.nc.jetstream().stream_info(subjects.EVENTS_STREAM)
            assert info.state.first_seq == 1, "nothing was evicted"
            assert kept <= {e.id for _, e in tap.events if e.system == "deploy"}
            await tap.stop()
            # and the audit replay agrees: complete, nothing evicted, the drill on record
            out, err = io.BytesIO(), io.StringIO()
            credentials = NatsCredentials("operator", secure_nats.credentials("operator")["password"])
            stats = await replay(secure_nats.url, ReplayOptions(), out, err=err, credentials=credentials)
            assert stats.exit_code == 0 and not stats.evicted_by_size, err.getvalue()
            replayed = {json.loads(line)["id"] for line in out.getvalue().splitlines()}
            assert kept <= replayed
    # each log line about a refusal is bounded too (the issue saw 40 MB of logs)
    rejected = [line for line in logs if line["event"] == "command.rejected"]
    assert rejected and all(len(repr(line)) < AUDIT_LIMIT for line in rejected)
    assert sum(line["event"] == "command.rejected_burst" for line in logs) == len(ENGINES)


async def test_a_command_too_large_to_audit_whole_is_refused_and_audited(
    secure_nats: NatsServer, secure_settings: Settings
):
    """{"<600,000 x A>": 1} on aoc.ctl.deploy.status.operator got "500 MaxPayloadError",
    no audit event and no log line."""
    body = msgspec.json.encode({"A" * 600_000: 1})
    with capture_logs() as logs:
        async with (
            running_engines(secure_settings, ["deploy"]),
            connected(secure_nats, "admin") as admin,
            connected(secure_nats, "operator") as operator,
        ):
            tap = await EventTap(admin.nc).start()
            msg = await operator.nc.request("aoc.ctl.deploy.status.operator", body, timeout=3)
            assert msg.headers.get("Nats-Service-Error-Code") != "500"
            reply = reply_decoder.decode(msg.data)
            assert not reply.ok and reply.error == "invalid_command"
            assert "larger than" in reply.message and len(reply.message) < 600
            audit = await tap.wait_for(lambda e: e.type == "command_handled" and e.system == "deploy")
            record = audit.payload()
            assert record.outcome == "rejected" and audit.actor == "nats:operator"
            assert record.body_sha256 == hashlib.sha256(body).hexdigest()
            assert len(msgspec.json.encode(audit)) < AUDIT_LIMIT
            await tap.stop()
    lines = [line for line in logs if line["event"] == "command.rejected"]
    assert len(lines) == 1 and len(repr(lines[0])) < AUDIT_LIMIT


SENDER = """
import asyncio, json, sys, nats
async def main():
    url, password, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    nc = await nats.connect(url, user="operator", password=password, inbox_prefix="_INBOX_operator")
    replies = []
    async def keep(msg):
        replies.append(json.loads(msg.data).get("error"))
    inbox = nc.new_inbox()
    await nc.subscribe(inbox + ".*", cb=keep)
    await nc.flush()
    payload = b"x" * 1_000_000
    for n in range(count):
        await nc.publish(f"aoc.ctl.nosuch-{n}.stop.operator", payload, reply=f"{inbox}.{n}")
    await nc.flush()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while len(replies) < count and loop.time() < deadline:
        await asyncio.sleep(0.05)
    print(json.dumps(replies))
    await nc.close()
asyncio.run(main())
"""


async def test_slow_consumer_drops_are_counted_answered_and_visible(
    secure_nats: NatsServer, secure_settings: Settings, monkeypatch
):
    """300 x 1 MB publishes to aoc.ctl.nosuch-N.stop.operator (a separate sender process,
    as `nats pub` in a loop): the gateway's subscription dropped 150 with no reply and no
    audit. With a small pending limit the drops are certain here; each is counted,
    logged, answered 'overloaded' and audited (folded)."""
    import gateway.state

    monkeypatch.setattr(gateway.state, "GUARD_PENDING_BYTES", 4 * 1024 * 1024)
    settings = secure_settings.model_copy(update={"refusal_fold_window_s": 1.0})
    count = 300
    with capture_logs() as logs:
        async with (
            serve_gateway(settings) as url,
            connected(secure_nats, "admin") as admin,
        ):
            tap = await EventTap(admin.nc).start()
            password = secure_nats.credentials("operator")["password"]
            sender = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                SENDER,
                secure_nats.url,
                password,
                str(count),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(sender.communicate(), 90)
            errors = json.loads(out)
            assert len(errors) == count, f"{len(errors)} of {count} answered"
            assert set(errors) <= {"unknown_system", "overloaded"} and "overloaded" in errors
            async with api_client(url, {"Authorization": "Bearer " + _admin_token()}) as http:
                details = (await http.get("/health/details")).json()
                # the server never cut the gateway off as its own slow consumer (that would
                # lose messages nobody can count on the client side)
                assert details["nats"]["reconnects"] == 0
                drops = details["nats"]["slow_consumer_drops"]
                assert drops > 0 and drops == errors.count("overloaded")
                assert any("dropped" in alert for alert in details["alerts"])
                metrics = (await http.get("/metrics")).text
                scraped = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in metrics.splitlines()
                    if line.startswith("aoc_nats_slow_consumer_drops_total{")
                )
                assert scraped == drops

            def audited() -> int:
                return sum(1 + e.payload().repeats for e in handled(tap, "gateway", "nats:operator"))

            await until(lambda: audited() == count, timeout=20, what="every command audited (folded)")
            assert all(len(msgspec.json.encode(e)) < AUDIT_LIMIT for e in handled(tap, "gateway"))
            await tap.stop()
    assert any(line["event"] == "nats.slow_consumer" for line in logs)


def _admin_token() -> str:
    from tests.conftest import ADMIN_TOKEN

    return ADMIN_TOKEN


def test_folding_and_bounding_rules_without_a_bus():
    folder = refusals.RefusalFolder(window_s=10, burst=2, max_senders=3)
    assert [folder.admit("op", t, t) for t in (0.0, 1.0, 2.0, 3.0, 4.0)] == [True, True, False, False, False]
    assert folder.admit("other", 5.0) is True  # senders are counted apart
    assert folder.next_due() == 10.0 and folder.due(9.9) == []
    (burst,) = folder.due(10.0)
    assert (burst.sender, burst.repeats, burst.last) == ("op", 2, 4.0)  # the last refusal + 2 more
    assert burst.detail() == "2 more refused commands from op in 10 s"
    assert folder.admit("op", 11.0) is True  # a new window
    for n in range(10):  # a flood of senders cannot grow the table without bound
        folder.admit(f"s{n}", 12.0)
    assert len(folder._windows) <= 3
    text = "A" * 10_000
    cut = refusals.bound(text)
    assert len(cut) < 400 and "+9700 chars" in cut and refusals.digest(text)[:16] in cut
    assert refusals.bound("\ud800") == "\\ud800"
    assert refusals.header_text("a\nb…") == "a?b?"
    assert refusals.argument_error("TypeError", {"feeds": 5})
    assert not refusals.argument_error("TypeError", {}) and not refusals.argument_error("OSError", {"a": 1})
