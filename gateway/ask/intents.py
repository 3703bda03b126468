"""The deterministic half of POST /api/v1/ask: a small intent parser over the questions
operators ask most, answered from the gateway's read models, with the rows it used.

No model, no network: it works offline and gives the same answer to the same question
over the same state. An LLM (gateway/ask/llm.py) may reword the answer, but it only
ever sees the rows chosen here.

Intents (see docs/operator-tools.md for examples):
- ``engines_in_state``  which engines are stopped / running / unreachable?
- ``who_changed``       who stopped deploy and why? (stop, start, restart, trigger)
- ``system_history``    what happened to soc-cycle in the last hour?
- ``failures``          what failed today?
- ``alerts_count``      how many alerts were escalated today?
- ``jobs``              which jobs are running?
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.systems import SYSTEMS
from gateway import views
from gateway.isotime import iso
from gateway.readmodels.activity import ActivityRow, ActivityView
from gateway.readmodels.systems import SystemsView

MAX_ROWS = 50  # rows returned (and shown to an LLM) per answer
HISTORY_DEFAULT = timedelta(hours=1)

ALIASES = {
    "integrity-scan": ("integrity", "integrity monitor", "integrity scan"),
    "deploy": ("deploy", "deployer", "deployment", "deployments", "auto-deploy"),
    "soc-cycle": ("soc", "soc cycle", "soc engine", "triage"),
    "heal-check": ("heal", "healer", "healing", "self-healing", "heal check"),
    "ml-retrain": ("ml", "training", "retrain", "retraining", "ml pipeline"),
    "advisory-refresh": ("advisory", "advisories", "threat advisory", "threat intel"),
    "frontend-factory": ("factory", "frontend", "frontend factory"),
}
STATE_WORDS = {
    "stopped": "stopped",
    "halted": "stopped",
    "down": "unreachable",
    "unreachable": "unreachable",
    "dead": "unreachable",
    "offline": "unreachable",
    "running": "running",
    "up": "running",
    "alive": "running",
}
VERB_WORDS = {
    "stopped": "stop",
    "stop": "stop",
    "halted": "stop",
    "killed": "stop",
    "paused": "stop",
    "started": "start",
    "start": "start",
    "resumed": "start",
    "restarted": "restart",
    "restart": "restart",
    "rebooted": "restart",
    "triggered": "trigger",
    "trigger": "trigger",
    "ran": "trigger",
}
ALERT_STATUS_WORDS = {
    "escalated to human": ("escalated_to_human", None),
    "handed to": ("escalated_to_human", None),
    "escalated": (None, "escalate"),
    "auto-resolved": (None, "auto_resolve"),
    "auto resolved": (None, "auto_resolve"),
    "resolved": (None, "auto_resolve"),
    "contained": ("contained", None),
    "reviewed": ("reviewed", None),
    "triaged": (None, None),
    "processed": (None, None),
}
_UNITS = {"minute": 60, "min": 60, "hour": 3600, "hr": 3600, "day": 86_400, "week": 604_800}
_REASON = re.compile(r"\(reason: (.*)\)$", re.S)


@dataclass
class Sources:
    """What the parser may read: the gateway's read models, passed in (no I/O here)."""

    activity: ActivityView
    systems: SystemsView
    heartbeat_timeout: float
    alerts: Any = None  # gateway.readmodels.soc.AlertsView
    jobs: Any = None  # gateway.readmodels.jobs.JobsView
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Answer:
    intent: str
    answer: str
    rows: list[dict[str, Any]]
    sources: list[str]
    window: dict[str, str | None] | None = None
    total: int | None = None  # rows matching, when more than shown

    def as_dict(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "answer": self.answer,
            "rows": self.rows,
            "sources": self.sources,
            "window": self.window,
            "total": self.total if self.total is not None else len(self.rows),
        }


# --- reading the question ----------------------------------------------------------------


def normalize(question: str) -> str:
    return re.sub(r"\s+", " ", question.strip().lower().replace("?", " ").replace("\u2019", "'")).strip()


def find_system(text: str) -> str | None:
    for slug in sorted(SYSTEMS, key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(slug)}(?![\w-])", text):
            return slug
    for slug, names in ALIASES.items():
        for name in sorted(names, key=len, reverse=True):
            if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text):
                return slug
    return None


def find_window(text: str, now: datetime) -> tuple[datetime | None, datetime | None, str | None]:
    """(since, until, label) for 'last hour', 'last 30 minutes', 'past 2 days', 'today', 'yesterday'."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if re.search(r"\byesterday\b", text):
        return midnight - timedelta(days=1), midnight, "yesterday"
    if re.search(r"\btoday\b|\bthis day\b", text):
        return midnight, None, "today"
    match = re.search(r"\b(?:last|past|previous)\s+(\d+)?\s*(minute|min|hour|hr|day|week)s?\b", text)
    if match:
        amount = int(match.group(1) or 1)
        seconds = amount * _UNITS[match.group(2)]
        unit = match.group(2).replace("min", "minute").replace("hr", "hour").replace("minuteute", "minute")
        return now - timedelta(seconds=seconds), None, f"last {amount} {unit}{'s' if amount != 1 else ''}"
    return None, None, None


def first_word(text: str, words: dict[str, Any]) -> Any:
    """The value of the earliest of ``words`` in ``text`` (whole words; phrases allowed)."""
    best: tuple[int, Any] | None = None
    for word, value in words.items():
        match = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), value)
    return None if best is None else best[1]


# --- answering ---------------------------------------------------------------------------


def answer(question: str, sources: Sources) -> Answer:
    text = normalize(question)
    system = find_system(text)
    since, until, label = find_window(text, sources.now)
    asks_who = bool(re.search(r"\bwho\b|\bwhy\b|\bby whom\b", text))
    verb = first_word(text, VERB_WORDS)

    if re.search(r"\bhow many\b|\bcount\b|\bnumber of\b", text) and re.search(r"\balerts?\b", text):
        return alerts_count(text, sources, since, until, label)
    if re.search(r"\bjobs?\b|\bruns?\b", text) and not asks_who and system is None:
        return jobs(text, sources)
    if asks_who and verb and system:
        return who_changed(system, verb, sources)
    if re.search(r"\b(fail(ed|ures?|ing)?|errors?|rejected|went wrong)\b", text) and not asks_who:
        return failures(system, sources, since, until, label)
    if system and re.search(
        r"\bhappen(ed|ing)?\b|\bactivity\b|\bhistory\b|\bdo(ing)?\b|\blog\b|\bdid\b", text
    ):
        return system_history(system, sources, since, until, label)
    state = first_word(text, STATE_WORDS)
    if state and re.search(r"\b(which|what|any|list|show|are|is)\b", text):
        return engines_in_state(state, sources)
    return Answer(
        "unknown",
        "I can answer questions like: which engines are stopped? who stopped deploy and why? "
        "what happened to soc-cycle in the last hour? what failed today? how many alerts were "
        "escalated today? which jobs are running?",
        [],
        [],
    )


def engines_in_state(state: str, sources: Sources) -> Answer:
    board = views.dashboard(sources.systems, heartbeat_timeout=sources.heartbeat_timeout, view_status={})
    rows = [
        {
            "system": slug,
            "label": info["label"],
            "state": info["state"],
            "desired": info["desired"],
            "last_run": info["last_run"],
        }
        for slug, info in board["systems"].items()
        if info["state"] == state
    ]
    names = ", ".join(row["system"] for row in rows)
    if not rows:
        text = f"No engine is {state}."
    else:
        text = f"{len(rows)} of {len(board['systems'])} engines are {state}: {names}."
    return Answer("engines_in_state", text, rows, ["dashboard"])


def _row(row: ActivityRow, activity: ActivityView) -> dict[str, Any]:
    entry = row.as_dict()
    tags = activity.tags_of(row.id)
    if tags:
        entry["tags"] = tags
    return entry


def who_changed(system: str, verb: str, sources: Sources) -> Answer:
    projection = sources.activity
    action = f"command_{verb}"
    for row in reversed(projection.rows):
        if row.system == system and row.action == action and row.result == "accepted":
            reason_match = _REASON.search(row.detail)
            reason = reason_match.group(1) if reason_match else ""
            past = {"stop": "stopped", "start": "started", "restart": "restarted", "trigger": "triggered"}[
                verb
            ]
            why = f'; reason given: "{reason}"' if reason else "; no reason was given"
            life = sources.systems.lifecycle.get(system)
            now_state = f" It is {life.state} now." if life else ""
            text = f"{row.actor} {past} {system} at {row.time}{why}.{now_state}"
            return Answer("who_changed", text, [_row(row, projection)], ["activity"])
    return Answer(
        "who_changed",
        f"No accepted {verb} of {system} in the gateway's log (it holds the newest "
        f"{len(projection.rows)} events; `aoc audit replay` reads older ones).",
        [],
        ["activity"],
    )


def _window(since: datetime | None, until: datetime | None, label: str | None) -> dict[str, str | None]:
    return {"since": iso(since), "until": iso(until), "label": label}


def system_history(
    system: str, sources: Sources, since: datetime | None, until: datetime | None, label: str | None
) -> Answer:
    if since is None:
        since, label = sources.now - HISTORY_DEFAULT, "last hour"
    projection = sources.activity
    rows = projection.activity(
        limit=100_000, system=system, since=iso(since), until=iso(until) if until else None
    )
    if not rows:
        return Answer(
            "system_history",
            f"Nothing was recorded for {system} in the {label}.",
            [],
            ["activity"],
            _window(since, until, label),
        )
    actions = Counter(row.action for row in rows)
    bad = [row for row in rows if row.result in ("failed", "rejected")]
    summary = ", ".join(f"{count}x {action}" for action, count in actions.most_common(6))
    text = f"{system} in the {label}: {len(rows)} events ({summary})."
    if bad:
        text += f" {len(bad)} failed or were rejected; the latest: {bad[0].action} — {bad[0].detail[:160]}."
    else:
        text += " Nothing failed."
    commands = [row for row in rows if row.action.startswith("command_") and row.result == "accepted"]
    if commands:
        text += " Commands: " + "; ".join(f"{r.action[8:]} by {r.actor}" for r in commands[:5]) + "."
    shown = [_row(row, projection) for row in rows[:MAX_ROWS]]
    return Answer("system_history", text, shown, ["activity"], _window(since, until, label), len(rows))


def failures(
    system: str | None, sources: Sources, since: datetime | None, until: datetime | None, label: str | None
) -> Answer:
    if since is None:
        since, label = sources.now - HISTORY_DEFAULT, "last hour"
    projection = sources.activity
    found = [
        row
        for result in ("failed", "rejected")
        for row in projection.activity(
            limit=100_000, system=system, result=result, since=iso(since), until=iso(until)
        )
    ]
    found.sort(key=lambda row: row.seq, reverse=True)
    scope = system or "any engine"
    if not found:
        text = f"Nothing failed or was rejected for {scope} in the {label}."
    else:
        by_system = Counter(row.system for row in found)
        spread = ", ".join(f"{name} {count}" for name, count in by_system.most_common())
        text = f"{len(found)} failed or rejected events for {scope} in the {label} ({spread}); latest: "
        text += f"{found[0].system} {found[0].action} — {found[0].detail[:160]}."
    shown = [_row(row, projection) for row in found[:MAX_ROWS]]
    return Answer("failures", text, shown, ["activity"], _window(since, until, label), len(found))


def alerts_count(
    text: str, sources: Sources, since: datetime | None, until: datetime | None, label: str | None
) -> Answer:
    if sources.alerts is None:
        return Answer("alerts_count", "The SOC view is not available.", [], [])
    status, decision = first_word(text, ALERT_STATUS_WORDS) or (None, None)
    matching = sources.alerts.query(
        limit=1_000_000,
        status=status,
        decision=decision,
        since=iso(since),
        until=iso(until),
    )
    what = (status or decision or "triaged").replace("_", " ")
    what = {"auto resolve": "auto-resolved", "escalate": "escalated"}.get(what, what)
    when = f" {label}" if label else " (all alerts in the gateway's view)"
    human = sum(1 for row in matching if row.escalated_to_human_at is not None)
    answer_text = f"{len(matching)} alerts were {what}{when}."
    if decision == "escalate":
        answer_text += f" {human} of them were handed to a human analyst."
    rows = [
        {
            key: view.get(key)
            for key in ("id", "title", "severity", "status", "decision", "decided_at", "host")
        }
        for view in (row.alert_view() for row in matching[:MAX_ROWS])
    ]
    return Answer("alerts_count", answer_text, rows, ["soc"], _window(since, until, label), len(matching))


def jobs(text: str, sources: Sources) -> Answer:
    if sources.jobs is None:
        return Answer("jobs", "The jobs view is not available.", [], [])
    status = (
        "failed" if "fail" in text else "succeeded" if re.search(r"succeed|finished|done", text) else None
    )
    status = status or ("running" if re.search(r"running|open|pending|active|in progress", text) else None)
    found = sources.jobs.query(limit=MAX_ROWS, status=status)
    rows = [job.view() for job in found]
    kind = status or "known"
    if not rows:
        return Answer("jobs", f"No {kind} jobs.", [], ["jobs"])
    listed = "; ".join(f"{r['system']} ({r['status']}, by {r['actor']})" for r in rows[:5])
    return Answer("jobs", f"{len(rows)} {kind} jobs: {listed}.", rows, ["jobs"])
