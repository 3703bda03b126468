"""A service started while JetStream cannot answer yet (a server rejoining its cluster, a
leader election) waits for it instead of exiting on its first timeout."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from contracts.settings import Settings
from services.launcher.natsserver import NatsServer, find_binary, free_port
from services.runtime import EngineHost
from services.runtime.testing import engine_class
from tests.conftest import ADMIN_TOKEN, FAST


async def test_an_engine_started_before_jetstream_answers_waits_for_it(tmp_path: Path) -> None:
    port = free_port()
    # the same port, JetStream not enabled yet: every JetStream request goes unanswered
    plain = subprocess.Popen([str(find_binary()), "-a", "127.0.0.1", "-p", str(port)])
    server = NatsServer(tmp_path / "nats", port=port)
    try:
        await listening(port)
        settings = Settings(
            nats_url=f"nats://127.0.0.1:{port}", data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, **FAST
        )
        host = EngineHost(engine_class("deploy")(settings), settings)
        opening = asyncio.create_task(host.open())
        await asyncio.sleep(1.5)
        assert not opening.done(), opening  # waiting, not failed
        plain.terminate()
        plain.wait(10)
        server.start()  # JetStream now: the client reconnects and the start goes on
        await asyncio.wait_for(opening, 30)
        try:
            assert host.role == "active" and host.lifecycle.state == "running"
        finally:
            await host.close()
    finally:
        if plain.poll() is None:
            plain.kill()
        server.stop()


async def listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise TimeoutError(f"nothing listens on {port}")
