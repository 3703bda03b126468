"""Jobs: a trigger that outlasts the reply budget answers with a run id, and
GET /api/v1/jobs/{run_id} follows it to its result, from the stream (so a gateway
restarted mid-job still knows it). `aoc trigger ml-retrain --wait` follows it too.

The retrain is real (ml-retrain trains and evaluates its models); the test holds the
engine's training lock to keep the job running for as long as it needs."""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
import pytest

from contracts.events import (
    CommandHandled,
    CycleCompleted,
    Envelope,
    LifecycleChanged,
    Summary,
    encode,
    new_event,
)
from gateway.readmodels.base import FeedEvent, decode_feed_event
from gateway.readmodels.jobs import LOST, JobsView
from services.launcher import cli
from services.runtime.testing import running_engines, settled
from tests.conftest import ADMIN_ACTOR, api_client, serve_gateway
from tests.ops.conftest import Tokens

ML = "ml-retrain"


@contextlib.asynccontextmanager
async def ml_engine(settings):
    async with running_engines(settings, [ML]) as hosts:
        await settled(hosts, lambda: hosts[ML].engine.status_extras()["active_version"] is not None)
        yield hosts[ML]


async def until_status(client, run_id: str, wanted: set[str], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/api/v1/jobs/{run_id}")
        if response.status_code == 200 and response.json()["status"] in wanted:
            return response.json()
        assert time.monotonic() < deadline, (
            f"job {run_id} not {wanted}: {response.status_code} {response.text}"
        )
        await asyncio.sleep(0.1)


async def test_job_survives_a_gateway_restart(settings, api_headers, tokens: Tokens):
    async with ml_engine(settings) as host:
        lock = host.engine._train_lock
        await lock.acquire()  # the retrain waits for it: the job stays running
        try:
            async with serve_gateway(settings) as url, api_client(url, api_headers) as admin:
                reply = (
                    await admin.post(f"/api/v1/admin/trigger/{ML}", json={"reason": "new verdicts"})
                ).json()
                assert reply["status"] == "started" and reply["run_id"], reply
                run_id = reply["run_id"]
                assert reply["job_url"] == f"/api/v1/jobs/{run_id}"
                job = await until_status(admin, run_id, {"running"})
                assert (job["system"], job["actor"], job["finished"], job["result"]) == (
                    ML,
                    ADMIN_ACTOR,
                    None,
                    None,
                )
                assert job["started"] and job["accepted"]
            # the gateway is gone; a new one rebuilds the job from the stream
            async with (
                serve_gateway(settings) as url,
                api_client(url, tokens.header(tokens.viewer)) as viewer,
            ):
                again = await until_status(viewer, run_id, {"running"})
                assert (again["actor"], again["accepted"]) == (ADMIN_ACTOR, job["accepted"])
                lock.release()
                done = await until_status(viewer, run_id, {"succeeded", "failed"})
                assert done["status"] == "succeeded", done
                assert done["error"] is None and done["result"]["ok"] is True
                assert done["result"]["loop"] and done["result"]["duration_ms"] > 0
                assert done["started"] <= done["finished"]
                listed = (
                    await viewer.get("/api/v1/jobs", params={"system": ML, "status": "succeeded"})
                ).json()
                assert run_id in [j["run_id"] for j in listed["jobs"]] and listed["ready"] is True
                missing = await viewer.get(f"/api/v1/jobs/{'0' * 32}")
                assert missing.status_code == 404 and "no job" in missing.json()["detail"]
                assert (await viewer.get("/api/v1/jobs/bad%20id")).status_code == 422
        finally:
            if lock.locked():
                lock.release()


async def test_a_job_lost_with_its_engine_fails(settings, api_headers):
    async with serve_gateway(settings) as url, api_client(url, api_headers) as admin:
        async with ml_engine(settings) as host:
            await host.engine._train_lock.acquire()
            reply = (await admin.post(f"/api/v1/admin/trigger/{ML}")).json()
            assert reply["status"] == "started", reply
            await until_status(admin, reply["run_id"], {"running"})
            await host.close()  # shuts down mid-run: the result never comes
        job = await until_status(admin, reply["run_id"], {"failed"})
        assert job["error"] == LOST and job["finished"]


async def test_cli_wait_follows_the_run(settings, monkeypatch, capsys):
    async with ml_engine(settings) as host, serve_gateway(settings) as url, api_client(url, {}) as plain:
        monkeypatch.setenv("AOC_GATEWAY_URL", url)
        lock = host.engine._train_lock
        await lock.acquire()
        cli_run = asyncio.create_task(
            asyncio.to_thread(cli.main, ["trigger", ML, "--wait", "--timeout", "60"])
        )
        try:
            # the CLI is polling a running job; let the retrain go on
            deadline = time.monotonic() + 30
            seen = capsys.readouterr()
            out, err = seen.out, seen.err
            while "running" not in err:
                assert time.monotonic() < deadline and not cli_run.done()
                await asyncio.sleep(0.1)
                seen = capsys.readouterr()
                out, err = out + seen.out, err + seen.err
        finally:
            lock.release()
        assert await asyncio.wait_for(cli_run, 60) == 0
        out += capsys.readouterr().out
        assert f"ok      {ML}: " in out and "(run " in out  # the 'started' line
        assert "succeeded in" in out and '"ok": true' in out
        del plain


# --- the pure view ---------------------------------------------------------------------


def event(system: str, payload, actor: str, when: str) -> tuple[FeedEvent, bytes]:
    """The event as the gateway's feed hands it to a view: decoded once, and its bytes."""
    envelope: Envelope = new_event(system=system, payload=payload, summary=Summary(action="x"), actor=actor)
    envelope.time = envelope.time.fromisoformat(when)
    data = encode(envelope)
    return decode_feed_event(data), data


def audit(run_id: str, when: str, outcome: str = "accepted"):
    payload = CommandHandled(
        command_id="c1", verb="trigger", target=ML, origin="http", outcome=outcome, message="m", run_id=run_id
    )
    return event(ML, payload, "alice", when)


def completed(run_id: str, when: str, ok: bool = True, manual: bool = True):
    payload = CycleCompleted(
        loop="retrain",
        run_id=run_id,
        ok=ok,
        result="success" if ok else "failed",
        detail="boom" if not ok else "v2",
        duration_ms=1500.0,
        manual=manual,
    )
    return event(ML, payload, "alice", when)


def lifecycle(actor: str, when: str):
    return event(ML, LifecycleChanged(state="running", previous="stopped", desired="running"), actor, when)


@pytest.mark.parametrize("order", ["audit_first", "result_first"])
def test_view_folds_audit_and_result_in_either_order(order):
    view = JobsView()
    steps = [audit("r1", "2030-01-01T00:00:00+00:00"), completed("r1", "2030-01-01T00:00:02+00:00")]
    for seq, (kind, data) in enumerate(steps if order == "audit_first" else steps[::-1], start=1):
        view.apply(seq, kind, data)
    job = view.get("r1").view()
    assert (job["status"], job["actor"], job["system"]) == ("succeeded", "alice", ML)
    assert job["started"] == "2030-01-01T00:00:00.500000Z" and job["finished"].startswith(
        "2030-01-01T00:00:02"
    )
    assert job["result"]["detail"] == "v2" and job["error"] is None


def test_view_failed_lost_and_bounded():
    view = JobsView(max_jobs=3)
    view.apply(1, *audit("bad", "2030-01-01T00:00:00+00:00"))
    view.apply(2, *completed("bad", "2030-01-01T00:00:01+00:00", ok=False))
    assert view.get("bad").view()["error"] == "boom" and view.get("bad").status == "failed"
    view.apply(3, *audit("lost", "2030-01-01T00:00:03+00:00"))
    view.apply(4, *lifecycle("bob", "2030-01-01T00:00:04+00:00"))  # an operator's start: not a restart
    assert view.get("lost").status == "running"
    view.apply(5, *lifecycle(ML, "2030-01-01T00:00:05+00:00"))  # the engine's own (re)start
    assert view.get("lost").status == "failed" and view.get("lost").error == LOST
    view.apply(6, *completed("lost", "2030-01-01T00:00:06+00:00"))  # the result came after all
    assert view.get("lost").status == "succeeded"
    view.apply(7, *completed("sched", "2030-01-01T00:00:07+00:00", manual=False))  # a scheduled cycle
    view.apply(8, *audit("rejected", "2030-01-01T00:00:08+00:00", outcome="failed"))
    assert view.get("sched") is None and view.get("rejected") is None
    for seq, run in enumerate(["a", "b", "c"], start=9):
        view.apply(seq, *audit(run, "2030-01-01T00:00:09+00:00"))
    assert list(view.jobs) == ["a", "b", "c"]  # the oldest went first
    broken, raw = completed("x", "2030-01-01T00:00:10+00:00")
    view.apply(20, msgspec.structs.replace(broken, data=msgspec.Raw(b'{"loop": 1}')), raw)  # bad payload
    assert len(view.jobs) == 3
