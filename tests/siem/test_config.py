"""AOC_SIEM_SINKS and the rules file: clear errors for bad input, nothing started from it,
and the other half of the service unaffected. Plus the wire formats' edge cases."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from contracts.events import ActivityRecorded, Summary, new_event
from contracts.siem import SinkConfigError, parse_sinks
from services.siem.formats import HecFormatter, Record, SyslogFormatter, WebhookFormatter, sign
from services.siem.rules import DEFAULT_RULES_FILE, RulesError, load_rules, parse_rules

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "name": "soc",
    "kind": "hec",
    "url": "https://splunk.example:8088/services/collector/event",
    "token": "t",
}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "is not JSON"),
        ('{"name": "x"}', "must be a JSON list"),
        ("[5]", "AOC_SIEM_SINKS[0]: must be an object"),
        (json.dumps([{**GOOD, "kind": "splunk"}]), "AOC_SIEM_SINKS[0] ('soc').kind"),
        (json.dumps([{**GOOD, "tokne": "x"}]), "tokne: Extra inputs are not permitted"),
        (
            json.dumps([{k: v for k, v in GOOD.items() if k != "token"}]),
            "needs exactly one of token or token_file",
        ),
        (
            json.dumps([{**GOOD, "url": "http://splunk.example/x"}]),
            "must be https:// (http:// needs allow_http",
        ),
        (json.dumps([{**GOOD, "url": "https://user:pw@splunk.example/x"}]), "credentials in the URL"),
        (json.dumps([{"name": "s", "kind": "syslog", "url": "https://x:1"}]), "tcp://host:port, tls://"),
        (json.dumps([{"name": "s", "kind": "syslog", "url": "tcp://x:99999"}]), "invalid port"),
        (
            json.dumps([{"name": "s", "kind": "webhook", "url": "https://x/h"}]),
            "one of secret or secret_file",
        ),
        (json.dumps([{**GOOD, "name": "Bad Name"}]), "name: String should match pattern"),
        (json.dumps([GOOD, GOOD]), "sink name 'soc' is used more than once"),
        (json.dumps([{**GOOD, "batch": 0}]), "batch: Input should be greater than or equal to 1"),
        (json.dumps([{"name": "s", "kind": "syslog", "url": "tcp://x:1", "sd_id": "a=b"}]), "sd_id"),
    ],
)
def test_bad_sink_config_is_refused_with_a_clear_message(text, says):
    with pytest.raises(SinkConfigError) as refused:
        parse_sinks(text)
    assert says in str(refused.value)


def test_a_secret_is_never_echoed_in_an_error():
    text = json.dumps([{**GOOD, "token": "super-secret-token-value", "extra": 1}])
    with pytest.raises(SinkConfigError) as refused:
        parse_sinks(text)
    assert "super-secret-token-value" not in str(refused.value)


def test_good_sinks_parse_with_defaults():
    sinks = parse_sinks(
        json.dumps(
            [
                GOOD,
                {"name": "rs", "kind": "syslog", "url": "tls://syslog.example"},
                {"name": "u", "kind": "syslog", "url": "udp://h"},
            ]
        )
    )
    assert [(s.name, s.scheme, s.port) for s in sinks] == [
        ("soc", "https", 8088),
        ("rs", "tls", 6514),
        ("u", "udp", 514),
    ]
    assert sinks[0].start == "new" and sinks[0].batch == 200 and sinks[0].verify
    assert parse_sinks(None) == [] and parse_sinks("  ") == []


def test_check_cli_reports_problems_and_exits_non_zero(tmp_path):
    bad_rules = tmp_path / "rules.yaml"
    bad_rules.write_text("rules:\n  - name: x\n    kind: engine-crash-loop\n    count: -1\n")
    env = {"PATH": "/usr/bin:/bin", "AOC_SIEM_SINKS": "[{}]", "AOC_SIEM_RULES_FILE": str(bad_rules)}
    run = subprocess.run(
        [sys.executable, "-m", "services.siem", "--check"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "AOC_SIEM_SINKS[0].name: Field required" in run.stderr
    assert f"{bad_rules}:4: rules[0].count: Input should be greater than or equal to 1" in run.stderr
    good = subprocess.run(
        [sys.executable, "-m", "services.siem", "--check"],
        env={"PATH": "/usr/bin:/bin", "AOC_SIEM_SINKS": json.dumps([GOOD])},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0 and "1 sink(s): soc (hec)" in good.stdout and "6 rule(s)" in good.stdout


# --- rules ----------------------------------------------------------------------------------


def test_the_built_in_rules_load():
    rules, path = load_rules(None)
    assert path == DEFAULT_RULES_FILE
    assert {rule.kind for rule in rules.rules} == {
        "kill-switch-used",
        "engine-unreachable",
        "engine-crash-loop",
        "after-hours-stop",
        "rejected-command-burst",
        "soc-escalation-rate",
    }


def test_rule_errors_carry_line_numbers():
    text = """rules:
  - name: crash
    kind: engine-crash-loop
    count: 0
    windw_s: 3
  - name: b
    kind: nope
  - name: hours
    kind: after-hours-stop
    timezone: Mars/Base
    business_hours: {start: "18:00", end: "08:00"}
"""
    with pytest.raises(RulesError) as refused:
        parse_rules(text, "r.yaml")
    lines = str(refused.value).splitlines()
    assert "r.yaml:4: rules[0].count: Input should be greater than or equal to 1" in lines
    assert "r.yaml:5: rules[0].windw_s: Extra inputs are not permitted" in lines
    assert any(line.startswith("r.yaml:6: rules[1]") and "'nope'" in line for line in lines)
    assert (
        "r.yaml:10: rules[2].timezone: unknown time zone 'Mars/Base' (an IANA name like Europe/Berlin)"
        in lines
    )
    assert any(
        line.startswith("r.yaml:11: rules[2].business_hours: end must be after start") for line in lines
    )


def test_yaml_syntax_errors_and_duplicates():
    with pytest.raises(RulesError, match=r"y.yaml:2: not valid YAML"):
        parse_rules("rules: [\n  {name: a", "y.yaml")
    with pytest.raises(RulesError, match="rule names must be unique: a"):
        parse_rules("rules:\n - {name: a, kind: kill-switch-used}\n - {name: a, kind: engine-unreachable}\n")
    with pytest.raises(RulesError, match="the file must be a mapping"):
        parse_rules("- 1\n")


# --- wire formats ---------------------------------------------------------------------------


def record(**overrides) -> Record:
    event = new_event(
        system="gateway",
        payload=ActivityRecorded(details={"big": "x" * overrides.pop("size", 10)}),
        summary=Summary(action="a", detail="d", result=overrides.pop("result", "success")),
        actor=overrides.pop("actor", "alice"),
    )
    event.time = datetime(2026, 12, 2, 3, 4, 5, 678901, tzinfo=UTC)
    return Record(seq=42, raw=msgspec.json.encode(event), event=event)


def syslog(**config):
    return SyslogFormatter(
        parse_sinks(json.dumps([{"name": "s", "kind": "syslog", "url": "tcp://h:1", **config}]))[0]
    )


def test_syslog_message_layout_and_escaping():
    message = syslog(hostname="aoc1").message(record(actor='ev"il] \\ \n name', result="rejected"))
    header, _, body = message.partition(b"\xef\xbb\xbf")
    assert header.startswith(b"<108>1 2026-12-02T03:04:05.678901Z aoc1 aoc - activity_recorded [aoc@32473 ")
    assert b'actor="ev\\"il\\] \\\\   name"' in header  # '"', ']' and '\' escaped; no newline
    assert json.loads(body)["id"]


def test_octet_counting_frames_by_byte_length():
    formatter = syslog()
    frame = formatter.octet_counted(record(actor="é" * 5))
    length, _, message = frame.partition(b" ")
    assert int(length) == len(message) == len(formatter.message(record(actor="é" * 5)))


def test_an_oversized_event_is_summarised_not_cut():
    formatter = syslog(max_message_bytes=2048)
    message = formatter.message(record(size=10_000))
    assert len(message) <= 2048
    short = json.loads(message.partition(b"\xef\xbb\xbf")[2])
    assert short["truncated"] is True and short["original_bytes"] > 10_000


def test_hec_and_webhook_bodies():
    config = parse_sinks(json.dumps([{**GOOD, "index": "main"}]))[0]
    body = HecFormatter(config).body([record(), record()])
    first = json.loads(body.split(b"\n")[0])
    assert first["index"] == "main" and first["time"] == pytest.approx(
        datetime(2026, 12, 2, 3, 4, 5, 678901, tzinfo=UTC).timestamp()
    )
    webhook = parse_sinks(
        json.dumps([{"name": "w", "kind": "webhook", "url": "https://h/x", "secret": "s"}])
    )[0]
    formatter = WebhookFormatter(webhook)
    body = formatter.body([record()])
    headers = formatter.headers(b"s", [record()], body, datetime(2026, 1, 1, tzinfo=UTC))
    assert headers["X-AOC-Signature"] == sign(b"s", headers["X-AOC-Timestamp"], body)
    assert json.loads(body)["delivery"] == headers["X-AOC-Delivery"] == "w-42-42"
