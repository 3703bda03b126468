"""API tokens at rest: digests only in the registry, the `aoc up` admin token made once
into the data dir, AOC_ADMIN_TOKEN overriding it; NATS credentials from settings."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from contracts.identity import Role
from contracts.settings import Settings
from gateway.security.authn import Authenticator, InvalidToken
from services.runtime.bus import nats_credentials
from services.shared.tokens import ADMIN_TOKEN_FILE, TokenStore, admin_token_notice, ensure_admin_token, main


def test_aoc_up_makes_the_admin_token_once(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, admin_token=None)
    registry, token_file = settings.effective_api_tokens_file, settings.secrets_dir / ADMIN_TOKEN_FILE
    token, created = ensure_admin_token(registry, token_file)
    assert created and token and token.startswith("aoc_")
    assert ensure_admin_token(registry, token_file) == (token, False)  # the same one, next run
    for path in (registry, token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token not in registry.read_text()  # only its digest is kept there
    identity = Authenticator(settings).authenticate(token)
    assert (identity.name, identity.role) == ("admin", Role.ADMIN)

    token_file.unlink()  # the operator stored it elsewhere: the digest still works
    assert ensure_admin_token(registry, token_file) == (None, False)
    assert Authenticator(settings).authenticate(token).name == "admin"


def test_the_notice_says_how_to_use_the_token_and_never_prints_it(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, admin_token=None)
    lines = admin_token_notice(settings, "http://127.0.0.1:8080")
    token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
    text = "\n".join(lines)
    assert "generated a new admin token" in text and "export AOC_TOKEN=$(cat" in text
    assert "http://127.0.0.1:8080/admin-ops" in text and token not in text
    assert "generated" not in "\n".join(admin_token_notice(settings, "http://x"))  # second run


def test_aoc_admin_token_overrides_the_generated_one(tmp_path: Path):
    generated, _ = ensure_admin_token(
        Settings(data_dir=tmp_path).effective_api_tokens_file, tmp_path / "secrets" / ADMIN_TOKEN_FILE
    )
    settings = Settings(data_dir=tmp_path, admin_token="aoc_from-the-environment-0123456789")
    auth = Authenticator(settings)
    assert auth.authenticate("aoc_from-the-environment-0123456789").name == "admin"
    with pytest.raises(InvalidToken):
        auth.authenticate(generated)
    assert "AOC_ADMIN_TOKEN" in admin_token_notice(settings, "http://x")[0]


def test_the_token_cli_creates_lists_and_revokes(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("AOC_DATA_DIR", str(tmp_path))
    assert main(["create", "ci-bot", "operator"]) == 0
    token = capsys.readouterr().out.strip()
    store = TokenStore(Settings().effective_api_tokens_file)
    record = store.find(token)
    assert record is not None and (record.name, record.role, record.created_by) == (
        "ci-bot",
        "operator",
        "cli",
    )
    assert main(["create", "ci-bot", "viewer"]) == 1  # taken
    assert main(["list"]) == 0 and "ci-bot\toperator" in capsys.readouterr().out
    assert main(["revoke", "ci-bot"]) == 0 and store.find(token) is None
    assert main(["revoke", "ci-bot"]) == 1


def test_nats_credentials_from_settings(tmp_path: Path):
    secret = tmp_path / "nats-password"
    secret.write_text("s3cret\n")
    from_file = nats_credentials(Settings(nats_user="gateway", nats_password_file=secret), "gateway")
    assert from_file is not None and (from_file.user, from_file.password) == ("gateway", "s3cret")
    direct = nats_credentials(Settings(nats_user="deploy", nats_password="pw"), "ignored-identity")
    assert direct is not None and (direct.user, direct.password) == ("deploy", "pw")
    with pytest.raises(ValueError, match="needs AOC_NATS_PASSWORD"):
        nats_credentials(Settings(nats_user="deploy"), "deploy")
    assert nats_credentials(Settings(data_dir=tmp_path), "deploy") is None  # a plain server
