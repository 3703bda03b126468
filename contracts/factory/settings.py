"""The environment of the factory line (``AOC_FRONTEND_ROOT``, the release store, the
deploy command and build). The shared ``Settings`` (contracts/settings.py) stays as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.settings import Settings


class FactorySettings(BaseSettings):
    """Environment of the factory line; the shared ``Settings`` stays as it is."""

    model_config = SettingsConfigDict(env_prefix="AOC_", extra="ignore")

    frontend_root: Path | None = Field(
        None, description="Root of the Next.js frontend tree; default <AOC_DATA_DIR>/frontend."
    )
    releases_dir: Path | None = Field(
        None, description="Where the deploy engine keeps releases; default <AOC_DATA_DIR>/releases."
    )
    deploy_command: str | None = Field(
        None,
        description="Shell command run for each release (image build, kubectl rollout restart); "
        "its exit code decides success. Gets AOC_RELEASE_ID, AOC_RELEASE_DIR, AOC_DEPLOY_ACTION.",
    )
    deploy_timeout: float = Field(600.0, gt=0, description="Seconds before the deploy command is killed.")
    releases_keep: int = Field(20, ge=2, description="Releases kept on disk (the current one always is).")
    deploy_build: Literal["auto", "always", "never"] = Field(
        "auto",
        description="The built-in `next build` of each release that has a package.json: auto runs it "
        "when no AOC_DEPLOY_COMMAND is set, always runs it before the command, never skips it.",
    )
    frontend_node_modules: Path | None = Field(
        None,
        description="node_modules the built-in release build uses, managed by you. Unset: the deploy "
        "engine installs them with `npm ci` from the release's package-lock.json into "
        "<AOC_RELEASES_DIR>/.deps/<lockfile digest>, once per lockfile.",
    )

    def frontend(self, settings: Settings) -> Path:
        return (self.frontend_root or settings.data_dir / "frontend").resolve()

    def releases(self, settings: Settings) -> Path:
        return (self.releases_dir or settings.data_dir / "releases").resolve()
