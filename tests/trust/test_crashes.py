"""Issue 11 §5: a crash loses nothing and is on record. Real processes: engines started
the way compose or Kubernetes would (no launcher), killed with -9 and started again; and
the whole stack under the real `aoc up` launcher, whose supervisor sees the exit status
and records it as the NATS user `launcher`; the dashboard in Chromium says so."""

from __future__ import annotations

import json
import signal

from contracts import subjects
from contracts.events import Heartbeat, heartbeat_decoder
from services.launcher.crashes import crash_record, crash_summary, is_crash
from services.runtime.recovery import recovery, resume_counters
from tests.trust.conftest import spawn_engine, stop_process, until

FAST_QUEUE = json.dumps({"frontend-factory.queue": 0.05})  # quiet cycles, many of them


async def last_beat(js, slug: str) -> Heartbeat | None:
    try:
        return heartbeat_decoder.decode(
            (await js.get_last_msg(subjects.HEARTBEATS_STREAM, subjects.hb(slug))).data
        )
    except Exception:
        return None


async def test_kill_9_without_a_launcher_keeps_counters_and_is_on_record(settings_env, nc, tap, tmp_path):
    env = {**settings_env, "AOC_SCHEDULES": FAST_QUEUE}
    js = nc.jetstream()
    engine = spawn_engine("frontend-factory", env, tmp_path / "factory.log")
    try:
        seen: dict[str, Heartbeat | None] = {}

        async def look() -> None:
            seen["beat"] = await last_beat(js, "frontend-factory")

        # quiet queue passes: counted, never written as cycle events
        await until(lambda: seen.get("beat") and seen["beat"].status.total_runs >= 40, step=look, what="runs")
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
        await look()
        before = seen["beat"]
        assert before is not None and not before.final
        assert not tap.matching(lambda e: e.type == "cycle_completed" and e.system == "frontend-factory")

        engine = spawn_engine("frontend-factory", env, tmp_path / "factory.log")
        recovered = await tap.wait_for(
            lambda e: e.type == "engine_recovered" and e.system == "frontend-factory", timeout=60
        )
        record = recovered.payload()
        assert record.previous_boot_id == before.boot_id and record.downtime_s > 0
        assert record.previous_state == "running" and record.total_runs >= before.status.total_runs
        assert recovered.summary.result == "recovered" and "unclean end" in recovered.summary.detail

        async def fresh() -> None:
            beat = await last_beat(js, "frontend-factory")
            seen["beat"] = beat if beat and beat.boot_id != before.boot_id else None

        await until(lambda: seen.get("beat") is not None, step=fresh, what="the new process's heartbeat")
        assert seen["beat"].status.total_runs >= before.status.total_runs  # never backwards

        # a clean stop (SIGTERM, as compose sends) ends with a final heartbeat: no recovery
        stop_process(engine)
        final = await last_beat(js, "frontend-factory")
        assert final is not None and final.final
        engine = spawn_engine("frontend-factory", env, tmp_path / "factory.log")

        def started() -> int:  # an engine says "recovered" (if at all) before "running"
            return len(
                tap.matching(
                    lambda e: (
                        e.type == "lifecycle_changed"
                        and e.system == "frontend-factory"
                        and e.payload().state == "running"
                    )
                )
            )

        await until(lambda: started() == 3, timeout=60, what="the third process running")
        assert len(tap.matching(lambda e: e.type == "engine_recovered")) == 1
    finally:
        stop_process(engine)


def test_crash_records_and_recovery_rules_without_a_bus():
    killed = crash_record(pid=7, returncode=-9, uptime_s=12.34, restarts=1, restart_in_s=0.5)
    assert (killed.exit_code, killed.signal) == (None, "SIGKILL")
    assert "killed by SIGKILL" in crash_summary("soc-cycle", killed).detail
    failed = crash_record(pid=7, returncode=3, uptime_s=1, restarts=2, restart_in_s=1.0)
    assert (failed.exit_code, failed.signal) == (3, None)
    assert is_crash(-15) and is_crash(1) and not is_crash(0)

    from contracts.events import CycleCompleted, ProcessMetrics, StatusSnapshot
    from contracts.events import utcnow as now

    status = StatusSnapshot(
        state="running",
        desired="running",
        running=True,
        last_run=None,
        error_count=5,
        success_rate=99.0,
        total_runs=2639,
        cycle_errors=2,
    )
    process = ProcessMetrics(pid=1, rss_mb=1, memory_percent=1, cpu_percent=1, threads=1, uptime_seconds=1)
    beat = Heartbeat(
        system="soc-cycle", boot_id="b1", seq=9, time=now(), status=status, process=process, interval_s=5
    )
    cycle = CycleCompleted(
        loop="triage",
        run_id="r",
        ok=True,
        result="success",
        detail="",
        duration_ms=1,
        total_runs=703,
        error_count=1,
    )
    resumed = resume_counters(cycle, beat)
    assert (resumed.total_runs, resumed.errors) == (2639, 2)  # the heartbeat, not the stale event
    assert recovery(beat, None, boot_id="b2", now=now()) is not None
    import msgspec

    clean = msgspec.structs.replace(beat, final=True)
    assert recovery(clean, None, boot_id="b2", now=now()) is None
    assert recovery(None, None, boot_id="b2", now=now()) is None
