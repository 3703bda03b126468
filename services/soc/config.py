"""soc-cycle's own settings (environment variables AOC_SOC_*), documented in docs/soc.md.
Loop intervals are the shared AOC_SCHEDULES ({"soc-cycle.escalation": 10, ...})."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.soc.playbooks import PLAYBOOK_DIR
from services.soc.policy import DEFAULT_SLA_SECONDS, Thresholds


class SocConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AOC_SOC_", extra="ignore")

    fetch_batch: int = Field(256, ge=1, le=10_000, description="Queue messages pulled per fetch.")
    # a stop abandons an idle pull at once (EngineHost.until_stopping), so it may be long
    fetch_wait: float = Field(0.5, gt=0, description="Seconds a pull waits when the queue is empty.")
    max_alerts_per_cycle: int = Field(20_000, ge=1, description="Alerts one triage cycle takes at most.")
    round_alerts: int = Field(
        2000, ge=1, description="Alerts scored together (one call per model) and acked together."
    )
    ack_wait: float = Field(30.0, gt=0, description="Seconds before an unacked alert is redelivered.")
    memory_hours: float = Field(48.0, gt=0, description="How far back a restarted SOC replays its decisions.")
    max_alerts_in_memory: int = Field(
        200_000, ge=100, description="Decided alerts remembered (dedup, hunting)."
    )
    hunt_window_hours: float = Field(24.0, gt=0, description="Recent alerts the threat hunt searches.")
    playbooks_dir: Path = Field(PLAYBOOK_DIR, description="Directory of the SOAR playbook YAML files.")
    contain_probability: float = Field(0.85, ge=0, le=1)
    contain_threat: float = Field(70.0, ge=0, le=100)
    resolve_probability: float = Field(0.2, ge=0, le=1)
    critical_resolve_probability: float = Field(0.05, ge=0, le=1)
    resolve_threat: float = Field(30.0, ge=0, le=100)
    anomaly_guard: float = Field(0.8, ge=0, le=1)
    sla_seconds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_SLA_SECONDS),
        description='Escalation SLA per severity, JSON: {"critical": 900, "high": 3600, ...}.',
    )

    def thresholds(self) -> Thresholds:
        return Thresholds(
            contain_probability=self.contain_probability,
            contain_threat=self.contain_threat,
            resolve_probability=self.resolve_probability,
            critical_resolve_probability=self.critical_resolve_probability,
            resolve_threat=self.resolve_threat,
            anomaly_guard=self.anomaly_guard,
            sla_seconds={**DEFAULT_SLA_SECONDS, **self.sla_seconds},
        )
