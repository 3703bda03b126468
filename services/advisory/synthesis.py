"""From feed items to prioritized advisories. Pure: no I/O, no clock (``now`` is given).

An advisory is derived from its *evidence* — every feed item that mentioned it — and
the asset inventory, by one deterministic function. So:

- dedupe by CVE: items from every feed that name the same CVE land in one advisory;
- order does not matter: a KEV entry arriving a day after the NVD record gives the
  same advisory as both arriving together;
- a refresh that brings nothing new derives exactly the stored advisory, and nothing is
  written (the "adds nothing" guarantee);
- a changed inventory re-derives priorities without refetching anything.

Priority (first rule that holds):
  critical  runs on an inventory asset AND (known exploited, or CVSS >= 9 on an
            internet-facing / critical asset)
  high      known exploited anywhere, or runs on an asset with CVSS >= 7
  medium    runs on an asset, or CVSS >= 9, or carries threat IOCs to hunt for
  low       everything else
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

import msgspec

from contracts.advisory import PRIORITIES, Advisory, FeedItem, Ioc
from services.advisory.config import Asset
from services.advisory.parsers import CVE_PATTERN, cpe_vendor_product

# which feed's words win for each field (lower is better)
TITLE_RANK = {"cisa_kev": 0, "rss": 1, "stix": 2, "nvd_cve": 3}
DESCRIPTION_RANK = {"nvd_cve": 0, "cisa_kev": 1, "stix": 2, "rss": 3}
MAX_REFERENCES = 20


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _squash(text: str) -> str:
    return "".join(_words(text))


def _contains_phrase(haystack: list[str], phrase: list[str]) -> bool:
    size = len(phrase)
    return size > 0 and any(haystack[i : i + size] == phrase for i in range(len(haystack) - size + 1))


class Inventory:
    """Which assets run a product. Vendor + product names, CPE vendor:product, or (for
    free-text items such as RSS) the product's name as a phrase in the text. Versions are
    not compared: a match means "runs an affected product — confirm the version"."""

    def __init__(self, assets: Iterable[Asset]) -> None:
        self.assets = list(assets)

    def _names(self, asset: Asset) -> list[list[str]]:
        return [_words(name) for name in (asset.product, *asset.aliases) if _words(name)]

    def _cpes(self, asset: Asset) -> set[tuple[str, str]]:
        return {pair for cpe in asset.cpe if (pair := cpe_vendor_product(cpe + ":*"))}

    def matching(self, item: FeedItem) -> list[Asset]:
        found = []
        product_words = _words(item.product)
        text_words = _words(item.text) if item.text else []
        for asset in self.assets:
            by_name = (
                bool(item.product)
                and _squash(item.vendor) == _squash(asset.vendor)
                and any(_contains_phrase(product_words, name) for name in self._names(asset))
            )
            by_cpe = bool(set(item.cpes) & self._cpes(asset))
            # free text is weaker evidence: only distinctive names (not "Server", "OS")
            by_text = bool(text_words) and any(
                len("".join(name)) >= 5 and _contains_phrase(text_words, name) for name in self._names(asset)
            )
            if by_name or by_cpe or by_text:
                found.append(asset)
        return found


def advisory_ids(feed: str, item: FeedItem) -> list[str]:
    """The advisories an item feeds: one per CVE it names, else one of its own."""
    if item.cves:
        return list(item.cves)
    return [f"{feed}.{re.sub(r'[^A-Za-z0-9_=-]', '_', item.key)}"]


def prioritize(*, known_exploited: bool, cvss: float | None, assets: list[Asset], threat_iocs: bool) -> str:
    score = cvss or 0.0
    matched = bool(assets)
    exposed = any(asset.internet_facing or asset.criticality == "critical" for asset in assets)
    if matched and (known_exploited or (score >= 9.0 and exposed)):
        return "critical"
    if known_exploited or (matched and score >= 7.0):
        return "high"
    if matched or score >= 9.0 or threat_iocs:
        return "medium"
    return "low"


def recommend(advisory: Advisory, assets: list[Asset]) -> str:
    products = ", ".join(advisory.products[:3]) or "the affected product"
    hosts = ", ".join(asset.id for asset in assets)
    hunt = [ioc for ioc in advisory.iocs if ioc.type != "cve"]
    due = f" (CISA due date {advisory.kev_due_date})" if advisory.kev_due_date else ""
    steps: list[str] = []
    if assets and advisory.known_exploited:
        steps.append(f"Patch or mitigate {products} on {hosts} now: exploited in the wild{due}.")
        if advisory.kev_required_action:
            steps.append(f"CISA: {advisory.kev_required_action}")
    elif assets:
        score = f"CVSS {advisory.cvss:g}" if advisory.cvss is not None else "no CVSS score yet"
        when = "this week" if advisory.priority in ("critical", "high") else "in the next patch window"
        steps.append(f"Confirm the version of {products} on {hosts} and patch {when} ({score}).")
    elif advisory.known_exploited:
        steps.append(
            f"Exploited in the wild{due}; {products} is not in the asset inventory — confirm it is not "
            "in use (shadow IT, appliances), and patch at once if it is."
        )
    elif advisory.cves:
        steps.append(f"No inventory asset runs {products}; review and keep watching.")
    if hunt:
        steps.append(f"Hunt for the {len(hunt)} IOCs in recent alerts and block them at the perimeter.")
    if advisory.ransomware_use:
        steps.append("Known ransomware use: check offline backups and EDR coverage of exposed hosts.")
    if not steps:
        steps.append("Informational: share with the affected teams; no asset in the inventory is named.")
    return " ".join(steps)


def _best(items: list[FeedItem], rank: dict[str, int], attribute: str) -> str:
    ranked = sorted(
        (item for item in items if getattr(item, attribute)), key=lambda i: (rank.get(i.format, 9), i.key)
    )
    return getattr(ranked[0], attribute) if ranked else ""


def _latest(items: list[FeedItem]) -> list[FeedItem]:
    return sorted(
        items, key=lambda i: (i.updated is None, -(i.updated.timestamp() if i.updated else 0), i.key)
    )


def derive(advisory_id: str, evidence: dict[str, FeedItem], inventory: Inventory) -> Advisory:
    """The advisory its evidence and the inventory say; deterministic."""
    items = [evidence[key] for key in sorted(evidence)]
    # an item naming several CVEs feeds each of their advisories; each keeps its own id
    cves = [advisory_id] if CVE_PATTERN.fullmatch(advisory_id) else sorted({c for i in items for c in i.cves})
    kev = [item for item in items if item.format == "cisa_kev"]
    nvd = _latest([item for item in items if item.format == "nvd_cve" and item.cvss is not None])
    scored = [item.cvss for item in items if item.cvss is not None]
    cvss = nvd[0].cvss if nvd else (max(scored) if scored else None)  # NVD revises scores: trust its latest
    kev_like = kev or [item for item in items if item.kev_due_date or item.kev_required_action]
    products: list[str] = []
    for item in items:
        if item.product:
            named = item.product.lower().startswith(item.vendor.lower())  # "Jenkins Jenkins CLI"
            products.append(item.product if named else f"{item.vendor} {item.product}".strip())
    for vendor, product in (pair for item in items for pair in item.cpes):
        if not any(_squash(product) in _squash(name) for name in products):
            products.append(f"{vendor}:{product}")
    assets = {asset.id: asset for item in items for asset in inventory.matching(item)}
    matched = [assets[key] for key in sorted(assets)]
    if not products:  # matched on free text only: name what the inventory runs
        products = [f"{asset.vendor} {asset.product}" for asset in matched]
    iocs = sorted(
        {Ioc("cve", cve) for cve in cves} | {ioc for item in items for ioc in item.iocs},
        key=lambda ioc: (ioc.type, ioc.value),
    )
    published = [item.published for item in items if item.published]
    references = list(dict.fromkeys(ref for item in _latest(items) for ref in item.references))
    advisory = Advisory(
        id=advisory_id,
        title=_best(items, TITLE_RANK, "title") or advisory_id,
        priority="low",
        known_exploited=any(item.known_exploited for item in items),
        cvss=cvss,
        cves=cves,
        products=list(dict.fromkeys(products)),
        iocs=iocs,
        sources=sorted({key.split(":", 1)[0] for key in evidence}),
        published=min(published) if published else None,
        affected_assets=[asset.id for asset in matched],
        description=_best(items, DESCRIPTION_RANK, "description"),
        references=references[:MAX_REFERENCES],
        kev_due_date=next((item.kev_due_date for item in kev_like if item.kev_due_date), None),
        kev_required_action=next((i.kev_required_action for i in kev_like if i.kev_required_action), ""),
        ransomware_use=any(item.ransomware_use for item in items),
        threat_actors=sorted({actor for item in items for actor in item.threat_actors}),
        evidence={key: evidence[key] for key in sorted(evidence)},
    )
    advisory.priority = prioritize(
        known_exploited=advisory.known_exploited,
        cvss=cvss,
        assets=matched,
        threat_iocs=any(ioc.type != "cve" for ioc in iocs),
    )
    advisory.recommended_action = recommend(advisory, matched)
    return advisory


def _content(advisory: Advisory) -> Advisory:
    """What counts as a change: everything but the bookkeeping times."""
    return msgspec.structs.replace(advisory, updated=None, first_seen=None)


class Change(msgspec.Struct, kw_only=True):
    advisory: Advisory
    change: str  # new | updated
    previous_priority: str | None = None


def synthesize(
    batch: Iterable[tuple[str, FeedItem]],
    existing: dict[str, Advisory],
    inventory: Inventory,
    now: datetime,
    *,
    rederive: Iterable[str] = (),
) -> list[Change]:
    """Fold new items (``(feed name, item)``) into the existing advisories. Returns only the
    advisories whose content changed, most urgent first. ``rederive`` names advisories to
    recompute although no item touched them (the inventory changed)."""
    evidence: dict[str, dict[str, FeedItem]] = {}
    for feed, item in batch:
        for advisory_id in advisory_ids(feed, item):
            base = evidence.get(advisory_id)
            if base is None:
                known = existing.get(advisory_id)
                base = evidence[advisory_id] = dict(known.evidence) if known else {}
            base[f"{feed}:{item.key}"] = item
    for advisory_id in rederive:
        if advisory_id not in evidence and advisory_id in existing:
            evidence[advisory_id] = dict(existing[advisory_id].evidence)

    changes = []
    for advisory_id, items in evidence.items():
        fresh = derive(advisory_id, items, inventory)
        before = existing.get(advisory_id)
        if before is not None and _content(before) == _content(fresh):
            continue
        fresh.first_seen = before.first_seen if before and before.first_seen else now
        fresh.updated = now
        changes.append(
            Change(
                advisory=fresh,
                change="updated" if before else "new",
                previous_priority=before.priority if before else None,
            )
        )
    return sorted(changes, key=lambda c: (PRIORITIES.index(c.advisory.priority), c.advisory.id))
