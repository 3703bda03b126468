"""The deploy engine with an AOC_DEPLOY_COMMAND: its exit code decides, its output lands in
the history, a timeout kills it, and a failed deploy counts as an error."""

from __future__ import annotations

import os

from contracts.commands import reply_decoder
from services.runtime.testing import running_engines
from tests.factory.conftest import eventually


async def trigger(nc, args: dict) -> dict:
    body = {"actor": "alice", "args": args}
    import json

    reply = reply_decoder.decode(
        (await nc.request("aoc.ctl.deploy.trigger", json.dumps(body).encode(), timeout=10)).data
    )
    assert reply.ok, reply
    return reply.result or {}


async def test_the_deploy_command_decides_and_is_recorded(line_settings, nc, tmp_path, monkeypatch):
    control = tmp_path / "control"
    control.mkdir()
    (control / "exit").write_text("0")
    monkeypatch.setenv(
        "AOC_DEPLOY_COMMAND",
        f'echo "building $AOC_RELEASE_ID ($AOC_DEPLOY_ACTION)"; test -f {control}/hang && sleep 30; '
        f'exit "$(cat {control}/exit)"',
    )
    monkeypatch.setenv("AOC_DEPLOY_TIMEOUT", "1")
    async with running_engines(line_settings, ["deploy"]) as hosts:
        host = hosts["deploy"]
        engine = host.engine
        page = engine.frontend / "src/app/reports/page.tsx"
        page.parent.mkdir(parents=True)
        page.write_text("export default function Reports() { return null; }\n")

        # exit 0: released, switched, output kept
        await trigger(nc, {"force": True})
        ok = await eventually(lambda: engine.history and engine.history[0])
        assert ok.status == "success" and ok.command.exit_code == 0
        assert f"building {ok.release_id} (deploy)" in ok.command.output
        assert os.readlink(engine.store.root / "current") == ok.release_id

        # exit 3: failed, counted as an error, current unchanged, the failed release gone
        (control / "exit").write_text("3")
        page.write_text("export default function Reports() { return 1; }\n")
        errors_before = host.counters.errors
        await trigger(nc, {})
        failed = await eventually(lambda: engine.history[0].status == "failed" and engine.history[0])
        assert failed.command.exit_code == 3 and "exited with 3" in failed.error
        assert host.counters.errors == errors_before + 1
        assert os.readlink(engine.store.root / "current") == ok.release_id
        assert not (engine.store.root / failed.release_id).exists()
        compact = engine.status_extras()["deploy_history"][0]
        assert compact["status"] == "failed" and compact["exit_code"] == 3

        # a hung command is killed at the timeout
        (control / "hang").write_text("")
        await trigger(nc, {"force": True})
        hung = await eventually(lambda: engine.history[0].command.timed_out and engine.history[0], timeout=15)
        assert hung.status == "failed" and "timed out" in hung.error and hung.command.exit_code is None
        assert hung.command.duration_ms < 10_000

        # rollback runs the command too, with the action named; an unknown id is refused
        (control / "hang").unlink()
        (control / "exit").write_text("0")
        refused = await trigger(nc, {"action": "rollback", "release_id": "r-nope"})
        assert refused["result"] == "rejected"
        assert engine.status_extras()["is_deploying"] is False
        assert engine.status_extras()["total_deploys"] == 3
