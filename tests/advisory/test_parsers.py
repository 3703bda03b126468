"""Each parser on the shipped, realistic samples, and on documents it must refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from contracts.advisory import Ioc
from services.advisory.parsers import FeedParseError, cves_in, iocs_in_pattern, parse_feed
from tests.advisory.conftest import sample


def by_key(items):
    return {item.key: item for item in items}


def test_cisa_kev_catalog():
    items = by_key(parse_feed("cisa_kev", sample("cisa_kev")))
    assert len(items) == 8 and all(item.known_exploited for item in items.values())
    pan = items["CVE-2024-3400"]
    assert (pan.vendor, pan.product) == ("Palo Alto Networks", "PAN-OS")
    assert pan.title == "Palo Alto Networks PAN-OS Command Injection Vulnerability"
    assert pan.kev_due_date == "2024-04-19" and "Threat Prevention" in pan.kev_required_action
    assert pan.updated == datetime(2024, 4, 12, tzinfo=UTC)
    assert pan.references == [
        "https://security.paloaltonetworks.com/CVE-2024-3400",
        "https://nvd.nist.gov/vuln/detail/CVE-2024-3400",
    ]
    assert items["CVE-2021-44228"].ransomware_use and not pan.ransomware_use
    assert {item.format for item in items.values()} == {"cisa_kev"}


def test_nvd_cve_api_2_0():
    items = by_key(parse_feed("nvd_cve", sample("nvd_cve")))
    assert set(items) == {
        "CVE-2024-3400",
        "CVE-2024-21762",
        "CVE-2024-6387",
        "CVE-2024-23897",
        "CVE-2021-44228",
        "CVE-2024-5910",
    }
    fortios = items["CVE-2024-21762"]
    assert fortios.cvss == 9.8  # NVD's Primary score, not the vendor's 9.6
    assert fortios.cpes == [("fortinet", "fortios"), ("fortinet", "fortiproxy")]
    assert fortios.known_exploited and fortios.kev_due_date == "2024-02-16"  # NVD carries CISA's fields
    assert items["CVE-2021-44228"].cvss == 10.0  # CVSS 3.1 before the v2 score (9.3)
    assert items["CVE-2024-5910"].cvss == 9.3  # only a CVSS 4.0 score exists
    ssh = items["CVE-2024-6387"]
    assert not ssh.known_exploited and ssh.cvss == 8.1 and ssh.cpes == [("openbsd", "openssh")]
    assert ssh.description.startswith("A security regression")  # the English one
    assert ssh.updated == datetime(2024, 11, 21, 9, 49, 30, 487000, tzinfo=UTC)  # NVD times are UTC


def test_stix_bundle_ties_indicators_to_the_cve_through_the_graph():
    items = by_key(parse_feed("stix", sample("stix")))
    pan = items["CVE-2024-3400"]
    assert pan.cves == ["CVE-2024-3400"]
    # indicator -> campaign -> vulnerability, and indicator -> malware <- campaign -> vulnerability
    assert set(pan.iocs) == {
        Ioc("cve", "CVE-2024-3400"),
        Ioc("ip", "203.0.113.77"),
        Ioc("domain", "nhdata-sync.example.net"),
        Ioc("url", "http://198.51.100.23/policy"),
        Ioc("sha256", "b7d3482a377df85878206d6c50f81f7dab9b80d2754d66c61b71564b212b6225"),
    }
    assert pan.threat_actors == ["Operation MidnightEclipse", "UPSTYLE", "UTA0218"]
    assert pan.title.startswith("MidnightEclipse")
    # a report whose indicators lead to no CVE is threat activity of its own
    (report,) = [item for key, item in items.items() if key.startswith("report--")]
    assert report.cves == [] and report.threat_actors == ["Lumma Stealer"]
    assert Ioc("ip", "192.0.2.145") in report.iocs and Ioc("ip", "192.0.2.146") in report.iocs  # OR pattern
    assert report.updated == datetime(2024, 11, 18, 8, tzinfo=UTC)


def test_rss_feed_items_with_their_cves():
    items = parse_feed("rss", sample("rss"))
    assert len(items) == 4
    jenkins = next(item for item in items if "Jenkins" in item.title)
    assert jenkins.cves == ["CVE-2024-23897", "CVE-2024-23898"]
    assert jenkins.published == datetime(2024, 1, 24, 16, tzinfo=UTC)
    assert jenkins.references == ["https://www.jenkins.io/security/advisory/2024-01-24/"]
    assert "<b>" not in jenkins.description  # HTML stripped
    assert [item.cves for item in items if "Phishing" in item.title] == [[]]
    assert len({item.key for item in items}) == 4  # keys are stable hashes of guid/link


def test_atom_feed():
    atom = b"""<?xml version="1.0" encoding="utf-8"?>
    <feed xmlns="http://www.w3.org/2005/Atom">
      <title>Vendor PSIRT</title><id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
      <updated>2024-11-20T10:00:00Z</updated>
      <entry>
        <title>FortiManager missing authentication in fgfmd (CVE-2024-47575)</title>
        <link href="https://fortiguard.fortinet.com/psirt/FG-IR-24-423"/>
        <id>FG-IR-24-423</id>
        <updated>2024-10-23T15:00:00Z</updated>
        <summary>Unauthenticated remote code execution; exploited in the wild.</summary>
      </entry>
    </feed>"""
    (item,) = parse_feed("rss", atom)
    assert item.cves == ["CVE-2024-47575"] and item.updated == datetime(2024, 10, 23, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fmt", "body", "says"),
    [
        ("cisa_kev", b"{not json", "not valid JSON"),
        ("cisa_kev", b'{"title": "no vulnerabilities key"}', "not a CISA KEV catalog"),
        ("cisa_kev", b'{"vulnerabilities": [{"cveID": "CVE-24-1"}]}', "bad cveID"),
        ("nvd_cve", b'{"resultsPerPage": 0}', "no 'vulnerabilities' list"),
        ("nvd_cve", b'{"format": "NVD_CVE", "vulnerabilities": [{"cve": {}}]}', "has no CVE id"),
        ("nvd_cve", json.dumps({"format": "NVD_CPE", "vulnerabilities": []}).encode(), "format 'NVD_CPE'"),
        ("stix", b'{"type": "indicator"}', "not a STIX 2.1 bundle"),
        (
            "stix",
            b'{"type": "bundle", "id": "bundle--1", "objects": [{"type": "indicator", "id": "x"}]}',
            "invalid STIX 2.1 bundle",
        ),
        ("rss", b"this is not xml at all", "not an RSS or Atom feed"),
        ("rss", sample("cisa_kev"), "not an RSS or Atom feed"),
    ],
)
def test_malformed_documents_are_refused_with_a_reason(fmt, body, says):
    with pytest.raises(FeedParseError, match=says):
        parse_feed(fmt, body)


def test_helpers():
    assert cves_in("fixes cve-2024-1234 and CVE-2023-45678; not CVE-99-1") == [
        "CVE-2023-45678",
        "CVE-2024-1234",
    ]
    assert iocs_in_pattern("[file:hashes.'MD5' = 'D41D8CD98F00B204E9800998ECF8427E']") == [
        Ioc("md5", "d41d8cd98f00b204e9800998ecf8427e")
    ]
