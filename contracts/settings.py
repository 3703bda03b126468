"""The one settings class. Every process reads the same environment variables, so
several stacks can run side by side by changing ports and the data dir."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AOC_", extra="ignore", populate_by_name=True)

    # --- where things are -------------------------------------------------------------
    nats_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("NATS_URL", "AOC_NATS_URL"),
        description="Use this NATS server/cluster; when unset, the embedded server on AOC_NATS_PORT.",
    )
    nats_port: int = Field(4222, ge=1, le=65535, description="Port of the embedded nats-server.")
    nats_monitor_port: int = Field(
        0, ge=0, le=65535, description="Embedded nats-server monitoring port (loopback only); 0 = off."
    )
    nats_sync_interval: str = Field(
        "always",
        description="Embedded nats-server fsync policy: 'always' (every write is on disk before its ack) "
        "or a duration like '1s'. See docs/decisions.md.",
    )
    http_host: str = Field("127.0.0.1", description="Gateway bind address.")
    http_port: int = Field(8080, ge=1, le=65535, description="Gateway HTTP port.")
    data_dir: Path = Field(Path(".aoc"), description="Embedded NATS store, logs, generated files.")

    # --- the stream ---------------------------------------------------------------------
    retention_days: float = Field(30.0, gt=0, description="Max age of events in AOC_EVENTS.")
    stream_max_bytes: int = Field(
        2 * 1024**3, gt=0, description="Size cap of AOC_EVENTS; oldest events go first."
    )
    stream_replicas: int = Field(
        1, ge=1, le=5, description="Replicas of every AOC stream and KV bucket (3 in a cluster)."
    )
    duplicate_window_s: float = Field(
        600.0, ge=1, description="Nats-Msg-Id dedup window; longer than the longest publish retry."
    )

    # --- liveness and control -----------------------------------------------------------
    heartbeat_interval: float = Field(5.0, gt=0, description="Seconds between engine heartbeats.")
    heartbeat_timeout: float | None = Field(
        None,
        description="Seconds without a heartbeat before a system is 'unreachable' (default 3x interval).",
    )
    control_timeout: float = Field(2.0, gt=0, description="How long the gateway waits for an engine's reply.")
    reply_budget: float = Field(
        1.2,
        gt=0,
        description="How long an engine works on a trigger before replying 'started' with a run id.",
    )
    stop_grace: float = Field(1.0, ge=0, description="How long a stop waits for an in-flight cycle.")
    publish_deadline: float = Field(30.0, gt=0, description="How long an event publish is retried.")
    autostart: bool = Field(True, description="Engines with no recorded desired state start running.")
    schedules: dict[str, float] = Field(
        default_factory=dict,
        description='Loop interval overrides in seconds, JSON: {"soc-cycle.triage": 5, "deploy.watch": 60}.',
    )

    # --- gateway ------------------------------------------------------------------------
    activity_window: int = Field(
        100_000, ge=1000, description="Activity rows the gateway keeps in memory (older: aoc audit replay)."
    )

    @field_validator("nats_sync_interval")
    @classmethod
    def _sync_interval(cls, value: str) -> str:
        import re

        if value != "always" and not re.fullmatch(r"\d+(ms|s|m)", value):
            raise ValueError("must be 'always' or a duration like 500ms, 1s, 2m")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if self.heartbeat_timeout is None:
            self.heartbeat_timeout = 3 * self.heartbeat_interval
        return self

    @property
    def embedded(self) -> bool:
        return not self.nats_url

    @property
    def effective_nats_url(self) -> str:
        return self.nats_url or f"nats://127.0.0.1:{self.nats_port}"

    def interval(self, system: str, loop: str, default: float) -> float:
        return float(self.schedules.get(f"{system}.{loop}", default))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
