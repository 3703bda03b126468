"""Renders the configuration table (docs/configuration.md) from the Settings class, so
the documentation cannot drift from the code: `python -m contracts.settings_doc`."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from contracts.settings import Settings


def env_names(name: str, field) -> list[str]:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"AOC_{name.upper()}"]


def render() -> str:
    lines = [
        "# Configuration",
        "",
        "Every process (engines, gateway, `aoc`) reads the variables they share through one",
        "pydantic-settings class, `contracts.settings.Settings`, validated at start.",
        "This table is generated from that class (`python -m contracts.settings_doc`).",
        "An engine with knobs of its own reads them through its own settings class beside its",
        "code, documented with the engine: `AOC_SOC_*` and `AOC_ML_*` (docs/soc.md),",
        "`AOC_HEALING_*` (docs/healing.md), `AOC_ADVISORY_*` (docs/advisory.md) and the",
        "factory's (docs/factory.md).",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        computed = {
            "heartbeat_timeout": "3x heartbeat interval",
            "stream_replicas": "AOC_NATS_CLUSTER",
            "instance_id": "<host>-<pid>",
        }
        shown = computed.get(name, repr(default))
        if isinstance(default, Path):
            shown = str(default)
        variables = " / ".join(f"`{env}`" for env in env_names(name, field))
        lines.append(f"| {variables} | `{shown}` | {field.description or ''} |")
    lines += [
        "",
        "Other variables: `AOC_LOG_LEVEL` (default INFO) for the JSON logs; `AOC_GATEWAY_URL`",
        "and `AOC_TOKEN` (a bearer token) for the `aoc` CLI. Secrets (`AOC_ADMIN_TOKEN`,",
        "`AOC_JWT_SECRET`, `AOC_NATS_PASSWORD`) have `_FILE` variants for Docker/Kubernetes",
        "secrets and are never printed. docs/security.md explains the auth settings.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
