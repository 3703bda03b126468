"""`aoc audit replay` against a real stream filled by the seven in-process engines.

Each test stops engines over the control subjects (which records command and
lifecycle events), so once every engine is stopped the stream holds still and the
replay can be compared with the stream's own counts.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts import subjects
from contracts.settings import Settings
from contracts.streams import ensure_all
from services.launcher import audit
from services.launcher.audit import ReplayOptions


async def stop(nc, slug: str, actor: str | None = None) -> None:
    body = json.dumps({"actor": actor, "reason": "test"}).encode() if actor else b""
    reply = json.loads((await nc.request(f"aoc.ctl.{slug}.stop", body, timeout=2)).data)
    assert reply["ok"], reply


async def stop_all(nc, engines) -> None:
    """Every engine stopped: no loop runs, so no event arrives after this."""
    for slug in engines:
        await stop(nc, slug)


async def stream_state(nc):
    return (await nc.jetstream().stream_info(subjects.EVENTS_STREAM)).state


async def replay(settings: Settings, **options) -> tuple[bytes, str, audit.ReplayStats]:
    out, err = io.BytesIO(), io.StringIO()
    stats = await audit.replay(settings.effective_nats_url, ReplayOptions(**options), out, err=err)
    return out.getvalue(), err.getvalue(), stats


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, bytes, str]:
    """The real `aoc audit replay` in a child process; the engines keep being served."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.launcher",
        "audit",
        "replay",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out, err.decode()


# --- jsonl / csv --------------------------------------------------------------------------


async def test_jsonl_has_every_event_once_in_stream_order(engines, nc, settings):
    await stop_all(nc, engines)
    state = await stream_state(nc)

    out, err, stats = await replay(settings)

    events = jsonl(out)
    seqs = [event["seq"] for event in events]
    assert len(events) == state.messages
    assert seqs == sorted(set(seqs)) and seqs[0] == state.first_seq and seqs[-1] == state.last_seq
    assert all(isinstance(event["data"], dict) and event["id"] and event["type"] for event in events)
    assert {event["system"] for event in events} >= set(engines)
    assert stats.gaps == [] and stats.exit_code == 0
    assert f"replayed {state.messages} events ({state.messages} matched), 0 gaps" in err


async def test_csv_has_header_and_one_row_per_event(engines, nc, settings):
    await stop_all(nc, engines)
    await stop(nc, "soc-cycle", actor="alice")  # already stopped: still an audited command
    state = await stream_state(nc)

    out, _, _ = await replay(settings, format="csv")

    rows = list(csv.reader(io.StringIO(out.decode())))
    assert tuple(rows[0]) == audit.CSV_COLUMNS
    assert len(rows) == state.messages + 1
    by_alice = [dict(zip(rows[0], row, strict=True)) for row in rows[1:] if row[4] == "alice"]
    assert by_alice and by_alice[-1]["system"] == "soc-cycle" and by_alice[-1]["action"]
    assert all(row[0].isdigit() and row[1] for row in rows[1:])


# --- filters ------------------------------------------------------------------------------


async def test_system_and_actor_filters(engines, nc, settings):
    await stop(nc, "soc-cycle", actor="alice")
    await stop(nc, "deploy", actor="bob")
    await stop_all(nc, engines)
    state = await stream_state(nc)

    out, err, stats = await replay(settings, system="soc-cycle")
    soc = jsonl(out)
    assert soc and {event["system"] for event in soc} == {"soc-cycle"}
    assert stats.replayed == state.messages and stats.matched == len(soc)
    assert f"({len(soc)} matched)" in err

    out, _, _ = await replay(settings, actor="alice")
    alice = jsonl(out)
    assert {event["actor"] for event in alice} == {"alice"}
    # one write per command: the stop and its audit are one lifecycle event
    assert [(event["type"], event["summary"]["action"]) for event in alice] == [
        ("lifecycle_changed", "command_stop")
    ]

    out, _, _ = await replay(settings, system="deploy", actor="alice")
    assert out == b""


async def test_since_and_until(engines, nc, settings):
    await stop_all(nc, engines)
    await asyncio.sleep(0.05)
    boundary = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await stop(nc, "deploy", actor="bob")
    state = await stream_state(nc)

    out, _, stats = await replay(settings, since=boundary)
    after = jsonl(out)
    assert after and {event["actor"] for event in after} == {"bob"}
    assert after[-1]["seq"] == state.last_seq and stats.gaps == []

    out, _, _ = await replay(settings, until=boundary)
    before = jsonl(out)
    assert len(before) + len(after) == state.messages
    assert "bob" not in {event["actor"] for event in before}

    out, _, _ = await replay(settings, since=audit.parse_when("1h"))
    assert len(jsonl(out)) == state.messages

    # nothing after --since: the replay ends at once instead of waiting for events
    out, err, stats = await replay(settings, since=datetime.now(UTC) + timedelta(hours=1))
    assert out == b"" and stats.replayed == 0 and "replayed 0 events" in err


# --- gaps, exit codes, files ----------------------------------------------------------------


async def test_gap_is_reported_and_exits_3(engines, nc, settings_env):
    await stop_all(nc, engines)
    state = await stream_state(nc)
    missing = (state.first_seq + state.last_seq) // 2
    await nc.jetstream().delete_msg(subjects.EVENTS_STREAM, missing)

    code, out, err = await run_cli(settings_env)

    seqs = [event["seq"] for event in jsonl(out)]
    assert code == 3, err
    assert f"gap: events {missing}..{missing} missing (deleted or expired)" in err
    assert missing not in seqs and len(seqs) == state.messages - 1
    assert "1 gap" in err
    assert "exit status" in (await run_cli(settings_env, "--help"))[1].decode()


async def test_deleted_newest_event_is_a_gap_too(engines, nc, settings):
    await stop_all(nc, engines)
    state = await stream_state(nc)
    await nc.jetstream().delete_msg(subjects.EVENTS_STREAM, state.last_seq)

    _, err, stats = await replay(settings)

    assert stats.gaps == [(state.last_seq, state.last_seq)] and stats.exit_code == 3
    assert f"gap: events {state.last_seq}..{state.last_seq}" in err


async def test_output_file_with_progress_bar(engines, nc, settings_env, tmp_path: Path):
    await stop_all(nc, engines)
    state = await stream_state(nc)
    target = tmp_path / "audit.csv"

    code, out, err = await run_cli(settings_env, "--format", "csv", "-o", str(target), "--system", "deploy")

    assert code == 0, err
    assert out == b""
    rows = list(csv.reader(target.open()))
    assert rows[0][0] == "seq" and len(rows) > 1 and {row[2] for row in rows[1:]} == {"deploy"}
    assert "\r[" in err and f"100% {state.messages}/{state.messages}" in err


# --- edges ----------------------------------------------------------------------------------


async def test_foreign_message_is_skipped_not_fatal(engines, nc, settings):
    await stop_all(nc, engines)
    ack = await nc.jetstream().publish("aoc.evt.soc-cycle.custom", b"not json")
    state = await stream_state(nc)

    out, err, stats = await replay(settings)

    assert stats.undecodable == 1 and stats.replayed == state.messages
    assert len(jsonl(out)) == state.messages - 1
    assert f"event {ack.seq}: not an AOC event envelope, skipped" in err


async def test_empty_and_missing_stream(nc, settings):
    with pytest.raises(audit.ReplayError, match="does not exist"):
        await replay(settings)

    await ensure_all(nc.jetstream(), settings)
    out, err, stats = await replay(settings)
    assert out == b"" and stats.replayed == 0 and stats.exit_code == 0
    assert "replayed 0 events (0 matched), 0 gaps" in err


async def test_unreachable_nats_is_an_error(settings_env):
    from services.launcher.natsserver import free_port

    env = {**settings_env, "NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    code, _, err = await run_cli(env)
    assert code == 1 and "cannot connect to NATS" in err


def test_parse_when():
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert audit.parse_when("2h", now) == now - timedelta(hours=2)
    assert audit.parse_when("30m", now) == now - timedelta(minutes=30)
    assert audit.parse_when("7d", now) == now - timedelta(days=7)
    assert audit.parse_when("2024-05-01T10:00:00Z") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert audit.parse_when("2024-05-01T10:00:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert audit.parse_when("2024-05-01T12:00:00+02:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither ISO 8601"):
        audit.parse_when("yesterday")
