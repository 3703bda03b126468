"""Fixtures of the operator-tools tests: tokens per role, engines and a live gateway."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from contracts.identity import Role
from contracts.settings import Settings
from services.shared.tokens import TokenStore
from tests.conftest import ADMIN_TOKEN


@dataclass(frozen=True)
class Tokens:
    viewer: str
    operator: str
    admin: str = ADMIN_TOKEN

    @staticmethod
    def header(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens(settings: Settings) -> Tokens:
    """A viewer ("vera") and an operator ("oscar") in the gateway's token registry."""
    store = TokenStore(settings.effective_api_tokens_file)
    return Tokens(
        viewer=store.create("vera", Role.VIEWER, created_by="test"),
        operator=store.create("oscar", Role.OPERATOR, created_by="test"),
    )
