"""advisory-refresh's configuration: environment settings, the feeds file and the
asset inventory file. Loading is pure (no network); a bad file is a clear error that
the engine reports on every refresh instead of crashing its process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(__file__).resolve().parent / "data"


class AdvisorySettings(BaseSettings):
    """``AOC_ADVISORY_*`` environment variables (see docs/advisory.md)."""

    model_config = SettingsConfigDict(env_prefix="AOC_ADVISORY_", extra="ignore")

    feeds_file: Path = Field(DATA_DIR / "feeds.json", description="The feeds config (JSON).")
    inventory_file: Path = Field(DATA_DIR / "inventory.json", description="The asset inventory (JSON).")
    fetch_timeout: float = Field(20.0, gt=0, description="Seconds per HTTP attempt (connect + read).")
    fetch_attempts: int = Field(4, ge=1, le=10, description="HTTP attempts per feed per refresh.")
    retry_wait: float = Field(1.0, ge=0, description="First backoff between attempts; doubles, capped.")
    retry_wait_max: float = Field(30.0, ge=0, description="Longest backoff between attempts.")
    max_feed_bytes: int = Field(64 * 1024 * 1024, gt=0, description="A bigger feed body is refused.")
    max_redirects: int = Field(5, ge=0, le=10, description="Redirect hops followed (each one re-checked).")
    allow_plain_http: bool = Field(False, description="Allow http:// feed URLs (tests, lab mirrors).")
    extra_allowed_hosts: list[str] = Field(
        default_factory=list, description="Hosts allowed in addition to the feeds file's allowed_hosts."
    )
    ssrf_allow_networks: list[str] = Field(
        default_factory=list,
        description="TEST/LAB ONLY: networks (CIDR) the SSRF guard lets through although they are "
        "loopback/private. Empty in production.",
    )
    refresh_concurrency: int = Field(4, ge=1, le=32, description="Feeds fetched at the same time.")
    user_agent: str = "AOC-advisory-refresh/0.1 (+threat-intel refresh)"


FeedFormat = Literal["cisa_kev", "nvd_cve", "stix", "rss"]
FeedName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


class FeedConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: FeedName  # also its key in the aoc_advisory_feeds bucket
    format: FeedFormat
    url: str | None = None
    path: str | None = None  # relative to the feeds file
    schedule_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1800.0
    enabled: bool = True
    headers: dict[str, str] = {}  # e.g. NVD's apiKey

    @property
    def source(self) -> str:
        return self.url or self.path or ""


class FeedsFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    feeds: list[FeedConfig]
    allowed_hosts: list[str] = []
    description: str = ""


class ConfigError(ValueError):
    """A feeds or inventory file that cannot be used; the message names the file and the problem."""


def load_feeds(path: Path) -> FeedsFile:
    try:
        config = msgspec.json.decode(path.read_bytes(), type=FeedsFile)
    except OSError as exc:
        raise ConfigError(f"cannot read feeds file {path}: {exc.strerror or exc}") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"invalid feeds file {path}: {exc}") from None
    names = [feed.name for feed in config.feeds]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"invalid feeds file {path}: duplicate feed names {duplicates}")
    resolved = []
    for feed in config.feeds:
        if (feed.url is None) == (feed.path is None):
            raise ConfigError(f"invalid feeds file {path}: feed {feed.name!r} needs exactly one of url, path")
        if feed.url is not None and not feed.url.lower().startswith(("https://", "http://")):
            raise ConfigError(f"invalid feeds file {path}: feed {feed.name!r} url must be http(s)")
        if feed.path is not None:
            feed = msgspec.structs.replace(feed, path=str((path.parent / feed.path).resolve()))
        resolved.append(feed)
    return msgspec.structs.replace(config, feeds=resolved)


class Asset(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    vendor: str
    product: str
    name: str = ""
    version: str = ""
    aliases: list[str] = []  # other names of the product ("Log4j" for "Log4j2")
    cpe: list[str] = []  # "cpe:2.3:<part>:<vendor>:<product>" prefixes
    criticality: Literal["critical", "high", "medium", "low"] = "medium"
    internet_facing: bool = False
    owner: str = ""


class InventoryFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    assets: list[Asset]
    description: str = ""


def load_inventory(path: Path) -> list[Asset]:
    try:
        return msgspec.json.decode(path.read_bytes(), type=InventoryFile).assets
    except OSError as exc:
        raise ConfigError(f"cannot read inventory file {path}: {exc.strerror or exc}") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"invalid inventory file {path}: {exc}") from None
