"""heal-check's pure parts: the circuit breaker, liveness classification, and the
judgements of the subsystem checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts.advisory import FeedState
from contracts.healing import HEALTHY, STALLED, STOPPED, UNKNOWN, UNREACHABLE
from contracts.ml import ProbeReply
from services.healing.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from services.healing.checks import judge_gateway, judge_probe, lagging_consumers, stale_feeds
from services.healing.liveness import LoopView, Memory, Observation, Thresholds, classify, loops_from_detail

T0 = datetime(2024, 11, 20, 12, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- circuit breaker ------------------------------------------------------------------------


def test_breaker_opens_after_threshold_failures_and_half_opens_after_cooldown():
    breaker = CircuitBreaker("deploy", threshold=3, cooldown_s=60)
    assert breaker.allows() and breaker.pristine
    assert breaker.failed(at(0), "x") is None and breaker.failed(at(1), "x") is None
    opened = breaker.failed(at(2), "still stalled")
    assert opened is not None and (opened.previous, opened.state) == (CLOSED, OPEN)
    assert "3 failed remediations" in opened.reason and not breaker.allows()
    assert breaker.poll(at(61)) is None and breaker.reopens_in(at(32)) == 30  # cool-down counts from opening
    half = breaker.poll(at(62))
    assert half is not None and (half.previous, half.state) == (OPEN, HALF_OPEN)
    assert breaker.allows()
    breaker.attempted()
    assert not breaker.allows()  # exactly one trial
    reopened = breaker.failed(at(70), "trial failed")
    assert (reopened.previous, reopened.state) == (HALF_OPEN, OPEN) and breaker.opened_at == at(70)
    assert breaker.poll(at(129)) is None and breaker.poll(at(130)).state == HALF_OPEN
    breaker.attempted()
    closed = breaker.succeeded(at(131))
    assert (
        (closed.previous, closed.state) == (HALF_OPEN, CLOSED) and breaker.failures == 0 and breaker.pristine
    )


def test_a_success_resets_the_failure_count_without_a_transition():
    breaker = CircuitBreaker("deploy", threshold=2, cooldown_s=60)
    breaker.failed(at(0), "x")
    assert breaker.succeeded(at(1)) is None and breaker.failures == 0
    assert breaker.failed(at(2), "x") is None  # counting starts over: not open after one more


def test_breaker_restores_from_its_snapshot_under_current_configuration():
    breaker = CircuitBreaker("deploy", threshold=1, cooldown_s=60)
    breaker.failed(at(0), "x")
    restored = CircuitBreaker.restore(breaker.snapshot(), threshold=5, cooldown_s=10)
    assert (restored.state, restored.failures, restored.opened_at) == (OPEN, 1, at(0))
    assert restored.poll(at(10)).state == HALF_OPEN  # the new cool-down applies


# --- liveness ---------------------------------------------------------------------------------

LIMITS = Thresholds(
    heartbeat_timeout=15, stall_factor=3, stall_floor=60, divergence_grace=30, startup_grace=30
)


def obs(**kwargs) -> Observation:
    values = {
        "slug": "deploy",
        "desired": "running",
        "beat_state": "running",
        "beat_boot": "b1",
        "beat_age": 2.0,
    }
    return Observation(**{**values, **kwargs})


@pytest.mark.parametrize(
    ("observation", "uptime", "health", "says"),
    [
        (obs(desired="stopped", beat_age=None), 999, STOPPED, "operator"),
        (obs(desired="stopped", beat_state="running"), 999, STOPPED, "operator"),
        (obs(beat_age=None), 5, UNKNOWN, "no heartbeat seen yet"),
        (obs(beat_age=None), 999, UNREACHABLE, "no heartbeat ever"),
        (obs(beat_age=16.0), 999, UNREACHABLE, "no heartbeat for 16.0s"),
        (obs(loops=[]), 999, HEALTHY, "heartbeat 2.0s ago"),
        (obs(loops=[LoopView("watch", 10, True, at(-100))]), 999, STALLED, "'watch' has not completed"),
        (obs(loops=[LoopView("watch", 10, True, at(-50))]), 999, HEALTHY, ""),  # floor 60 s
        (obs(loops=[LoopView("hourly", 3600, True, at(-7200))]), 999, HEALTHY, ""),  # 3 x interval
        (
            obs(loops=[LoopView("watch", 10, False, at(-999))]),
            999,
            HEALTHY,
            "",
        ),  # inactive loops are not judged
    ],
)
def test_classification(observation, uptime, health, says):
    verdict = classify(observation, T0, LIMITS, Memory(), healer_uptime=uptime)
    assert verdict.health == health and says in verdict.reason


def test_divergence_becomes_stalled_only_after_the_grace():
    memory = Memory()
    starting = obs(beat_state="starting")
    assert classify(starting, at(0), LIMITS, memory, 999).health == HEALTHY
    assert classify(starting, at(29), LIMITS, memory, 999).health == HEALTHY
    late = classify(starting, at(31), LIMITS, memory, 999)
    assert late.health == STALLED and "reports starting for 31s" in late.reason
    assert classify(obs(), at(32), LIMITS, memory, 999).health == HEALTHY and memory.diverged_since is None


def test_a_silent_control_endpoint_becomes_stalled_only_after_the_grace():
    memory = Memory()
    silent = obs(detail_error="no reply within the timeout")
    assert classify(silent, at(0), LIMITS, memory, 999).health == HEALTHY
    late = classify(silent, at(30), LIMITS, memory, 999)
    assert late.health == STALLED and "has not answered for 30s" in late.reason
    assert classify(obs(loops=[]), at(31), LIMITS, memory, 999).health == HEALTHY
    assert classify(silent, at(32), LIMITS, memory, 999).health == HEALTHY  # the clock started over


def test_a_loop_that_never_completed_is_timed_from_when_it_was_first_seen_per_boot():
    memory = Memory()
    never = obs(loops=[LoopView("watch", 10, True, None)])
    assert classify(never, at(0), LIMITS, memory, 999).health == HEALTHY
    assert classify(never, at(61), LIMITS, memory, 999).health == STALLED
    reborn = obs(beat_boot="b2", loops=[LoopView("watch", 10, True, None)])  # a new process starts over
    assert classify(reborn, at(62), LIMITS, memory, 999).health == HEALTHY


def test_loops_from_an_engine_detail_reply():
    detail = {
        "loops": [
            {"name": "triage", "interval_seconds": 10, "active": True, "last_run": "2024-11-20T12:00:00Z"},
            {"name": "hunt", "interval_seconds": 300, "active": False, "last_run": None},
        ]
    }
    assert loops_from_detail(detail) == [LoopView("triage", 10, True, T0), LoopView("hunt", 300, False, None)]


# --- judgements of the subsystem checks ---------------------------------------------------------


def test_consumer_lag():
    consumers = [("AOC_EVENTS", "gw", 12), ("AOC_ALERTS", "triage", 50_000), ("KV_x", "w", 0)]
    assert lagging_consumers(consumers, 10_000) == ["AOC_ALERTS/triage: 50000 pending"]
    assert lagging_consumers(consumers, 10) == [
        "AOC_ALERTS/triage: 50000 pending",
        "AOC_EVENTS/gw: 12 pending",
    ]


def test_feed_freshness_within_n_schedules():
    def feed(name, age, **kw):
        success = at(-age) if age is not None else None
        return FeedState(
            name=name, format="rss", source="x", schedule_seconds=600, last_success=success, **kw
        )

    states = [
        feed("fresh", 1700),
        feed("stale", 1900, last_error="HTTP 503"),
        feed("never", None, last_error="not on the allowlist"),
    ]
    assert stale_feeds(states, T0, factor=3) == [
        "stale: last fetched 1900s ago (allowed 1800s); last error: HTTP 503",
        "never: never fetched (not on the allowlist)",
    ]


def test_gateway_and_model_probe_judgements():
    assert judge_gateway({"status": "ok", "projection": {"lag": 0}}).status == "ok"
    degraded = judge_gateway(
        {"status": "degraded", "nats": {"connected": False}, "projection": {"replayed": True}}
    )
    assert degraded.status == "failed" and "not connected to NATS" in degraded.detail
    assert judge_probe(ProbeReply(ok=True, version="v3", scores={"threat": 0.9})).detail.startswith(
        "model v3"
    )
    failed = judge_probe(ProbeReply(ok=False, error="sha256 mismatch for AlertClassifier"))
    assert failed.status == "failed" and "sha256 mismatch" in failed.detail
