"""The one settings class. Every process reads the same environment variables, so
several stacks can run side by side by changing ports and the data dir."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A list setting read from one variable: comma-separated, or a JSON array.
CommaList = Annotated[list[str], NoDecode]

STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# NATS user names become a subject token (aoc.ctl.<system>.<verb>.<user>) and a file name
NATS_USER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# an instance id is a subject token ($SRV.PING.aoc-<slug>.<id>) and part of a log file name
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
CLUSTER_SIZES = (1, 3, 5)  # JetStream needs a majority: 2 or 4 servers survive no more loss than 1 or 3


def default_instance_id() -> str:
    """<host>-<pid>: unique per process on a machine, and per container (its hostname)."""
    host = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname()).strip("-_") or "host"
    return f"{host[:48]}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AOC_", extra="ignore", populate_by_name=True)

    # --- where things are -------------------------------------------------------------
    nats_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("NATS_URL", "AOC_NATS_URL"),
        description="Use this NATS server, or cluster (comma-separated URLs); when unset, the embedded "
        "server(s) on AOC_NATS_PORT.",
    )
    nats_port: int = Field(
        4222,
        ge=1,
        le=65535,
        description="Client port of the embedded nats-server; in a cluster, of the first (the others "
        "take the next ports).",
    )
    nats_monitor_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Embedded nats-server monitoring port (loopback only; a cluster uses the next ports "
        "too); 0 = off.",
    )
    nats_cluster: int = Field(
        1,
        description="How many nats-servers `aoc up` runs: 1, or a cluster of 3 (or 5) on loopback with "
        "routes and replicated streams (docs/scale-out.md).",
    )
    nats_route_port: int = Field(
        6222,
        ge=1,
        le=65535,
        description="Route (cluster) port of the first embedded nats-server; the others take the next ports.",
    )
    nats_cluster_name: str = Field(
        "aoc", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="Name of the embedded NATS cluster."
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
    audit_max_bytes: int = Field(
        1024**3,
        gt=0,
        description="Size cap of AOC_AUDIT (the audit records, kept for the retention age); "
        "new copies are refused when full, and the gateway alerts from 80%.",
    )
    refusal_fold_window_s: float = Field(
        10.0,
        gt=0,
        description="Refused commands of one sender beyond the first 10 in this window are folded "
        "into one audit record (its `repeats` says how many).",
    )
    stream_replicas: int | None = Field(
        None,
        ge=1,
        le=5,
        description="Replicas of every AOC stream, KV bucket and object store (default: AOC_NATS_CLUSTER).",
    )
    duplicate_window_s: float = Field(
        600.0, ge=1, description="Nats-Msg-Id dedup window; longer than the longest publish retry."
    )

    # --- instances ------------------------------------------------------------------------
    instances: int = Field(
        1,
        ge=1,
        le=5,
        description="Processes `aoc up` runs per engine: one is active (it holds the engine's "
        "lease), the others are standbys that take over (docs/scale-out.md).",
    )
    instance_id: str | None = Field(
        None,
        description="This process's instance id, unique among live instances of one engine "
        "(discovery, logs, the lease); `aoc up` sets <slug>-<n>; default <host>-<pid>. A restart "
        "under the same id takes over its predecessor's lease at once.",
    )
    lease_ttl: float = Field(
        5.0, gt=0.2, le=5.0, description="Lease time of an engine's active instance (takeover after it)."
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
        100_000,
        ge=1000,
        description="Activity rows the gateway keeps in memory (older ones: a bounded scan of the stream).",
    )
    activity_scan_limit: int = Field(
        2000,
        ge=100,
        le=100_000,
        description="Stream sequences one activity-log page may read below the in-memory window.",
    )
    snapshots: bool = Field(
        True, description="The gateway loads and writes read-model snapshots (false: full replay at start)."
    )
    snapshot_every_events: int = Field(
        50_000, ge=100, description="Snapshot the gateway's read models after this many new events..."
    )
    snapshot_interval_s: float = Field(
        30.0, gt=0, description="... or this many seconds after the last one, if any event came since."
    )
    snapshot_store_max_bytes: int = Field(
        1024**3, gt=0, description="Size cap of the snapshot object store (aoc_snapshots)."
    )

    # --- HTTP authentication and authorization (docs/security.md) -----------------------
    auth_enabled: bool = Field(
        True,
        description="Require a bearer token or JWT on the API. false = every caller is an anonymous "
        "admin (logged loudly at start); only for a throwaway local stack.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="An admin API token (identity 'admin'); overrides the one `aoc up` generates "
        "into the data dir. Kept only as a hash in memory.",
    )
    admin_token_file: Path | None = Field(
        None, description="File holding the admin API token (a Docker/Kubernetes secret)."
    )
    api_tokens_file: Path | None = Field(
        None,
        description="Registry of API tokens (name, role, SHA-256 of the token); "
        "default <data dir>/secrets/api-tokens.json.",
    )
    jwt_secret: SecretStr | None = Field(None, description="HS256 key for JWTs (use one key source only).")
    jwt_secret_file: Path | None = Field(None, description="File holding the HS256 key for JWTs.")
    jwt_public_key_file: Path | None = Field(None, description="PEM public key for RS256 JWTs.")
    jwt_jwks_file: Path | None = Field(None, description="JWKS file with the RS256 keys for JWTs (by kid).")
    jwt_issuer: str | None = Field(None, description="Required `iss` of JWTs (needed when JWTs are on).")
    jwt_audience: str | None = Field(None, description="Required `aud` of JWTs (needed when JWTs are on).")
    jwt_role_claim: str = Field("roles", description="JWT claim with the AOC role(s): viewer/operator/admin.")
    jwt_leeway_s: float = Field(30.0, ge=0, le=300, description="Clock skew allowed on JWT exp/nbf.")
    stream_ticket_ttl_s: float = Field(
        60.0, gt=0, le=600, description="Lifetime of the signed query ticket that opens the SSE stream."
    )

    # --- HTTP hardening -----------------------------------------------------------------
    cors_origins: CommaList = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (comma-separated). "
        "Empty = same origin only; '*' is refused.",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted (413 above).")
    rate_limit_per_minute: float = Field(
        60.0, gt=0, description="Sustained mutating requests per identity per minute (429 above)."
    )
    rate_limit_burst: int = Field(30, ge=1, description="Mutating requests an identity may send at once.")
    docs: bool = Field(False, description="Serve OpenAPI docs (/docs, /redoc, /openapi.json).")
    metrics_allow: CommaList = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="Client networks allowed to scrape /metrics (comma-separated CIDRs).",
    )
    csp: str = Field(STRICT_CSP, description="Content-Security-Policy of every response.")

    # --- operator tools: MCP over HTTP, natural-language ask (docs/operator-tools.md) ---
    mcp_http: bool = Field(
        True,
        description="Serve the `aoc mcp` tools over Streamable HTTP at /mcp (stateless, JSON), "
        "as the caller's token; off: 404.",
    )
    ai_features_enabled: bool = Field(
        False,
        description="Serve POST /api/v1/ask (natural-language questions over the read models); off: 404.",
    )
    llm_url: str | None = Field(
        None,
        description="OpenAI-compatible API base (e.g. https://llm.example/v1) that refines ask answers; "
        "unset: answers come from the built-in intent parser only.",
    )
    llm_allowed_domains: CommaList = Field(
        default_factory=list,
        description="Host names AOC_LLM_URL may point at (comma-separated; a leading '.' allows "
        "subdomains). Checked before any connection; empty = no LLM is ever called.",
    )
    llm_model: str = Field("gpt-4o-mini", max_length=200, description="Model name sent to the LLM API.")
    llm_api_key: SecretStr | None = Field(None, description="Bearer key for the LLM API.")
    llm_api_key_file: Path | None = Field(None, description="File holding the LLM API key.")
    llm_timeout_s: float = Field(10.0, gt=0, le=120, description="How long one LLM call may take.")

    # --- webhook ingestion of alerts (docs/soc.md, docs/security.md) -------------------
    webhook_sources: SecretStr | None = Field(
        None,
        description='Webhook alert sources, JSON: {"<source>": {"secret" or "secret_file", "format", '
        '"signature_header", "delivery_header", "timestamp_header", "tolerance_s"}}. Never printed.',
    )
    webhook_sources_file: Path | None = Field(
        None, description="File holding the webhook sources JSON (a Docker/Kubernetes secret)."
    )
    webhook_delivery_ttl_hours: float = Field(
        168.0,
        gt=0,
        description="How long a webhook delivery id is remembered (a redelivery is accepted once).",
    )
    webhook_rate_limit_per_minute: float = Field(
        1200.0, gt=0, description="Sustained webhook requests per client address per minute (429 above)."
    )
    webhook_rate_limit_burst: int = Field(
        300, ge=1, description="Webhook requests a client may send at once."
    )

    # --- NATS credentials (docs/security.md) --------------------------------------------
    nats_user: str | None = Field(None, description="NATS user of this process (else: from the data dir).")
    nats_password: SecretStr | None = Field(None, description="Password of AOC_NATS_USER.")
    nats_password_file: Path | None = Field(None, description="File holding the password of AOC_NATS_USER.")
    nats_secure: bool = Field(
        True,
        description="The embedded nats-server runs with per-service users and subject permissions "
        "(no anonymous access).",
    )
    nats_credentials_dir: Path | None = Field(
        None,
        description="Where the embedded server's generated NATS credentials live; "
        "default <data dir>/nats/credentials.",
    )
    nats_operators: CommaList = Field(
        default_factory=lambda: ["operator"],
        description="Human NATS users of the embedded server (comma-separated); each may send "
        "control commands on aoc.ctl.<system>.<verb>.<user>.",
    )

    # --- SIEM export and control-plane alerts (docs/siem.md) ----------------------------
    siem_sinks: str | None = Field(
        None,
        description='SIEM sinks, a JSON list of {"name", "kind" (syslog, hec or webhook), "url", ...}; '
        "read by the SIEM service (docs/siem.md).",
    )
    siem_allowed_hosts: CommaList = Field(
        default_factory=list,
        description="Host names (or *.suffix) a SIEM sink URL may name (comma-separated); empty = none.",
    )
    siem_allowed_networks: CommaList = Field(
        default_factory=list,
        description="Networks (CIDRs) a SIEM sink may reach although private, loopback or link-local "
        "(an on-premises SIEM); empty = public addresses only.",
    )
    siem_rules_file: Path | None = Field(
        None, description="Alert rules (YAML); default: the built-in rules of services/siem/rules.yaml."
    )

    @field_validator("nats_sync_interval")
    @classmethod
    def _sync_interval(cls, value: str) -> str:
        if value != "always" and not re.fullmatch(r"\d+(ms|s|m)", value):
            raise ValueError("must be 'always' or a duration like 500ms, 1s, 2m")
        return value

    @field_validator("nats_cluster")
    @classmethod
    def _cluster_size(cls, value: int) -> int:
        if value not in CLUSTER_SIZES:
            raise ValueError(f"must be one of {', '.join(map(str, CLUSTER_SIZES))} (a majority must survive)")
        return value

    @field_validator("instance_id")
    @classmethod
    def _instance_id(cls, value: str | None) -> str | None:
        if value is not None and not INSTANCE_ID.fullmatch(value):
            raise ValueError("letters, digits, _ and -, at most 64, starting with a letter or digit")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value().encode()) < 32:
            raise ValueError("an HS256 key must be at least 32 bytes (RFC 7518 §3.2)")
        return secret

    @field_validator("llm_url")
    @classmethod
    def _llm_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(/[\w./~%-]*)?", value):
            raise ValueError(f"{value!r} is not an http(s) URL like https://llm.example/v1")
        return value.rstrip("/") if value else value

    @field_validator("llm_allowed_domains")
    @classmethod
    def _llm_domains(cls, domains: list[str]) -> list[str]:
        for domain in domains:
            if not re.fullmatch(r"\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", domain):
                raise ValueError(f"{domain!r} is not a host name (a leading '.' allows its subdomains)")
        return [domain.lower() for domain in domains]

    @field_validator(
        "cors_origins",
        "metrics_allow",
        "nats_operators",
        "llm_allowed_domains",
        "siem_allowed_hosts",
        "siem_allowed_networks",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin == "*" or not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", origin):
                raise ValueError(f"{origin!r} is not an origin like https://ops.example.com ('*' is refused)")
        return origins

    @field_validator("metrics_allow", "siem_allowed_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            ipaddress.ip_network(network, strict=False)  # raises ValueError with a clear message
        return networks

    @field_validator("nats_operators")
    @classmethod
    def _operators(cls, users: list[str]) -> list[str]:
        for user in users:
            if not NATS_USER_NAME.fullmatch(user):
                raise ValueError(f"NATS user {user!r}: lowercase letters, digits, _ and -, at most 32")
        return users

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if self.heartbeat_timeout is None:
            self.heartbeat_timeout = 3 * self.heartbeat_interval
        if self.stream_replicas is None:
            self.stream_replicas = self.nats_cluster
        if self.instance_id is None:
            self.instance_id = default_instance_id()
        keys = [self.jwt_secret, self.jwt_secret_file, self.jwt_public_key_file, self.jwt_jwks_file]
        if sum(key is not None for key in keys) > 1:
            # one key source pins one algorithm: an RS256 public key must never double as an HMAC secret
            raise ValueError(
                "configure one JWT key: AOC_JWT_SECRET(_FILE), AOC_JWT_PUBLIC_KEY_FILE or AOC_JWT_JWKS_FILE"
            )
        if any(key is not None for key in keys) and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError("JWTs need AOC_JWT_ISSUER and AOC_JWT_AUDIENCE")
        if self.llm_api_key is not None and self.llm_api_key_file is not None:
            raise ValueError("set AOC_LLM_API_KEY or AOC_LLM_API_KEY_FILE, not both")
        if self.webhook_sources is not None and self.webhook_sources_file is not None:
            raise ValueError("set AOC_WEBHOOK_SOURCES or AOC_WEBHOOK_SOURCES_FILE, not both")
        if self.nats_password is not None and self.nats_password_file is not None:
            raise ValueError("set AOC_NATS_PASSWORD or AOC_NATS_PASSWORD_FILE, not both")
        return self

    @property
    def embedded(self) -> bool:
        return not self.nats_url

    @property
    def effective_nats_url(self) -> str:
        """One URL, or a comma-separated list (a cluster): NATS_URL, else the embedded server(s)."""
        if self.nats_url:
            return ",".join(self.nats_servers)
        return ",".join(f"nats://127.0.0.1:{self.nats_port + node}" for node in range(self.nats_cluster))

    @property
    def nats_servers(self) -> list[str]:
        """The server list to connect to (nats-py does not split a comma-separated string)."""
        if not self.nats_url:
            return self.effective_nats_url.split(",")
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    @property
    def effective_instance_id(self) -> str:
        return self.instance_id or default_instance_id()

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @property
    def effective_api_tokens_file(self) -> Path:
        return self.api_tokens_file or self.secrets_dir / "api-tokens.json"

    @property
    def effective_nats_credentials_dir(self) -> Path:
        return self.nats_credentials_dir or self.data_dir / "nats" / "credentials"

    def interval(self, system: str, loop: str, default: float) -> float:
        return float(self.schedules.get(f"{system}.{loop}", default))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
