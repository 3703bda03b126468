"""The registry of the seven engines: slugs (used verbatim in subjects and URLs),
labels, and the schedule each one advertises (DESIGN.md §3)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SystemInfo:
    slug: str
    label: str
    schedule: str
    module: str  # python -m services.<module>
    extras: tuple[str, ...]  # status fields beyond the common ones


SYSTEMS: dict[str, SystemInfo] = {
    s.slug: s
    for s in (
        SystemInfo(
            "integrity-scan",
            "Platform Integrity Monitor",
            "Every 30 min",
            "integrity",
            ("total_scans", "pages_generated", "pending_deploy"),
        ),
        SystemInfo(
            "deploy",
            "Auto-Deploy Pipeline",
            "On demand (watches integrity monitor)",
            "deploy",
            ("deploy_history", "is_deploying", "total_deploys"),
        ),
        SystemInfo(
            "soc-cycle",
            "Autonomous SOC Engine",
            "4 concurrent loops (30min / 10s / 1hr / 5min)",
            "soc",
            ("alerts_processed", "auto_resolved", "escalated_to_human"),
        ),
        SystemInfo(
            "heal-check",
            "Self-Healing Engine",
            "4 concurrent loops (30s / 60s / 120s / 1hr)",
            "healing",
            ("circuit_breakers", "healing_log"),
        ),
        SystemInfo(
            "ml-retrain",
            "ML Training Pipeline",
            "Auto-retrain at 100 feedback samples",
            "ml",
            ("training_buffer", "retrain_threshold", "total_retrains"),
        ),
        SystemInfo(
            "advisory-refresh",
            "Threat Advisory Engine",
            "Every 30 min",
            "advisory",
            ("total_advisories", "feed_count"),
        ),
        SystemInfo(
            "frontend-factory",
            "Frontend Factory Engine",
            "Continuous 10-second queue check",
            "factory",
            ("total_requirements", "total_generated", "total_deployed", "success_rate_pct"),
        ),
    )
}

ALL = "all"  # the broadcast target in aoc.ctl.all.<verb>


def is_known_system(slug: str) -> bool:
    return slug in SYSTEMS
