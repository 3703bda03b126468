"""Callers of every role for the security tests, and a nats-server with users and
permissions (what `aoc up` runs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts.identity import Role
from contracts.settings import Settings
from services.launcher.natsserver import NatsServer
from services.shared.tokens import TokenStore
from tests.conftest import ADMIN_TOKEN


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role | None  # None: sends no usable credential
    headers: dict[str, str]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def callers(settings: Settings) -> dict[str, Caller]:
    """anonymous, a bad token, and one token per role (the admin one from tests/conftest)."""
    store = TokenStore(settings.effective_api_tokens_file)
    viewer = store.create("vera", Role.VIEWER, created_by="test")
    operator = store.create("oscar", Role.OPERATOR, created_by="test")
    return {
        "anonymous": Caller("anonymous", None, {}),
        "bad-token": Caller("bad-token", None, bearer("aoc_not-a-real-token")),
        "viewer": Caller("vera", Role.VIEWER, bearer(viewer)),
        "operator": Caller("oscar", Role.OPERATOR, bearer(operator)),
        "admin": Caller("admin", Role.ADMIN, bearer(ADMIN_TOKEN)),
    }


@pytest.fixture
def secure_nats(tmp_path: Path):
    """nats-server with the users and subject permissions of `aoc up`, logging to a file."""
    server = NatsServer(tmp_path / "secure-nats", secure=True, log_file=tmp_path / "nats-server.log").start()
    yield server
    server.stop()


@pytest.fixture
def secure_settings(secure_nats: NatsServer, settings: Settings) -> Settings:
    """The usual test settings, on the secure server, with the credentials it generated."""
    return settings.model_copy(
        update={"nats_url": secure_nats.url, "nats_credentials_dir": secure_nats.credentials_dir}
    )


def violations(server: NatsServer) -> list[str]:
    """The server's log lines about refused publishes/subscribes."""
    assert server.log_file is not None
    return [line for line in server.log_file.read_text().splitlines() if "Violation" in line]
