"""Real products' alerts (tests/soc/samples, each with its origin in README.md) mapped
onto the Alert contract: detection, every mapped field, each format's severity table,
NDJSON and mixed good/bad batches, the bounded `raw`, and AOC's own strict shape
staying as strict as before."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from contracts import soc
from contracts.soc import formats
from contracts.soc.formats import ecs, ocsf, suricata, wazuh
from contracts.soc.formats.common import bounded_raw, get, parse_time

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / name).read_text().splitlines() if line.strip()]


def only(body: bytes, fmt: str | None = None) -> soc.Alert:
    parsed = soc.parse_alerts(body, fmt)
    assert not parsed.rejected, parsed.rejected
    [alert] = parsed.alerts
    return alert


# --- each format, field by field ------------------------------------------------------


def test_suricata_eve_alert_with_ids_metadata():
    alert = only(sample_bytes("suricata-eve/beats-eve-metadata.ndjson"), "suricata-eve")
    assert alert.source == "suricata"
    assert alert.title == "GPL ATTACK_RESPONSE id check returned root"
    assert alert.rule_id == "1:2100498:7" and alert.description == "Potentially Bad Traffic"
    assert alert.severity == "medium"  # alert.severity 2
    assert (alert.src_ip, alert.dst_ip, alert.domain) == ("81.2.69.143", "10.31.64.240", "testmynids.org")
    assert alert.techniques == ["T1190"] and alert.cves == ["CVE-2019-91325"]  # t1190 / 2019-91325
    assert alert.time == datetime(2021, 1, 27, 0, 28, 11, 488362, tzinfo=UTC)  # +0100, no colon
    assert alert.raw["flow_id"] == 1805461738637437  # the original, extra fields and all
    assert alert.id.startswith("suricata-")


def test_suricata_id_is_the_records_digest_so_a_resent_line_is_the_same_alert():
    body = sample_bytes("suricata-eve/beats-eve-alerts.ndjson")
    first, again = soc.parse_alerts(body), soc.parse_alerts(body)
    assert [a.id for a in first.alerts] == [a.id for a in again.alerts]
    assert len({a.id for a in first.alerts}) == 3  # three different events, three ids


def test_wazuh_alert_from_alerts_json():
    alert = only(sample_bytes("wazuh/integratord-sshd-5712.json"), "wazuh")
    assert alert.id == "1652272159.1549653" and alert.source == "wazuh"
    assert alert.title == "sshd: brute force trying to get access to the system. Non existent user."
    assert alert.rule_id == "5712" and alert.severity == "medium"  # level 10
    assert alert.host == "localhost.localdomain" and alert.user == "paco"
    assert alert.src_ip == "172.17.1.1" and alert.techniques == ["T1110"]
    assert alert.count == 8  # rule.frequency: the events this correlation rule folded
    assert alert.description.startswith("May 11 12:29:18 localhost sshd[17584]")
    assert alert.time == datetime(2022, 5, 11, 12, 29, 19, 905000, tzinfo=UTC)


def test_wazuh_alert_as_the_dashboard_shows_it():
    alert = only(sample_bytes("wazuh/docs-mitre-sshd-100003.json"))
    assert (alert.id, alert.rule_id, alert.host, alert.user) == (
        "1684752043.76892",
        "100003",
        "Ubuntu-22",
        "attacker",
    )
    assert alert.src_ip == "192.168.121.127" and alert.raw["_id"] == "_H4MQ4gBagiVP1CbE_oe"


def test_elastic_security_alert_with_flattened_kibana_keys():
    alert = only(sample_bytes("ecs/kibana-8.1.0-threat-match-alert.json"), "ecs")
    assert alert.id == "30a75fe46d3dbdfab55982036f77a8d60e2d1112e96f277c3b8c22f9bb57817a"  # kibana.alert.uuid
    assert alert.title == "threat-match-rule" and alert.severity == "low"
    assert alert.rule_id == "53000028-120c-4e55-a8c0-db092e05aef4"
    assert alert.description == "a simple threat match rule" and alert.host == "security-linux-1"
    assert alert.source == "elastic-security"  # no observer.product / event.module in a rule alert
    assert alert.time == datetime(2022, 3, 19, 2, 48, 12, 634000, tzinfo=UTC)


def test_elastic_security_search_hit_is_unwrapped():
    alert = only(sample_bytes("ecs/kibana-8.0.0-search-hit.json"))
    assert alert.id == "f749117366e32b88f62b01f8fc9070480e06e604fe6413b8a4dbf38910823a4d"
    assert alert.raw["_index"] == ".internal.alerts-security.alerts-default"  # the hit, as sent


def test_elastic_search_response_counts_as_its_hits():
    hit = sample("ecs/kibana-8.0.0-search-hit.json")
    response = {
        "took": 3,
        "hits": {"total": {"value": 2}, "hits": [hit, sample("ecs/kibana-8.1.0-threat-match-alert.json")]},
    }
    parsed = soc.parse_alerts(msgspec.json.encode(response))
    assert parsed.format == "ecs" and len(parsed.alerts) == 2 and not parsed.rejected


def test_elastic_rule_threat_mapping_process_and_network_fields():
    document = sample("ecs/kibana-8.1.0-threat-match-alert.json")
    document["kibana.alert.rule.threat"] = [
        {
            "framework": "MITRE ATT&CK",
            "tactic": {"id": "TA0006", "name": "Credential Access"},
            "technique": [{"id": "T1003", "subtechnique": [{"id": "T1003.001"}]}],
        }
    ]
    document |= {
        "process": {
            "name": "mimikatz.exe",
            "pid": 4242,
            "parent": {"name": "cmd.exe"},
            "hash": {"sha256": "A" * 64},
        },
        "user": {"name": "alice"},
        "source.ip": "2001:0db8::0001",
        "destination": {"ip": "not-an-address", "domain": "evil.example"},
        "kibana.alert.threshold_result": {"count": 37},
    }
    alert = only(msgspec.json.encode(document))
    assert alert.techniques == ["T1003", "T1003.001"]
    assert (
        alert.process.name == "mimikatz.exe"
        and alert.process.pid == 4242
        and alert.process.parent == "cmd.exe"
    )
    assert alert.process.sha256 == "a" * 64 and alert.user == "alice"
    assert alert.src_ip == "2001:db8::1"
    assert alert.dst_ip is None and alert.domain == "evil.example"  # a bad optional value is left out
    assert alert.count == 37


@pytest.mark.parametrize(
    ("name", "source", "severity", "title"),
    [
        ("guardduty-detection-finding.json", "guardduty", "low", "AWS CloudTrail trail"),
        ("okta-detection-finding.json", "okta-system-log", "medium", "Login Failures"),
        ("prowler-detection-finding.json", "prowler", "high", "Check if ACM Certificates"),
    ],
)
def test_ocsf_detection_findings(name: str, source: str, severity: str, title: str):
    alert = only(sample_bytes(f"ocsf/{name}"), "ocsf")
    assert alert.source == source and alert.severity == severity and alert.title.startswith(title)
    assert alert.raw["class_uid"] == 2004


def test_ocsf_ids_times_and_evidence_addresses():
    guardduty = only(sample_bytes("ocsf/guardduty-detection-finding.json"))
    assert guardduty.id.startswith("ocsf-")  # finding_info.uid is an ARN (with '/'): its digest
    assert guardduty.src_ip == "52.94.133.131"  # only in evidences[].src_endpoint
    assert guardduty.time == datetime(2023, 9, 19, 15, 5, 22, 487000, tzinfo=UTC)  # time_dt -04:00
    okta = only(sample_bytes("ocsf/okta-detection-finding.json"))
    assert okta.id == "dc9fd3c0-598c-11ef-8478-2b7584bf8d5a"  # a usable uid is kept as it is
    assert okta.time == datetime(2024, 8, 13, 15, 58, 20, tzinfo=UTC)


def test_ocsf_epoch_time_in_seconds_or_milliseconds():
    finding = sample("ocsf/okta-detection-finding.json")
    finding.pop("time_dt")
    assert only(msgspec.json.encode(finding)).time == datetime(
        2024, 8, 13, 15, 58, 20, tzinfo=UTC
    )  # 1723564700 s
    finding["time"] = 1723564700123
    assert only(msgspec.json.encode(finding)).time == datetime(2024, 8, 13, 15, 58, 20, 123000, tzinfo=UTC)


def test_ocsf_attacks_process_and_vulnerabilities():
    finding = sample("ocsf/prowler-detection-finding.json")
    finding["finding_info"]["attacks"] = [
        {
            "technique": {"uid": "T1059", "name": "Command and Scripting Interpreter"},
            "sub_technique": {"uid": "T1059.001"},
        }
    ]
    finding["actor"] = {
        "user": {"name": "svc-build"},
        "process": {
            "name": "powershell.exe",
            "cmd_line": "powershell -enc SQBFAFgA",
            "pid": 77,
            "parent_process": {"name": "winword.exe"},
            "file": {
                "hashes": [
                    {"algorithm_id": 1, "value": "d41d8cd98f00b204e9800998ecf8427e"},
                    {"algorithm_id": 3, "value": "b" * 64},
                ]
            },
        },
    }
    finding["vulnerabilities"] = [{"cve": {"uid": "CVE-2021-44228"}}]
    alert = only(msgspec.json.encode(finding))
    assert alert.techniques == ["T1059", "T1059.001"] and alert.cves == ["CVE-2021-44228"]
    assert (alert.user, alert.process.name, alert.process.parent, alert.process.sha256) == (
        "svc-build",
        "powershell.exe",
        "winword.exe",
        "b" * 64,
    )


# --- severity tables (docs/soc.md) ---------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "expected"), [(1, "high"), (2, "medium"), (3, "low"), (4, "informational"), (None, "medium")]
)
def test_suricata_severity(priority, expected):
    assert suricata.severity(priority) == expected


@pytest.mark.parametrize(
    ("level", "expected"),
    [(0, "informational"), (3, "informational"), (4, "low"), (6, "low"), (7, "medium"), (11, "medium"),
     (12, "high"), (14, "high"), (15, "critical")],
)  # fmt: skip
def test_wazuh_severity(level, expected):
    assert wazuh.severity(level) == expected


@pytest.mark.parametrize(
    ("severity_id", "label", "expected"),
    [(1, None, "informational"), (2, None, "low"), (3, None, "medium"), (4, None, "high"),
     (5, None, "critical"), (6, None, "critical"), (0, "Unknown", "medium"), (99, "High", "high"),
     (99, "Other", "medium")],
)  # fmt: skip
def test_ocsf_severity(severity_id, label, expected):
    assert ocsf.severity({"severity_id": severity_id, "severity": label}) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({"kibana.alert.severity": "critical"}, "critical"), ({"kibana.alert.severity": "High"}, "high"),
     ({"event": {"severity": 20}}, "low"), ({"event.severity": 46}, "medium"),
     ({"event.severity": 72}, "high"), ({"kibana.alert.risk_score": 99}, "critical"), ({}, "medium")],
)  # fmt: skip
def test_ecs_severity(fields, expected):
    assert ecs.severity(fields) == expected


def test_the_severity_of_every_sample_is_the_tables():
    """The tables applied to the real records: what each product said, what we made of it."""
    seen = {
        "suricata-eve/oisf-doc-alert-http.json": "high",  # alert.severity 1
        "suricata-eve/oisf-doc-example-alert.json": "medium",  # 2
        "wazuh/integratord-sshd-5712.json": "medium",  # level 10
        "ecs/kibana-8.1.0-threat-match-alert.json": "low",  # kibana.alert.severity low
        "ocsf/guardduty-detection-finding.json": "low",  # severity_id 2
        "ocsf/okta-detection-finding.json": "medium",  # 0 unknown
        "ocsf/prowler-detection-finding.json": "high",  # 4
    }
    assert {name: only(sample_bytes(name)).severity for name in seen} == seen
    assert [
        a.severity for a in soc.parse_alerts(sample_bytes("suricata-eve/beats-eve-alerts.ndjson")).alerts
    ] == [
        "medium",
        "medium",
        "low",
    ]


# --- detection, batches, NDJSON ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("suricata-eve/oisf-doc-alert-http.json", "suricata-eve"),
        ("suricata-eve/oisf-doc-fileinfo.json", "suricata-eve"),
        ("wazuh/integratord-sshd-5712.json", "wazuh"),
        ("wazuh/docs-mitre-sshd-100003.json", "wazuh"),
        ("ecs/kibana-8.1.0-threat-match-alert.json", "ecs"),
        ("ecs/kibana-8.0.0-search-hit.json", "ecs"),
        ("ocsf/guardduty-detection-finding.json", "ocsf"),
        ("ocsf/inspector-vulnerability-finding.json", "ocsf"),
    ],
)
def test_detection(name: str, fmt: str):
    assert formats.detect(sample(name)) == fmt


def test_aoc_alerts_are_not_mistaken_for_a_product():
    assert formats.detect({"source": "crowdstrike", "title": "x", "severity": "low"}) is None


def test_a_mixed_batch_accepts_the_good_records_and_reports_each_bad_one():
    batch = [
        sample("suricata-eve/oisf-doc-alert-http.json"),
        sample("suricata-eve/oisf-doc-fileinfo.json"),  # not an alert
        sample("ocsf/guardduty-detection-finding.json"),
        sample("ocsf/inspector-vulnerability-finding.json"),  # class 2002
        sample("wazuh/integratord-sshd-5712.json"),
        {"alert": {"signature": "half an event"}, "event_type": "alert", "flow_id": 1},  # minimal, enough
        "a string",
        {"hello": "world"},
    ]
    parsed = soc.parse_alerts(msgspec.json.encode(batch))
    assert parsed.format == "mixed"
    assert [a.source for a in parsed.alerts] == ["suricata", "guardduty", "wazuh", "suricata"]
    reasons = {r.index: (r.error, r.field) for r in parsed.rejected}
    assert reasons == {
        1: ("not_an_alert", "event_type"),
        3: ("not_an_alert", "class_uid"),
        6: ("unknown_format", None),
        7: ("unknown_format", None),
    }
    assert "fileinfo" in parsed.rejected[0].message and "Vulnerability Finding" in parsed.rejected[1].message


def test_a_named_format_reports_records_of_another():
    batch = [sample("wazuh/integratord-sshd-5712.json"), sample("suricata-eve/oisf-doc-alert-http.json")]
    parsed = soc.parse_alerts(msgspec.json.encode(batch), "wazuh")
    assert len(parsed.alerts) == 1 and parsed.format == "wazuh"
    [rejected] = parsed.rejected
    assert rejected.index == 1 and rejected.error == "not_an_alert" and "Wazuh" in rejected.message


def test_a_record_missing_its_title_is_refused_with_the_field():
    record = sample("suricata-eve/oisf-doc-example-alert.json")
    del record["alert"]["signature"]
    parsed = soc.parse_alerts(msgspec.json.encode([record, sample("suricata-eve/oisf-doc-alert-http.json")]))
    assert len(parsed.alerts) == 1
    assert (parsed.rejected[0].index, parsed.rejected[0].field) == (0, "alert.signature")


def test_an_unparseable_time_is_refused_but_a_missing_one_is_the_intake_time():
    record = sample("wazuh/integratord-sshd-5712.json")
    record["timestamp"] = "yesterday-ish"
    parsed = soc.parse_alerts(msgspec.json.encode(record))
    assert not parsed.alerts and parsed.rejected[0].field == "timestamp"
    del record["timestamp"]
    assert abs((only(msgspec.json.encode(record)).time - datetime.now(UTC)).total_seconds()) < 60


def test_ndjson_with_a_broken_line():
    body = sample_bytes("suricata-eve/beats-eve-alerts.ndjson").replace(b"\n", b"\n{not json\n", 1)
    parsed = soc.parse_alerts(body)
    assert len(parsed.alerts) == 3
    [broken] = parsed.rejected
    assert broken.index == 1 and broken.error == "malformed_json"


def test_the_raw_original_is_bounded():
    record = sample("wazuh/integratord-sshd-5712.json")
    record["full_log"] = "x" * 40_000  # a huge log line in a real field
    record["previous_output"] = "y" * 20_000
    alert = only(msgspec.json.encode(record))
    encoded = len(msgspec.json.encode(alert.raw))
    assert encoded <= soc.MAX_RAW_BYTES
    note = alert.raw["aoc_raw_truncated"]
    assert note["bytes"] > 60_000 and set(note["dropped_fields"]) == {"full_log", "previous_output"}
    assert alert.raw["rule"]["id"] == "5712"  # the rest of the original is still there
    assert len(alert.description) == 4096  # the mapped field is truncated to the contract's limit
    small = {"a": 1}
    assert bounded_raw(small) is small


def test_too_many_records_and_unknown_formats_refuse_the_body():
    with pytest.raises(soc.AlertDecodeError) as unknown:
        soc.parse_alerts(b"[]", "splunk")
    assert unknown.value.error == "unknown_format"
    many = msgspec.json.encode([sample("ocsf/okta-detection-finding.json")] * 1001)
    with pytest.raises(soc.AlertDecodeError) as too_many:
        soc.parse_alerts(many)
    assert too_many.value.error == "too_many"
    with pytest.raises(soc.AlertDecodeError) as garbage:
        soc.parse_alerts(b"<xml/>")
    assert garbage.value.error == "malformed"


# --- AOC's own shape: strict as before --------------------------------------------------


def test_aoc_shape_stays_all_or_nothing_and_names_the_field():
    good = {"id": "a1", "source": "edr", "title": "t", "severity": "low"}
    with pytest.raises(soc.AlertDecodeError) as typo:
        soc.parse_alerts(msgspec.json.encode([good, {**good, "id": "a2", "sevrity": "low"}]))
    assert typo.value.field == "$[1].sevrity"
    parsed = soc.parse_alerts(msgspec.json.encode([good]))
    assert parsed.format == "aoc" and [a.id for a in parsed.alerts] == ["a1"]


def test_aoc_shape_as_ndjson():
    good = {"id": "n1", "source": "edr", "title": "t", "severity": "low"}
    body = b"\n".join(msgspec.json.encode({**good, "id": f"n{i}"}) for i in range(3))
    assert [a.id for a in soc.parse_alerts(body).alerts] == ["n0", "n1", "n2"]
    bad = body + b"\n" + msgspec.json.encode({**good, "id": "n9", "src_ip": "999.1.1.1"})
    with pytest.raises(soc.AlertDecodeError) as refused:
        soc.parse_alerts(bad)
    assert refused.value.field == "$[3].src_ip"


def test_aoc_records_inside_a_product_batch_are_validated_one_by_one():
    good = {"id": "own-1", "source": "edr", "title": "t", "severity": "low"}
    batch = [sample("ocsf/okta-detection-finding.json"), good, {**good, "id": "own-2", "severity": "meh"}]
    parsed = soc.parse_alerts(msgspec.json.encode(batch))
    assert [a.id for a in parsed.alerts] == ["dc9fd3c0-598c-11ef-8478-2b7584bf8d5a", "own-1"]
    assert parsed.rejected[0].index == 2 and parsed.rejected[0].field == "severity"


# --- helpers --------------------------------------------------------------------------


def test_dotted_and_nested_keys_read_alike():
    assert get({"a.b": {"c": 1}}, "a.b.c") == 1
    assert get({"a": {"b.c": 2}}, "a.b.c") == 2
    assert get({"a": {"b": {"c": 3}}}, "a.b.c") == 3
    assert get({"a": 1}, "a.b") is None


def test_times():
    assert parse_time("2022-05-11T12:29:19.905+0000", "t") == datetime(
        2022, 5, 11, 12, 29, 19, 905000, tzinfo=UTC
    )
    assert parse_time("2023-09-19T11:05:22.487-04:00", "t") == datetime(
        2023, 9, 19, 15, 5, 22, 487000, tzinfo=UTC
    )
    assert parse_time(None, "t") is None
    with pytest.raises(formats.RecordError):
        parse_time(True, "t")
