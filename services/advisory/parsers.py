"""Feed parsers: bytes in their real format -> ``FeedItem``s. Pure functions, no I/O.

Each parser raises ``FeedParseError`` with a message that says what is wrong with the
document, so a malformed feed is marked failing with a reason an operator can act on.

- CISA KEV JSON (the Known Exploited Vulnerabilities catalog)
- NVD CVE API 2.0 JSON (``/rest/json/cves/2.0`` responses)
- STIX 2.1 bundles (parsed and validated with ``stix2``; IOCs come from indicator
  patterns and are tied to CVEs through the relationship graph)
- RSS 2.0 / RSS 1.0 / Atom (``feedparser``)
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import feedparser
import msgspec
import stix2
from stix2.exceptions import STIXError

from contracts.advisory import FeedItem, Ioc

CVE_PATTERN = re.compile(r"\bCVE-\d{4}-\d{4,7}\b", re.IGNORECASE)


class FeedParseError(ValueError):
    """The document is not a valid feed of the configured format."""


def cves_in(text: str) -> list[str]:
    return sorted({match.upper() for match in CVE_PATTERN.findall(text or "")})


def _json(data: bytes, what: str) -> object:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise FeedParseError(f"not valid JSON ({what}): {exc}") from None


def _date(value: str | None) -> datetime | None:
    """ISO dates and timestamps; NVD's carry no zone and are UTC."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- CISA KEV ---------------------------------------------------------------------------


class _KevEntry(msgspec.Struct, kw_only=True):
    cveID: str
    vendorProject: str = ""
    product: str = ""
    vulnerabilityName: str = ""
    dateAdded: str = ""
    shortDescription: str = ""
    requiredAction: str = ""
    dueDate: str | None = None
    knownRansomwareCampaignUse: str = "Unknown"
    notes: str = ""


class _KevCatalog(msgspec.Struct, kw_only=True):
    vulnerabilities: list[_KevEntry]
    catalogVersion: str = ""


def parse_cisa_kev(data: bytes) -> list[FeedItem]:
    _json(data, "CISA KEV")
    try:
        catalog = msgspec.json.decode(data, type=_KevCatalog)
    except msgspec.ValidationError as exc:
        raise FeedParseError(f"not a CISA KEV catalog: {exc}") from None
    items = []
    for entry in catalog.vulnerabilities:
        cve = entry.cveID.strip().upper()
        if not CVE_PATTERN.fullmatch(cve):
            raise FeedParseError(f"not a CISA KEV catalog: bad cveID {entry.cveID!r}")
        items.append(
            FeedItem(
                key=cve,
                title=entry.vulnerabilityName or cve,
                cves=[cve],
                description=entry.shortDescription,
                published=_date(entry.dateAdded),
                updated=_date(entry.dateAdded),
                known_exploited=True,  # being in the catalog is the statement
                vendor=entry.vendorProject,
                product=entry.product,
                kev_due_date=entry.dueDate,
                kev_required_action=entry.requiredAction,
                ransomware_use=entry.knownRansomwareCampaignUse.strip().lower() == "known",
                references=[ref.strip() for ref in entry.notes.split(";") if ref.strip().startswith("http")],
            )
        )
    return items


# --- NVD CVE API 2.0 --------------------------------------------------------------------

# Prefer the newest CVSS version; within one, NVD's own ("Primary") score.
_CVSS_KEYS = ("cvssMetricV40", "cvssMetricV31", "cvssMetricV30", "cvssMetricV2")


def _nvd_cvss(metrics: dict) -> float | None:
    for key in _CVSS_KEYS:
        entries = metrics.get(key) or []
        ranked = sorted(entries, key=lambda entry: entry.get("type") != "Primary")
        for entry in ranked:
            score = (entry.get("cvssData") or {}).get("baseScore")
            if isinstance(score, int | float):
                return float(score)
    return None


def cpe_vendor_product(criteria: str) -> tuple[str, str] | None:
    """'cpe:2.3:o:paloaltonetworks:pan-os:*:...' -> ('paloaltonetworks', 'pan-os')."""
    parts = criteria.split(":")
    if len(parts) < 5 or parts[0] != "cpe" or parts[1] != "2.3":
        return None
    return parts[3], parts[4]


def _nvd_cpes(configurations: list) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for configuration in configurations or []:
        for node in configuration.get("nodes") or []:
            for match in node.get("cpeMatch") or []:
                if not match.get("vulnerable", True):
                    continue
                pair = cpe_vendor_product(match.get("criteria", ""))
                if pair and pair not in found:
                    found.append(pair)
    return found


def parse_nvd_cve(data: bytes) -> list[FeedItem]:
    document = _json(data, "NVD CVE API 2.0")
    if not isinstance(document, dict) or not isinstance(document.get("vulnerabilities"), list):
        raise FeedParseError("not an NVD CVE API 2.0 response: no 'vulnerabilities' list")
    if document.get("format") not in (None, "NVD_CVE"):
        raise FeedParseError(f"not an NVD CVE API 2.0 response: format {document.get('format')!r}")
    items = []
    for index, wrapper in enumerate(document["vulnerabilities"]):
        cve = (wrapper or {}).get("cve") if isinstance(wrapper, dict) else None
        if not isinstance(cve, dict) or not CVE_PATTERN.fullmatch(str(cve.get("id", ""))):
            raise FeedParseError(f"not an NVD CVE API 2.0 response: vulnerabilities[{index}] has no CVE id")
        cve_id = cve["id"].upper()
        english = [d.get("value", "") for d in cve.get("descriptions") or [] if d.get("lang") == "en"]
        description = english[0] if english else ""
        items.append(
            FeedItem(
                key=cve_id,
                title=cve.get("cisaVulnerabilityName") or _first_sentence(description) or cve_id,
                cves=[cve_id],
                description=description,
                published=_date(cve.get("published")),
                updated=_date(cve.get("lastModified") or cve.get("published")),
                cvss=_nvd_cvss(cve.get("metrics") or {}),
                # NVD carries CISA's KEV fields too: the flag survives a KEV feed outage
                known_exploited=bool(cve.get("cisaExploitAdd")),
                kev_due_date=cve.get("cisaActionDue"),
                kev_required_action=cve.get("cisaRequiredAction") or "",
                cpes=_nvd_cpes(cve.get("configurations") or []),
                references=[ref["url"] for ref in cve.get("references") or [] if ref.get("url")],
            )
        )
    return items


def _first_sentence(text: str, limit: int = 160) -> str:
    sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


# --- STIX 2.1 ---------------------------------------------------------------------------

# Observable paths in indicator patterns -> IOC types
_PATTERN_IOCS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"ipv4-addr:value\s*=\s*'([^']+)'"), "ip"),
    (re.compile(r"ipv6-addr:value\s*=\s*'([^']+)'"), "ip"),
    (re.compile(r"domain-name:value\s*=\s*'([^']+)'"), "domain"),
    (re.compile(r"url:value\s*=\s*'([^']+)'"), "url"),
    (re.compile(r"file:hashes\.'?SHA-256'?\s*=\s*'([0-9A-Fa-f]{64})'"), "sha256"),
    (re.compile(r"file:hashes\.'?MD5'?\s*=\s*'([0-9A-Fa-f]{32})'"), "md5"),
    (re.compile(r"process:name\s*=\s*'([^']+)'"), "process"),
]

_ACTOR_TYPES = {"campaign", "intrusion-set", "threat-actor", "malware"}


def iocs_in_pattern(pattern: str) -> list[Ioc]:
    found = []
    for regex, kind in _PATTERN_IOCS:
        for value in regex.findall(pattern):
            value = value.lower() if kind in ("sha256", "md5", "domain") else value
            found.append(Ioc(kind, value))
    return found


def parse_stix(data: bytes) -> list[FeedItem]:
    """One item per vulnerability (CVE) the bundle's indicators lead to, and one per
    report whose indicators lead to no CVE (a threat-activity advisory)."""
    document = _json(data, "STIX 2.1 bundle")
    if not isinstance(document, dict) or document.get("type") != "bundle":
        raise FeedParseError("not a STIX 2.1 bundle: top-level type is not 'bundle'")
    try:
        bundle = stix2.parse(document, allow_custom=True)
    except (STIXError, ValueError, TypeError) as exc:
        raise FeedParseError(f"invalid STIX 2.1 bundle: {exc}") from None

    objects = {obj.id: obj for obj in getattr(bundle, "objects", []) or []}
    neighbours: dict[str, set[str]] = defaultdict(set)
    for obj in objects.values():
        if obj.type == "relationship":
            neighbours[obj.source_ref].add(obj.target_ref)
            neighbours[obj.target_ref].add(obj.source_ref)

    def cve_of(obj) -> str | None:
        for ref in getattr(obj, "external_references", None) or []:
            if ref.get("source_name", "").lower() == "cve" and ref.get("external_id"):
                return ref["external_id"].upper()
        name = getattr(obj, "name", "")
        return name.upper() if CVE_PATTERN.fullmatch(name or "") else None

    def near(start: str, hops: int = 3) -> set[str]:
        """Objects within ``hops`` relationships of ``start`` (either direction): enough for
        indicator -indicates-> malware <-uses- campaign -targets-> vulnerability."""
        seen, frontier = {start}, {start}
        for _ in range(hops):
            frontier = {n for node in frontier for n in neighbours[node] if n in objects} - seen
            seen |= frontier
        return seen - {start}

    def modified(ids: Iterable[str]) -> datetime | None:
        times = [
            _as_utc(objects[i].modified) for i in ids if i in objects and hasattr(objects[i], "modified")
        ]
        return max(times) if times else None

    def actors(ids: Iterable[str]) -> list[str]:
        names = {objects[i].name for i in ids if i in objects and objects[i].type in _ACTOR_TYPES}
        return sorted(names)

    vulnerabilities = {obj.id: cve_of(obj) for obj in objects.values() if obj.type == "vulnerability"}
    by_cve: dict[str, set[str]] = {cve: {vid} for vid, cve in vulnerabilities.items() if cve}
    linked_indicators: set[str] = set()
    indicators_by_id = sorted(
        (obj for obj in objects.values() if obj.type == "indicator"), key=lambda o: o.id
    )
    for indicator in indicators_by_id:
        reach = near(indicator.id)
        for cve in {vulnerabilities[other] for other in reach if vulnerabilities.get(other)}:
            by_cve[cve] |= {indicator.id} | reach
            linked_indicators.add(indicator.id)

    items = []
    for cve, ids in sorted(by_cve.items()):
        vulnerability = next(objects[i] for i in ids if vulnerabilities.get(i) == cve)
        indicators = sorted((objects[i] for i in ids if objects[i].type == "indicator"), key=lambda o: o.id)
        report = _report_naming(objects, ids)
        items.append(
            FeedItem(
                key=cve,
                title=report.name if report else f"{cve} threat activity",
                cves=[cve],
                description=getattr(vulnerability, "description", "") or "",
                updated=modified(ids),
                published=_as_utc(getattr(report, "published", None)) if report else None,
                iocs=[
                    Ioc("cve", cve),
                    *_dedupe(ioc for ind in indicators for ioc in iocs_in_pattern(ind.pattern)),
                ],
                threat_actors=actors(ids),
                references=_urls(objects[i] for i in ids),
            )
        )
    for report in (obj for obj in objects.values() if obj.type == "report"):
        refs = set(report.object_refs)
        if refs & vulnerabilities.keys():
            continue  # its CVE items carry it
        indicators = sorted(
            (objects[i] for i in refs if i in objects and objects[i].type == "indicator"), key=lambda o: o.id
        )
        if not indicators or all(ind.id in linked_indicators for ind in indicators):
            continue
        reach = refs | {n for ind in indicators for n in near(ind.id)}
        items.append(
            FeedItem(
                key=report.id,
                title=report.name,
                description=getattr(report, "description", "") or "",
                published=_as_utc(getattr(report, "published", None)),
                updated=modified(reach | {report.id}),
                iocs=_dedupe(ioc for ind in indicators for ioc in iocs_in_pattern(ind.pattern)),
                threat_actors=actors(reach),
                references=_urls([report]),
            )
        )
    return items


def _report_naming(objects: dict, ids: set[str]):
    reports = [obj for obj in objects.values() if obj.type == "report" and ids & set(obj.object_refs)]
    return max(reports, key=lambda r: len(ids & set(r.object_refs))) if reports else None


def _urls(objs: Iterable) -> list[str]:
    urls = []
    for obj in objs:
        for ref in getattr(obj, "external_references", None) or []:
            if ref.get("url") and ref["url"] not in urls:
                urls.append(ref["url"])
    return urls


def _as_utc(value) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _dedupe(iocs: Iterable[Ioc]) -> list[Ioc]:
    return list(dict.fromkeys(iocs))


# --- RSS / Atom -------------------------------------------------------------------------


def _entry_time(entry, *fields: str) -> datetime | None:
    present = set(entry.keys())  # .get() of an absent updated_parsed warns (feedparser issue 310)
    for field in fields:
        parsed = entry.get(field) if field in present else None
        if parsed:
            return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    return None


def _plain(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html or "").split())


def parse_rss(data: bytes) -> list[FeedItem]:
    parsed = feedparser.parse(data)
    if not parsed.get("version"):
        reason = parsed.get("bozo_exception") or "no RSS or Atom root element"
        raise FeedParseError(f"not an RSS or Atom feed: {reason}")
    items = []
    for entry in parsed.entries:
        title = _plain(entry.get("title", ""))
        summary = _plain(entry.get("summary", ""))
        link = entry.get("link", "")
        key = entry.get("id") or link or title
        if not key:
            continue
        text = f"{title} {summary} {' '.join(tag.get('term', '') for tag in entry.get('tags', []))}"
        items.append(
            FeedItem(
                key=hashlib.sha256(key.encode()).hexdigest()[:16],
                title=title or link,
                cves=cves_in(f"{title} {summary}"),
                description=summary,
                published=_entry_time(entry, "published_parsed", "updated_parsed"),
                updated=_entry_time(entry, "updated_parsed", "published_parsed"),
                references=[link] if link else [],
                text=text,
            )
        )
    return items


PARSERS: dict[str, Callable[[bytes], list[FeedItem]]] = {
    "cisa_kev": parse_cisa_kev,
    "nvd_cve": parse_nvd_cve,
    "stix": parse_stix,
    "rss": parse_rss,
}


def parse_feed(feed_format: str, data: bytes) -> list[FeedItem]:
    try:
        parser = PARSERS[feed_format]
    except KeyError:
        raise FeedParseError(f"unknown feed format {feed_format!r}") from None
    return [msgspec.structs.replace(item, format=feed_format) for item in parser(data)]
