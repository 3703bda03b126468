"""Feature extraction: one alert -> one fixed-length numeric vector.

Shared by ml-retrain (training, evaluation, the probe) and soc-cycle (scoring), so a
model is always fed exactly the features it was trained on. ``FEATURE_VERSION`` is
stored with every model version; a consumer refuses a model trained on another one.
Change the features -> bump the version.

Everything here is pure and cheap (a few microseconds per alert): the SOC extracts a
whole triage batch into one matrix and scores it in one call per model.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import zlib
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from contracts.soc import SEVERITIES, Alert, AlertSummary

FEATURE_VERSION = 1

# --- vocabularies (documented in docs/soc.md) ----------------------------------------

SOURCE_KINDS = {
    "edr": ("crowdstrike", "defender", "sentinelone", "carbonblack", "sysmon", "edr", "elastic-endpoint"),
    "network": ("suricata", "zeek", "snort", "ids", "paloalto", "firewall", "netflow", "fortigate"),
    "identity": ("okta", "azuread", "entra", "ad", "auth", "duo", "ldap", "windows-security"),
    "cloud": ("cloudtrail", "guardduty", "gcp", "azure", "aws", "kubernetes", "k8s"),
    "email": ("proofpoint", "mimecast", "o365", "email", "gmail"),
    "web": ("proxy", "zscaler", "waf", "nginx", "cloudflare"),
}
SOURCE_ORDER = (*SOURCE_KINDS, "other")

# MITRE ATT&CK technique -> tactic, for the techniques alerts commonly carry. Unknown
# techniques still count in `technique_count`.
TACTICS = (
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "credential-access",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "exfiltration",
    "impact",
)
TECHNIQUE_TACTIC = {
    "T1566": "initial-access",
    "T1190": "initial-access",
    "T1078": "initial-access",
    "T1133": "initial-access",
    "T1059": "execution",
    "T1204": "execution",
    "T1047": "execution",
    "T1053": "persistence",
    "T1547": "persistence",
    "T1136": "persistence",
    "T1543": "persistence",
    "T1068": "privilege-escalation",
    "T1548": "privilege-escalation",
    "T1027": "defense-evasion",
    "T1070": "defense-evasion",
    "T1562": "defense-evasion",
    "T1218": "defense-evasion",
    "T1110": "credential-access",
    "T1003": "credential-access",
    "T1555": "credential-access",
    "T1558": "credential-access",
    "T1046": "discovery",
    "T1087": "discovery",
    "T1018": "discovery",
    "T1082": "discovery",
    "T1021": "lateral-movement",
    "T1570": "lateral-movement",
    "T1005": "collection",
    "T1560": "collection",
    "T1071": "command-and-control",
    "T1105": "command-and-control",
    "T1219": "command-and-control",
    "T1572": "command-and-control",
    "T1048": "exfiltration",
    "T1567": "exfiltration",
    "T1041": "exfiltration",
    "T1486": "impact",
    "T1490": "impact",
    "T1485": "impact",
    "T1489": "impact",
}

# binaries attackers live off; their presence is a weak signal on its own
LOLBINS = frozenset(
    {
        "powershell.exe",
        "pwsh.exe",
        "cmd.exe",
        "rundll32.exe",
        "regsvr32.exe",
        "mshta.exe",
        "certutil.exe",
        "wmic.exe",
        "psexec.exe",
        "psexesvc.exe",
        "vssadmin.exe",
        "bitsadmin.exe",
        "cscript.exe",
        "wscript.exe",
        "schtasks.exe",
        "net.exe",
        "nltest.exe",
        "bash",
        "sh",
        "curl",
        "wget",
        "nc",
        "python",
        "python3",
    }
)
OFFICE_PARENTS = frozenset({"winword.exe", "excel.exe", "outlook.exe", "powerpnt.exe", "acrord32.exe"})
KNOWN_OFFENSIVE = ("mimikatz", "cobaltstrike", "beacon", "rubeus", "lazagne", "procdump", "sharphound")
PRIVILEGED_USER_MARKERS = ("admin", "root", "svc-", "service", "backup", "domain-admin", "sa_")
ENCODED_MARKERS = (" -enc", " -encodedcommand", "frombase64string", "base64 -d", "iex(", "downloadstring")

TITLE_BUCKETS = 24  # hashed words of the rule title: lets models learn per-rule FP rates

FEATURE_NAMES: tuple[str, ...] = (
    "severity",
    *(f"source_{kind}" for kind in SOURCE_ORDER),
    *(f"tactic_{tactic}" for tactic in TACTICS),
    "technique_count",
    "src_ip_present",
    "src_ip_external",
    "dst_ip_present",
    "dst_ip_external",
    "domain_present",
    "user_present",
    "user_privileged",
    "host_server",
    "host_domain_controller",
    "process_present",
    "process_lolbin",
    "process_offensive_tool",
    "process_parent_office",
    "process_hash_present",
    "cmdline_length_log",
    "cmdline_entropy",
    "cmdline_encoded",
    "cve_count",
    "event_count_log",
    "hour_sin",
    "hour_cos",
    "off_hours",
    "weekend",
    *(f"title_{i}" for i in range(TITLE_BUCKETS)),
)
N_FEATURES = len(FEATURE_NAMES)
_SEVERITY = {name: index for index, name in enumerate(SEVERITIES)}
_TACTIC_INDEX = {tactic: index for index, tactic in enumerate(TACTICS)}
_SOURCE_BASE = 1
_TACTIC_BASE = _SOURCE_BASE + len(SOURCE_ORDER)
_REST = _TACTIC_BASE + len(TACTICS)
_TITLE_BASE = N_FEATURES - TITLE_BUCKETS


@lru_cache(maxsize=4096)
def source_kind(source: str) -> str:
    lowered = source.lower()
    for kind, names in SOURCE_KINDS.items():
        if any(name in lowered for name in names):
            return kind
    return "other"


# IPv4 ranges that are not globally routable (RFC 6890 and friends), as (network, mask):
# an integer test per range is ~20x faster than ipaddress for the common case
_NOT_GLOBAL_V4 = tuple(
    (int(net.network_address), int(net.netmask))
    for net in map(
        ipaddress.ip_network,
        (
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.88.99.0/24",
            "192.168.0.0/16",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "240.0.0.0/4",  # reserved and broadcast; multicast counts as global, as in ipaddress
        ),
    )
)


_GLOBAL_EXCEPTIONS_V4 = frozenset(int(ipaddress.ip_address(ip)) for ip in ("192.0.0.9", "192.0.0.10"))


@lru_cache(maxsize=65536)
def is_external(ip: str) -> bool:
    """On the internet (globally routable), as opposed to private, shared or reserved."""
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET, ip))
    except OSError:
        return ipaddress.ip_address(ip).is_global  # IPv6
    if value in _GLOBAL_EXCEPTIONS_V4:
        return True
    return not any(value & mask == network for network, mask in _NOT_GLOBAL_V4)


@lru_cache(maxsize=8192)
def title_buckets(title: str) -> tuple[int, ...]:
    words = {word for word in title.lower().replace("-", " ").replace("_", " ").split() if len(word) > 2}
    return tuple(sorted({zlib.crc32(word.encode()) % TITLE_BUCKETS for word in words}))


def tactic_of(technique: str) -> str | None:
    return TECHNIQUE_TACTIC.get(technique.split(".", 1)[0])


def entropy(text: str) -> float:
    if not text:
        return 0.0
    counts: dict[str, int] = {}
    for char in text:
        counts[char] = counts.get(char, 0) + 1
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def is_privileged(user: str) -> bool:
    lowered = user.lower()
    return any(marker in lowered for marker in PRIVILEGED_USER_MARKERS)


def host_role(host: str) -> tuple[bool, bool]:
    """(server, domain controller), from the naming conventions most estates use."""
    lowered = host.lower()
    dc = lowered.startswith(("dc-", "dc0", "dc1", "addc")) or "-dc-" in lowered
    server = dc or lowered.startswith(("srv", "db-", "web-", "app-", "sql", "fs-", "mail", "k8s-"))
    return server, dc


@lru_cache(maxsize=16_384)
def process_features(name: str, command_line: str, parent: str, has_hash: bool) -> tuple[float, ...]:
    """The eight process features; the same binaries and command lines recur all day."""
    base = name.lower().rsplit("\\", 1)[-1].rsplit("/", 1)[-1]
    cmdline = command_line.lower()
    return (
        1.0,
        float(base in LOLBINS),
        float(any(tool in base or tool in cmdline for tool in KNOWN_OFFENSIVE)),
        float(parent.lower() in OFFICE_PARENTS),
        float(has_hash),
        math.log1p(len(cmdline)),
        entropy(cmdline),
        float(any(marker in cmdline for marker in ENCODED_MARKERS)),
    )


@lru_cache(maxsize=4096)
def _user_privileged(user: str) -> bool:
    return is_privileged(user)


@lru_cache(maxsize=4096)
def _host_role(host: str) -> tuple[bool, bool]:
    return host_role(host)


def extract_into(row: np.ndarray, alert: Alert | AlertSummary) -> None:
    row[0] = _SEVERITY[alert.severity]
    row[_SOURCE_BASE + SOURCE_ORDER.index(source_kind(alert.source))] = 1.0
    for technique in alert.techniques:
        tactic = tactic_of(technique)
        if tactic is not None:
            row[_TACTIC_BASE + _TACTIC_INDEX[tactic]] = 1.0
    i = _REST
    row[i] = len(alert.techniques)
    if alert.src_ip:
        row[i + 1] = 1.0
        row[i + 2] = float(is_external(alert.src_ip))
    if alert.dst_ip:
        row[i + 3] = 1.0
        row[i + 4] = float(is_external(alert.dst_ip))
    row[i + 5] = float(bool(alert.domain))
    if alert.user:
        row[i + 6] = 1.0
        row[i + 7] = float(_user_privileged(alert.user))
    server, dc = _host_role(alert.host)
    row[i + 8] = float(server)
    row[i + 9] = float(dc)
    process = alert.process
    if process is not None:
        row[i + 10 : i + 18] = process_features(
            process.name, process.command_line, process.parent, process.sha256 is not None
        )
    row[i + 18] = len(alert.cves)
    row[i + 19] = math.log1p(alert.count)
    hour = alert.time.hour + alert.time.minute / 60
    row[i + 20] = math.sin(2 * math.pi * hour / 24)
    row[i + 21] = math.cos(2 * math.pi * hour / 24)
    row[i + 22] = float(hour < 7 or hour >= 20)
    row[i + 23] = float(alert.time.weekday() >= 5)
    for bucket in title_buckets(alert.title):
        row[_TITLE_BASE + bucket] = 1.0


def extract(alert: Alert | AlertSummary) -> np.ndarray:
    row = np.zeros(N_FEATURES, dtype=np.float64)
    extract_into(row, alert)
    return row


def extract_batch(alerts: Iterable[Alert | AlertSummary]) -> np.ndarray:
    items = list(alerts)
    matrix = np.zeros((len(items), N_FEATURES), dtype=np.float64)
    for row, alert in zip(matrix, items, strict=True):
        extract_into(row, alert)
    return matrix
