"""Synthesis: dedupe by CVE, the KEV join, inventory matching, priorities; order does not
matter and an unchanged input writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from contracts.advisory import Advisory
from services.advisory.config import DATA_DIR, Asset, load_inventory
from services.advisory.parsers import parse_feed
from services.advisory.synthesis import Inventory, prioritize, synthesize
from tests.advisory.conftest import sample

NOW = datetime(2024, 11, 20, 12, tzinfo=UTC)
LATER = datetime(2024, 11, 21, 12, tzinfo=UTC)
INVENTORY = Inventory(load_inventory(DATA_DIR / "inventory.json"))


def items(feed: str, fmt: str):
    return [(feed, item) for item in parse_feed(fmt, sample(fmt))]


def everything():
    return items("kev", "cisa_kev") + items("nvd", "nvd_cve") + items("stix", "stix") + items("rss", "rss")


def stored(changes) -> dict[str, Advisory]:
    """As the SOC would read them back from KV."""
    return {
        c.advisory.id: msgspec.json.decode(msgspec.json.encode(c.advisory), type=Advisory) for c in changes
    }


def test_one_advisory_per_cve_across_feeds_with_the_kev_flag_and_iocs():
    advisories = stored(synthesize(everything(), {}, INVENTORY, NOW))
    pan = advisories["CVE-2024-3400"]
    assert pan.sources == ["kev", "nvd", "stix"]
    assert pan.known_exploited and pan.cvss == 10.0 and pan.kev_due_date == "2024-04-19"
    assert pan.affected_assets == ["fw-edge-01"] and pan.priority == "critical"
    assert {ioc.type for ioc in pan.iocs} == {"cve", "ip", "domain", "url", "sha256"}
    assert pan.threat_actors == ["Operation MidnightEclipse", "UPSTYLE", "UTA0218"]
    assert "fw-edge-01" in pan.recommended_action and "Hunt for the 4 IOCs" in pan.recommended_action
    assert pan.first_seen == pan.updated == NOW
    # every CVE exactly once; the two non-CVE items have their own advisories
    cve_ids = [advisory_id for advisory_id in advisories if advisory_id.startswith("CVE-")]
    assert len(cve_ids) == 11
    assert advisories["CVE-2024-23897"].cves == ["CVE-2024-23897"]  # the RSS item also names -23898


@pytest.mark.parametrize(
    ("advisory_id", "priority", "assets"),
    [
        ("CVE-2024-3400", "critical", ["fw-edge-01"]),  # exploited + runs here
        ("CVE-2024-21762", "critical", ["vpn-gw-01"]),
        (
            "CVE-2024-23897",
            "critical",
            ["ci-jenkins-01"],
        ),  # KEV product "Jenkins Command Line Interface (CLI)"
        ("CVE-2021-44228", "critical", ["billing-api-01"]),  # KEV "Log4j2", CPE apache:log4j
        ("CVE-2024-6387", "high", ["bastion-01"]),  # runs here, CVSS 8.1, not exploited
        ("CVE-2023-4966", "high", []),  # exploited, not in the inventory
        ("CVE-2024-47575", "high", []),  # FortiManager is not FortiOS
        ("CVE-2024-23898", "medium", ["ci-jenkins-01"]),  # named in RSS text only, no score
        ("CVE-2024-5910", "medium", []),  # CVSS 9.3, not here
    ],
)
def test_priorities_and_inventory_matches(advisory_id, priority, assets):
    advisory = stored(synthesize(everything(), {}, INVENTORY, NOW))[advisory_id]
    assert (advisory.priority, advisory.affected_assets) == (priority, assets)


def test_threat_activity_without_cve_is_medium_and_news_is_low():
    advisories = stored(synthesize(everything(), {}, INVENTORY, NOW))
    lumma = next(a for a in advisories.values() if a.id.startswith("stix.report--"))
    assert lumma.priority == "medium" and len(lumma.iocs) == 4 and lumma.cves == []
    assert "Hunt for the 4 IOCs" in lumma.recommended_action
    news = next(a for a in advisories.values() if a.id.startswith("rss."))
    assert news.priority == "low" and news.title == "Phishing lures impersonate HR benefits enrollment"


def test_the_same_items_again_change_nothing():
    first = stored(synthesize(everything(), {}, INVENTORY, NOW))
    assert synthesize(everything(), first, INVENTORY, LATER) == []


def test_order_of_arrival_does_not_matter():
    together = stored(synthesize(everything(), {}, INVENTORY, NOW))
    nvd_first = stored(synthesize(items("nvd", "nvd_cve") + items("rss", "rss"), {}, INVENTORY, NOW))
    later = stored(synthesize(items("kev", "cisa_kev") + items("stix", "stix"), nvd_first, INVENTORY, LATER))
    merged = {**nvd_first, **later}
    strip = {"updated": None, "first_seen": None}
    assert {k: msgspec.structs.replace(v, **strip) for k, v in merged.items()} == {
        k: msgspec.structs.replace(v, **strip) for k, v in together.items()
    }
    # the KEV entry arriving a day later upgrades what RSS alone said, and says so
    kev_later = synthesize(items("kev", "cisa_kev"), nvd_first, INVENTORY, LATER)
    moveit = next(c for c in kev_later if c.advisory.id == "CVE-2023-34362")
    assert (moveit.change, moveit.previous_priority, moveit.advisory.priority) == ("updated", "low", "high")
    assert moveit.advisory.first_seen == NOW and moveit.advisory.updated == LATER


def test_a_new_inventory_rederives_priorities_without_new_items():
    first = stored(synthesize(everything(), {}, INVENTORY, NOW))
    citrix = Asset(id="adc-01", vendor="Citrix", product="NetScaler ADC", criticality="critical")
    grown = Inventory([*INVENTORY.assets, citrix])
    changes = synthesize([], first, grown, LATER, rederive=list(first))
    assert [(c.advisory.id, c.previous_priority, c.advisory.priority) for c in changes] == [
        ("CVE-2023-4966", "high", "critical")
    ]
    assert changes[0].advisory.affected_assets == ["adc-01"] and changes[0].advisory.first_seen == NOW


@pytest.mark.parametrize(
    ("known_exploited", "cvss", "exposed", "matched", "iocs", "expected"),
    [
        (True, None, False, True, False, "critical"),
        (False, 9.8, True, True, False, "critical"),
        (False, 9.8, False, True, False, "high"),  # internal, low-criticality asset
        (True, 5.0, False, False, False, "high"),
        (False, 7.5, False, True, False, "high"),
        (False, 5.0, False, True, False, "medium"),
        (False, 9.1, False, False, False, "medium"),
        (False, None, False, False, True, "medium"),
        (False, 6.5, False, False, False, "low"),
    ],
)
def test_priority_rules(known_exploited, cvss, exposed, matched, iocs, expected):
    asset = Asset(id="a", vendor="v", product="p", internet_facing=exposed, criticality="low")
    got = prioritize(
        known_exploited=known_exploited, cvss=cvss, assets=[asset] if matched else [], threat_iocs=iocs
    )
    assert got == expected
