"""The alert contract: strict validation that names the offending field, and how alerts
are packed into queue messages."""

from __future__ import annotations

import msgspec
import pytest

from contracts import soc

VALID = {"source": "crowdstrike", "title": "LSASS access", "severity": "high"}


def body(value: object) -> bytes:
    return msgspec.json.encode(value)


def refused(value: object) -> soc.AlertDecodeError:
    with pytest.raises(soc.AlertDecodeError) as caught:
        soc.decode_alerts(value if isinstance(value, bytes) else body(value))
    return caught.value


def test_one_alert_gets_an_id_and_a_utc_time() -> None:
    [alert] = soc.decode_alerts(body({**VALID, "time": "2026-03-01T12:00:00"}))
    assert alert.id and alert.time.tzinfo is not None
    assert alert.time.isoformat() == "2026-03-01T12:00:00+00:00"


def test_a_batch_decodes_every_alert() -> None:
    alerts = soc.decode_alerts(body([{**VALID, "id": f"a{i}"} for i in range(3)]))
    assert [a.id for a in alerts] == ["a0", "a1", "a2"]


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ({**VALID, "severity": "urgent"}, "$.severity", "Invalid enum value 'urgent'"),
        ([VALID, {**VALID, "src_ip": "10.0.0.300"}], "$[1].src_ip", "not an IPv4 or IPv6 address"),
        ([{**VALID, "techniques": ["T1059.001", "lateral"]}], "$[0].techniques[1]", "matching regex"),
        ({**VALID, "hostname": "ws-1"}, "$.hostname", "unknown field `hostname`"),
        ({"source": "x", "severity": "low"}, "$", "missing required field `title`"),
        ({**VALID, "count": 0}, "$.count", ">= 1"),
        ({**VALID, "process": {"name": "cmd.exe", "sha256": "abc"}}, "$.process.sha256", "matching regex"),
        ({**VALID, "id": "has space"}, "$.id", "matching regex"),
    ],
)
def test_an_invalid_alert_is_refused_naming_the_field(value: object, field: str, words: str) -> None:
    error = refused(value)
    assert error.field == field
    assert words in str(error)


def test_malformed_json_empty_bodies_and_oversized_batches_are_refused() -> None:
    assert "malformed JSON" in str(refused(b'{"source": '))
    assert "empty body" in str(refused(b"  "))
    assert "empty batch" in str(refused([]))
    error = refused([VALID] * (soc.MAX_BATCH + 1))
    assert "too many alerts" in str(error) and error.field == "$"


def test_raw_is_capped() -> None:
    error = refused({**VALID, "raw": {"blob": "x" * (soc.MAX_RAW_BYTES + 10)}})
    assert error.field == "$.raw"


def test_queue_messages_pack_alerts_under_the_size_cap() -> None:
    alerts = [soc.Alert(id=f"a{i}", **VALID, raw={"pad": "y" * 3000}) for i in range(200)]
    messages = soc.queue_messages(alerts)
    assert len(messages) > 1
    assert all(len(data) <= soc.MAX_QUEUE_MESSAGE_BYTES for _, data in messages)
    unpacked = [a.id for _, data in messages for a in soc.decode_alerts(data)]
    assert unpacked == [a.id for a in alerts]
    # the same batch always gets the same message ids: a retried publish is stored once
    assert [mid for mid, _ in messages] == [mid for mid, _ in soc.queue_messages(alerts)]
    single = soc.queue_messages(alerts[:1])
    assert single[0][0] == "alert-a0" and single[0][1].startswith(b"{")


def test_summary_drops_raw_and_converts_back() -> None:
    alert = soc.Alert(id="x1", **VALID, src_ip="45.1.2.3", raw={"original": True}, techniques=["T1003.001"])
    summary = soc.summarize(alert)
    assert not hasattr(summary, "raw")
    assert summary.as_alert().src_ip == "45.1.2.3"
