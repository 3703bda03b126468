"""The read models as pure views: the indexed queries answer exactly what a scan of the
rows answers (also across the window's trimming), the lease rules of the systems view,
and snapshots that restore a view equal to the one that was cut, even when the view
moved on while the cut was being encoded."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from contracts import soc
from contracts.events import encode
from gateway.readmodels.activity import ActivityView
from gateway.readmodels.base import decode_feed_event
from gateway.readmodels.index import matches_at_word_start, word_set
from gateway.readmodels.jobs import JobsView
from gateway.readmodels.soc import AlertsView, ModelsView
from gateway.readmodels.systems import SystemsView
from tests.gateway.events import annotation, feed, heartbeat, lifecycle, mixed_events


def test_text_matches_where_a_word_begins():
    text = "deploy rolled back: redeploy of inc-4711 — été, naïve p95 300 ms"
    assert matches_at_word_start(text, "dep")
    assert matches_at_word_start(text, "redep")
    assert not matches_at_word_start(text, "ploy")  # inside a word: not a match
    assert matches_at_word_start(text, "4711")  # after a hyphen a word begins
    assert matches_at_word_start(text, "rolled back: red")
    assert matches_at_word_start(text, "été, na")
    assert matches_at_word_start(text, "-4711")  # a needle starting with punctuation matches anywhere
    assert not matches_at_word_start(text, "xylophone")
    assert word_set("Été naïve INC-4711".lower()) == {"été".encode(), "naïve".encode(), b"inc", b"4711"}
    assert word_set("a_b c-d") == {b"a_b", b"c", b"d"}


def scan_activity(view: ActivityView, **f) -> list[int]:
    """What the activity query must answer, by brute force over every row."""
    needle = f["text"].lower() if f.get("text") else None
    end = f.get("before") or 10**12
    found = []
    for row in reversed(view.rows):
        if row.seq >= end:
            continue
        if f.get("since") and row.time < f["since"]:
            break
        if (
            (f.get("system") is None or row.system == f["system"])
            and (f.get("result") is None or row.result == f["result"])
            and (f.get("actor") is None or row.actor == f["actor"])
            and (f.get("until") is None or row.time <= f["until"])
            and (
                needle is None
                or matches_at_word_start(row.detail.lower(), needle)
                or matches_at_word_start(row.action.lower(), needle)
            )
            and (f.get("tag") is None or f["tag"] in view.tags_of(row.id))
        ):
            found.append(row.seq)
            if len(found) >= f["limit"]:
                break
    return found


QUERIES = [
    {},
    {"system": "deploy"},
    {"system": "deploy", "text": "xylophone"},
    {"system": "deploy", "text": "no such words"},
    {"text": "dep"},
    {"text": "redeploy"},
    {"text": "ploy"},
    {"text": "inc-4711"},
    {"text": "reason: roll"},
    {"text": "été"},
    {"text": "—"},
    {"text": " items"},
    {"actor": "alice@soc", "result": "success"},
    {"result": "failed", "system": "heal-check"},
    {"tag": "incident"},
    {"tag": "incident", "text": "scan"},
    {"since": "2026-11-01T01:38:00Z"},
    {"since": "2026-11-01T01:37:00Z", "system": "deploy"},
    {"until": "2026-11-01T01:36:00Z", "system": "soc-cycle"},
]


def activity_with_history(count: int, window: int) -> tuple[ActivityView, list]:
    pairs = mixed_events(count)
    envelopes = [envelope for _, envelope in pairs]
    rng = random.Random(5)
    for _ in range(count // 50):  # operators tag older and newer entries
        at = rng.randrange(len(envelopes))
        _, note = annotation(envelopes[at], at + 1, [rng.choice(["incident", "noise"])], "seen")
        envelopes.append(note)
    view = ActivityView(window=window)
    feed(view, envelopes)
    return view, envelopes


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_indexed_activity_pages_equal_a_scan_of_every_row_across_trims(limit):
    view, _ = activity_with_history(6000, window=1000)
    assert 1000 <= len(view.rows) <= 1100 and view.base > 0  # trimmed several times
    for query in QUERIES:
        for before in (None, view.rows[-1].seq - 3, view.rows[len(view.rows) // 2].seq):
            wanted = scan_activity(view, limit=limit, before=before, **query)
            got = [row.seq for row in view.activity(limit=limit, before=before, **query)]
            assert got == wanted, (query, before)


def test_indexes_follow_the_window_trimming():
    view, _ = activity_with_history(6000, window=1000)
    lowest = view.base
    for postings in (view.fields, view.words, view.tags):
        for found in postings.lists.values():
            assert found and found[0] >= lowest and list(found) == sorted(found)
    # every word listed still occurs in a row in memory, and every prefix group is exact
    listed = set(view.words.lists)
    present = set()
    for row in view.rows:
        present |= word_set(f"{row.action} {row.detail}".lower())
    assert listed == present
    assert set().union(*view.words.by_prefix.values()) == listed


def scan_alerts(view: AlertsView, **f) -> list[int]:
    needle = f.get("text")
    found = []
    for row in reversed(view.rows):
        if row.superseded or (f.get("before") and row.pos >= f["before"]):
            continue
        d, alert = row.decision, row.decision.alert
        haystack = (alert.id, alert.title, alert.host, alert.user, alert.src_ip or "", alert.dst_ip or "")
        if (
            (f.get("status") is None or row.status == f["status"])
            and (f.get("decision") is None or d.decision == f["decision"])
            and (f.get("severity") is None or alert.severity == f["severity"])
            and (f.get("host") is None or alert.host == f["host"])
            and (f.get("user") is None or alert.user == f["user"])
            and (f.get("technique") is None or any(t.startswith(f["technique"]) for t in alert.techniques))
            and (f.get("min_threat") is None or d.scores.threat >= f["min_threat"])
            and (needle is None or any(matches_at_word_start(v.lower(), needle) for v in haystack))
        ):
            found.append(row.pos)
            if len(found) >= f["limit"]:
                break
    return found


def alerts_view() -> AlertsView:
    view = AlertsView(window=500)
    envelopes = [envelope for _, envelope in mixed_events(4000, seed=11)]
    feed(view, envelopes)
    rng = random.Random(2)
    for n, row in enumerate(list(view.by_id.values())[::7]):
        verdict = soc.new_feedback(row.decision.alert, rng.choice(["true_positive", "false_positive"]), "ann")
        view.apply_feedback(n + 1, msgspec.json.encode(verdict))
    return view


def test_indexed_alert_pages_equal_a_scan_with_changing_statuses():
    view = alerts_view()
    assert view.base > 0 and {"reviewed", "contained"} <= set(view.stats()["by_status"])
    queries = [
        {},
        {"status": "reviewed"},
        {"status": "escalated", "severity": "high"},
        {"decision": "contain", "host": "host-3"},
        {"technique": "T1110"},
        {"technique": "T1059.001", "user": "bob"},
        {"min_threat": 72.5},
        {"text": "brute"},
        {"text": "10.0.2"},
        {"text": "alert-3"},
        {"text": "force on vpn"},
        {"text": "orce"},
    ]
    for query, limit in itertools.product(queries, (1, 25)):
        for before in (None, view.rows[len(view.rows) // 2].pos):
            wanted = scan_alerts(view, limit=limit, before=before, **query)
            got = [row.pos for row in view.query(limit=limit, before=before, **query)]
            assert got == wanted, (query, before)
    stats = view.stats()
    assert sum(stats["by_status"].values()) == stats["alerts_in_view"] == view.live


def test_lifecycle_from_a_deposed_epoch_is_ignored_and_epoch_zero_is_not():
    view = SystemsView()
    feed(
        view,
        [
            lifecycle("deploy", "running", epoch=5, instance="deploy-1"),
            lifecycle("deploy", "stopped", epoch=7, instance="deploy-2"),  # a takeover, then a stop
            lifecycle("deploy", "running", epoch=5, instance="deploy-1"),  # the deposed one, late
            lifecycle("soc-cycle", "stopped", epoch=3),
            lifecycle("soc-cycle", "running", epoch=0),  # no lease (a standby, lease vacant)
        ],
    )
    assert (view.lifecycle["deploy"].state, view.lifecycle["deploy"].instance) == ("stopped", "deploy-2")
    assert view.ignored == 1 and view.epochs["deploy"] == 7
    assert view.lifecycle["soc-cycle"].state == "running"


def test_heartbeats_of_a_deposed_active_are_ignored_and_instances_are_listed():
    view = SystemsView()
    now = datetime.now(UTC)

    def beat(b, at=now):
        view.apply_heartbeat(0, encode(b), at)

    feed(view, [lifecycle("deploy", "running", epoch=4, instance="deploy-2")])
    beat(heartbeat("deploy", instance="deploy-2", epoch=4, seq=3))
    beat(heartbeat("deploy", instance="deploy-1", epoch=2, seq=9, state="running"))  # deposed, still beating
    beat(heartbeat("deploy", instance="deploy-3", role="standby", state="stopped"))
    beat(heartbeat("deploy", instance="old", role="standby"), now - timedelta(seconds=30))  # long gone
    assert view.heartbeats["deploy"].beat.instance == "deploy-2" and view.ignored_beats == 1
    listed = view.instances_of("deploy", now, heartbeat_timeout=5.0)
    assert [(i["id"], i["role"]) for i in listed] == [("deploy-2", "active"), ("deploy-3", "standby")]
    assert listed[0]["pid"] == 4242 and listed[0]["host"] == "test-host" and listed[0]["started"]


def restore_like(view, fresh):
    fresh.restore(iter(list(type(view).encode(view.cut()))))
    return fresh


def test_snapshots_restore_every_view_exactly():
    envelopes = [envelope for _, envelope in mixed_events(3000, seed=9)]
    activity, alerts, systems, models, jobs = (
        ActivityView(window=1000),
        AlertsView(window=400),
        SystemsView(),
        ModelsView(),
        JobsView(),
    )
    for view in (activity, alerts, systems, models, jobs):
        feed(view, envelopes)
    again = restore_like(activity, ActivityView(window=1000))
    for query in QUERIES:
        assert [r.seq for r in again.activity(limit=50, **query)] == [
            r.seq for r in activity.activity(limit=50, **query)
        ]
    assert again.rows == activity.rows and again.annotations == activity.annotations
    assert again.words.lists == activity.words.lists and again.words.by_prefix == activity.words.by_prefix
    restored = restore_like(alerts, AlertsView(window=400))
    assert [r.alert_view() for r in restored.query(limit=1000)] == [
        r.alert_view() for r in alerts.query(limit=1000)
    ]
    assert restored.stats() == alerts.stats()
    assert restore_like(systems, SystemsView()).lifecycle == systems.lifecycle
    assert restore_like(models, ModelsView()).view() == models.view()
    assert [j.view() for j in restore_like(jobs, JobsView()).query(limit=100)] == [
        j.view() for j in jobs.query(limit=100)
    ]
    with pytest.raises(ValueError, match="window"):
        restore_like(activity, ActivityView(window=2000))


def test_a_cut_is_consistent_while_the_view_moves_on():
    """The cut is taken between two events; encoding it later (in a thread, while more
    events arrive, the window trims and tags change) still gives the view as it was."""
    envelopes = [envelope for _, envelope in mixed_events(4000, seed=4)]
    half = 2500
    view, reference = ActivityView(window=1000), ActivityView(window=1000)
    feed(view, envelopes[:half])
    feed(reference, envelopes[:half])
    alerts, alerts_reference = AlertsView(window=300), AlertsView(window=300)
    feed(alerts, envelopes[:half])
    feed(alerts_reference, envelopes[:half])
    cut, alerts_cut = view.cut(), alerts.cut()
    feed(view, envelopes[half:], first_seq=half + 1)  # trims, new words, new rows
    _, note = annotation(envelopes[half - 1], half, ["late"])
    feed(view, [note], first_seq=len(envelopes) + 1)
    feed(alerts, envelopes[half:], first_seq=half + 1)
    for row in list(alerts.by_id.values())[:50]:  # statuses change under the cut
        alerts.apply_feedback(
            row.no + 1, msgspec.json.encode(soc.new_feedback(row.decision.alert, "benign", "a"))
        )
    restored = ActivityView(window=1000)
    restored.restore(iter(list(ActivityView.encode(cut))))
    assert restored.rows == reference.rows and restored.words.lists == reference.words.lists
    assert restored.tags.lists == reference.tags.lists and restored.applied_seq == half
    back = AlertsView(window=300)
    back.restore(iter(list(AlertsView.encode(alerts_cut))))
    assert [r.alert_view() for r in back.query(limit=500)] == [
        r.alert_view() for r in alerts_reference.query(limit=500)
    ]
    assert back.statuses.lists == alerts_reference.statuses.lists


def test_an_undecodable_event_is_counted_not_fatal():
    view = ActivityView(window=1000)
    good = encode(lifecycle("deploy", "running"))
    decoded = decode_feed_event(good)
    view.apply(1, decoded, good)
    with pytest.raises(msgspec.DecodeError):
        decode_feed_event(b"{not json")
    assert len(view.rows) == 1
