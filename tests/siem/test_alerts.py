"""Control-plane alert rules: each built-in fires on the events other services publish
(built here by hand, with the names and payloads they use) and resolves; firing is
deduplicated by rule and target; a restarted service rebuilds its state from the stream
and fires nothing twice."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from contracts.events import CommandHandled, Envelope, LifecycleChanged, Summary, new_id
from contracts.siem import SIEM, KillSwitchEngaged
from contracts.streams import ensure_all
from contracts.systems import SYSTEMS
from services.runtime.bus import EventPublisher
from services.runtime.testing import EventTap
from services.siem.alerts import AlertEngine
from services.siem.rules import parse_rules
from services.siem.service import SiemService
from tests.siem.conftest import siem_settings, until

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # a Wednesday, 10:00 UTC


def event(
    type_: str, system: str, data: dict[str, Any], *, actor: str = "alice", at: datetime = T0
) -> Envelope:
    return Envelope(
        id=new_id(),
        source=system,
        type=type_,
        system=system,
        time=at,
        summary=Summary(action=type_),
        actor=actor,
        data=msgspec.Raw(msgspec.json.encode(data)),
    )


def command(
    verb: str, target: str, outcome: str = "accepted", origin: str = "http", **extra
) -> dict[str, Any]:
    return {
        **msgspec.to_builtins(
            CommandHandled(
                command_id=new_id(), verb=verb, target=target, origin=origin, outcome=outcome, message="m"
            )
        ),
        **extra,
    }


def lifecycle(state: str) -> dict[str, Any]:
    return msgspec.to_builtins(LifecycleChanged(state=state, previous="running", desired=state))


def engine_with(yaml_text: str) -> AlertEngine:
    engine = AlertEngine(parse_rules(yaml_text).rules)
    engine.finish_replay(T0 - timedelta(hours=1))
    return engine


class Feed:
    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine
        self.seq = 0
        self.published: list[Envelope] = []

    def __call__(self, e: Envelope, at: datetime | None = None) -> list[Envelope]:
        self.seq += 1
        self.engine.on_event(self.seq, at or e.time, e)
        out = self.engine.take_outbox()
        self.published += out
        return out

    def tick(self, at: datetime) -> list[Envelope]:
        self.engine.tick(at)
        out = self.engine.take_outbox()
        self.published += out
        return out


def kinds(envelopes: list[Envelope]) -> list[tuple[str, str]]:
    return [(e.type, msgspec.json.decode(e.data)["target"]) for e in envelopes]


# --- each rule ----------------------------------------------------------------------------


def test_kill_switch_fires_once_per_engagement_from_either_path():
    feed = Feed(engine_with("rules: [{name: ks, kind: kill-switch-used}]"))
    engaged = event("kill_switch_engaged", "gateway", {"reason": "incident", "succeeded": 7, "failed": 0})
    assert kinds(feed(engaged)) == [("alert_fired", "all")]
    for slug in SYSTEMS:  # the engines' own records of the same engagement
        assert feed(event("lifecycle_changed", slug, lifecycle("stopped"))) == []
    # a NATS broadcast stop during the same engagement: still one alert
    assert feed(event("command_handled", "deploy", command("stop", "deploy", origin="all"))) == []
    for slug in list(SYSTEMS)[:-1]:
        assert feed(event("lifecycle_changed", slug, lifecycle("running"))) == []
    assert kinds(feed(event("lifecycle_changed", list(SYSTEMS)[-1], lifecycle("running")))) == [
        ("alert_resolved", "all")
    ]
    # a broadcast stop later is a new engagement
    fired = feed(
        event("command_handled", "soc-cycle", command("stop", "soc-cycle", origin="all"), actor="nats:bob")
    )
    assert kinds(fired) == [("alert_fired", "all")]
    assert "broadcast stop by nats:bob" in msgspec.json.decode(fired[0].data)["detail"]
    # a single stop, or a refused broadcast, is no kill switch
    feed.engine.open.clear()
    assert feed(event("command_handled", "deploy", command("stop", "deploy"))) == []
    assert feed(event("command_handled", "deploy", command("stop", "deploy", "rejected", origin="all"))) == []


def test_engine_unreachable_after_n_seconds_and_back():
    feed = Feed(engine_with("rules: [{name: gone, kind: engine-unreachable, for_s: 30}]"))
    feed.engine.on_heartbeat("deploy", T0)
    assert feed.tick(T0 + timedelta(seconds=29)) == []
    fired = feed.tick(T0 + timedelta(seconds=31))
    assert kinds(fired) == [("alert_fired", "deploy")]
    assert feed.tick(T0 + timedelta(seconds=60)) == []  # still open: no second alert
    feed.engine.on_heartbeat("deploy", T0 + timedelta(seconds=61))
    resolved = feed.engine.take_outbox()
    assert kinds(resolved) == [("alert_resolved", "deploy")]
    assert msgspec.json.decode(resolved[0].data)["alert_id"] == fired[0].id


def crashed(system: str, at: datetime) -> Envelope:
    data = {"pid": 1234, "exit_code": None, "signal": "SIGKILL", "uptime_s": 3.0}
    return event("process_crashed", system, data, actor="launcher", at=at)


def test_crash_loop_needs_three_unclean_exits_within_five_minutes():
    feed = Feed(engine_with("rules: [{name: loop, kind: engine-crash-loop, count: 3, window_s: 300}]"))
    assert feed(crashed("ml-retrain", T0)) == []
    assert feed(crashed("ml-retrain", T0 + timedelta(seconds=100))) == []
    assert (
        feed(crashed("ml-retrain", T0 + timedelta(seconds=400))) == []
    )  # the first two have left the window
    assert feed(crashed("ml-retrain", T0 + timedelta(seconds=450))) == []
    fired = feed(crashed("ml-retrain", T0 + timedelta(seconds=500)))
    assert kinds(fired) == [("alert_fired", "ml-retrain")]
    assert "signal SIGKILL" in msgspec.json.decode(fired[0].data)["detail"]
    assert feed(crashed("ml-retrain", T0 + timedelta(seconds=510))) == []  # open: no second alert
    assert feed.tick(T0 + timedelta(seconds=800)) == []  # 290 s since the last: not quiet yet
    assert kinds(feed.tick(T0 + timedelta(seconds=811))) == [("alert_resolved", "ml-retrain")]


def test_engine_recovered_counts_only_where_no_launcher_reported_the_crash():
    feed = Feed(engine_with("rules: [{name: loop, kind: engine-crash-loop, count: 3, window_s: 300}]"))

    def recovered(at: datetime, downtime: float) -> Envelope:
        data = {"previous_boot_id": "b", "last_heartbeat": at.isoformat(), "downtime_s": downtime}
        return event("engine_recovered", "deploy", data, actor="system", at=at)

    # under `aoc up`: each crash is reported twice (launcher, then the engine): counts once
    for i in range(2):
        at = T0 + timedelta(seconds=60 * i)
        assert feed(crashed("deploy", at)) == []
        assert feed(recovered(at + timedelta(seconds=2), 2.0)) == []
    # under compose there is no launcher: the engine's own report counts
    assert kinds(feed(recovered(T0 + timedelta(seconds=200), 5.0))) == [("alert_fired", "deploy")]


def test_after_hours_stop_in_the_configured_time_zone():
    feed = Feed(
        engine_with(
            """rules:
  - name: hours
    kind: after-hours-stop
    timezone: America/New_York
    business_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00"}
"""
        )
    )
    # 10:00 UTC = 05:00 in New York: after hours
    fired = feed(event("command_handled", "soc-cycle", command("stop", "soc-cycle", reason="x")))
    assert kinds(fired) == [("alert_fired", "soc-cycle")]
    assert "Wed 05:00 America/New_York" in msgspec.json.decode(fired[0].data)["detail"]
    # 15:00 UTC = 10:00 in New York, a Wednesday: business hours
    noon = T0 + timedelta(hours=5)
    assert feed(event("command_handled", "deploy", command("stop", "deploy"), at=noon)) == []
    # Saturday at 10:00 New York time
    saturday = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
    assert kinds(feed(event("command_handled", "deploy", command("stop", "deploy"), at=saturday))) == [
        ("alert_fired", "deploy")
    ]
    assert kinds(feed(event("lifecycle_changed", "soc-cycle", lifecycle("running")))) == [
        ("alert_resolved", "soc-cycle")
    ]


def test_rejected_burst_counts_folded_repeats_per_actor():
    feed = Feed(engine_with("rules: [{name: burst, kind: rejected-command-burst, count: 10, window_s: 60}]"))
    rejected = command("stop", "nope", "rejected")
    for i in range(4):
        assert (
            feed(event("command_handled", "gateway", rejected, actor="mallory", at=T0 + timedelta(seconds=i)))
            == []
        )
    assert (
        feed(event("command_handled", "gateway", rejected, actor="alice", at=T0 + timedelta(seconds=5))) == []
    )
    # one record standing for 5 more refusals: 4 + 6 = 10 for mallory
    folded = {**rejected, "repeats": 5}
    fired = feed(event("command_handled", "gateway", folded, actor="mallory", at=T0 + timedelta(seconds=6)))
    assert kinds(fired) == [("alert_fired", "mallory")]
    assert (
        feed(event("command_handled", "gateway", folded, actor="mallory", at=T0 + timedelta(seconds=7))) == []
    )
    assert kinds(feed.tick(T0 + timedelta(seconds=68))) == [("alert_resolved", "mallory")]


def test_soc_escalation_rate_with_hysteresis():
    feed = Feed(engine_with("rules: [{name: esc, kind: soc-escalation-rate, count: 4, window_s: 600}]"))
    at = [T0 + timedelta(seconds=10 * i) for i in range(4)]
    outs = [
        feed(event("escalated_to_human", "soc-cycle", {"alert_id": str(i)}, at=t)) for i, t in enumerate(at)
    ]
    assert [kinds(o) for o in outs] == [[], [], [], [("alert_fired", "soc-cycle")]]
    assert feed.tick(T0 + timedelta(seconds=605)) == []  # 3 left in the window: above half of 4
    assert kinds(feed.tick(T0 + timedelta(seconds=625))) == [("alert_resolved", "soc-cycle")]


def test_ids_are_stable_so_a_rebuilt_engine_publishes_nothing_twice():
    rules = "rules: [{name: ks, kind: kill-switch-used}]"
    trigger = event(
        "kill_switch_engaged", "gateway", msgspec.to_builtins(KillSwitchEngaged(succeeded=7, failed=0))
    )
    first = Feed(engine_with(rules))
    fired = first(trigger)
    # a restart: the replay sees the trigger and then the alert it already published
    engine = AlertEngine(parse_rules(rules).rules)
    engine.on_event(1, T0, trigger)
    engine.on_event(2, T0, fired[0])
    engine.finish_replay(T0 + timedelta(minutes=1))
    assert engine.take_outbox() == []
    assert [alert.id for alert in engine.open_alerts()] == [fired[0].id]
    # derived but never published (the service died first): published at the end of the replay
    engine = AlertEngine(parse_rules(rules).rules)
    engine.on_event(1, T0, trigger)
    engine.finish_replay(T0 + timedelta(minutes=1))
    assert [e.id for e in engine.take_outbox()] == [fired[0].id]


# --- the service over a real stream --------------------------------------------------------


@contextlib.asynccontextmanager
async def service(settings):
    siem = SiemService(settings)
    await siem.open()
    try:
        yield siem
    finally:
        await siem.close()


def alert_events(tap: EventTap, type_: str) -> list[Envelope]:
    return tap.matching(lambda e: e.type == type_ and e.source == SIEM)


async def test_the_service_fires_on_the_stream_and_a_restart_does_not_fire_again(settings, nc, tap):
    settings = siem_settings(settings, [])
    publisher = EventPublisher(nc.jetstream())
    async with service(settings) as siem:
        await until(lambda: siem.follower.ready.is_set(), what="rules ready")
        await publisher.publish(
            event(
                "kill_switch_engaged",
                "gateway",
                {"reason": "drill", "succeeded": 7, "failed": 0},
                at=datetime.now(UTC),
            )
        )
        fired = await tap.wait_for(lambda e: e.type == "alert_fired", timeout=10)
        assert fired.source == SIEM and fired.system == SIEM
        assert msgspec.json.decode(fired.data)["rule"] == "kill-switch-used"
    async with service(settings) as siem:  # restarted: the replay finds the alert in the stream
        await until(lambda: siem.follower.ready.is_set(), what="rules ready again")
        assert [alert.id for alert in siem.engine.open_alerts()] == [fired.id]
        await publisher.publish(
            event("command_handled", "deploy", command("stop", "deploy", origin="all"), at=datetime.now(UTC))
        )  # the same engagement: deduplicated by rule and target
        await until(lambda: siem.follower.applied_seq >= tap.events[-1][0], what="the service caught up")
        await siem.write_status()
    kill_switch = [
        e
        for e in alert_events(tap, "alert_fired")
        if msgspec.json.decode(e.data)["rule"] == "kill-switch-used"
    ]
    assert [e.id for e in kill_switch] == [fired.id]


async def test_alerts_derived_while_the_service_was_down_are_published_once(settings, nc, tap):
    settings = siem_settings(settings, [])
    await ensure_all(nc.jetstream(), settings)
    publisher = EventPublisher(nc.jetstream())
    now = datetime.now(UTC)
    for i in range(3):  # three crashes of one engine, with no SIEM service running
        await publisher.publish(crashed("soc-cycle", now + timedelta(seconds=i)))
    for _ in range(2):
        async with service(settings) as siem:
            await until(lambda: siem.follower.ready.is_set(), what="rules ready")
            await tap.wait_for(lambda e: e.type == "alert_fired", timeout=10)
            await until(lambda: siem.follower.applied_seq >= tap.events[-1][0], what="the service caught up")
    fired = alert_events(tap, "alert_fired")
    assert len(fired) == 1 and msgspec.json.decode(fired[0].data)["target"] == "soc-cycle"


async def test_bad_sinks_do_not_stop_the_rules_and_are_reported(settings, nc, tap):
    settings = settings.model_copy(update={"siem_sinks": '[{"name": "x", "kind": "ftp", "url": "ftp://h"}]'})
    publisher = EventPublisher(nc.jetstream())
    async with service(settings) as siem:
        await until(lambda: siem.follower.ready.is_set(), what="rules ready")
        assert siem.runners == []
        status = siem.status()
        assert "AOC_SIEM_SINKS[0] ('x').kind" in status.sinks_error and not status.rules_error
        await publisher.publish(
            event(
                "kill_switch_engaged",
                "gateway",
                {"reason": "", "succeeded": 1, "failed": 0},
                at=datetime.now(UTC),
            )
        )
        await tap.wait_for(lambda e: e.type == "alert_fired", timeout=10)


async def test_a_bad_rules_file_does_not_stop_the_export(settings, nc, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: x\n    kind: engine-unreachable\n    for_s: -5\n")
    settings = siem_settings(settings, [], siem_rules_file=rules)
    async with service(settings) as siem:
        status = siem.status()
        assert f"{rules}:4: rules[0].for_s" in status.rules_error and status.rules == []
