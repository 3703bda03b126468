"""heal-check's tuning: ``AOC_HEALING_*`` environment variables (docs/healing.md).
Loop intervals are the shared ``AOC_SCHEDULES`` (heal-check.heartbeat_watch, ...)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.systems import SYSTEMS

SELF = "heal-check"


class HealingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AOC_HEALING_", extra="ignore")

    watched: list[str] = Field(
        default_factory=lambda: [slug for slug in SYSTEMS if slug != SELF],
        description="Engines whose heartbeats heal-check watches (JSON list). heal-check cannot heal "
        "itself: the launcher's supervisor restarts its process.",
    )
    check_timeout: float = Field(5.0, gt=0, description="Seconds each subsystem check or probe may take.")
    detail_timeout: float = Field(
        1.0,
        gt=0,
        description="Seconds an engine has to answer the liveness pass's detail request; a "
        "silent engine gets divergence_grace before it counts as stalled.",
    )
    startup_grace: float | None = Field(
        None,
        ge=0,
        description="After heal-check starts, an engine never heard from is 'unknown', not "
        "'unreachable', for this long (default: 2x the heartbeat timeout).",
    )
    stall_factor: float = Field(3.0, ge=1, description="A loop is stalled after this many intervals ...")
    stall_floor: float = Field(900.0, ge=0, description="... and at least this many seconds without a cycle.")
    divergence_grace: float = Field(
        60.0, ge=0, description="Seconds an engine may report a state other than its desired one."
    )
    verify_after: float = Field(
        90.0, gt=0, description="Seconds after a remediation before its success or failure is judged."
    )
    supervisor_grace: float = Field(
        120.0,
        gt=0,
        description="Seconds an unreachable engine is left to the launcher's supervisor "
        "before heal-check escalates (and counts a failure on its breaker).",
    )
    breaker_threshold: int = Field(
        3, ge=1, description="Consecutive failed remediations that open a breaker."
    )
    breaker_cooldown: float = Field(
        600.0, gt=0, description="Seconds an open breaker waits before half-open."
    )
    freshness_factor: float = Field(3.0, gt=0, description="A feed is stale after this many schedules.")
    consumer_lag_threshold: int = Field(
        10_000, ge=1, description="Pending messages that make a consumer lag."
    )
    log_size: int = Field(200, ge=10, description="Healing-log entries kept (status shows the newest 10).")
    replay_hours: float = Field(24.0, gt=0, description="How far back the healing log is rebuilt at start.")
