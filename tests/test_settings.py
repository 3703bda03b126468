from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from contracts.settings import Settings
from contracts.settings_doc import render

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_doc_is_generated_from_the_settings_class():
    documented = (ROOT / "docs" / "configuration.md").read_text()
    assert documented == render(), "regenerate it: python -m contracts.settings_doc > docs/configuration.md"


def test_env_vars_drive_ports_and_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("AOC_HTTP_PORT", "8181")
    monkeypatch.setenv("AOC_NATS_PORT", "4333")
    monkeypatch.setenv("AOC_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NATS_URL", raising=False)
    settings = Settings()
    assert (settings.http_port, settings.nats_port, settings.data_dir) == (8181, 4333, tmp_path)
    assert settings.embedded and settings.effective_nats_url == "nats://127.0.0.1:4333"
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")
    assert not Settings().embedded and Settings().effective_nats_url == "nats://elsewhere:4222"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AOC_HTTP_PORT", "70000"),
        ("AOC_RETENTION_DAYS", "0"),
        ("AOC_NATS_SYNC_INTERVAL", "sometimes"),
        ("AOC_SCHEDULES", "not json"),
    ],
)
def test_bad_configuration_is_refused_at_start(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises((ValidationError, SettingsError)):
        Settings()


def test_heartbeat_timeout_defaults_to_three_intervals(monkeypatch):
    monkeypatch.setenv("AOC_HEARTBEAT_INTERVAL", "2")
    assert Settings().heartbeat_timeout == 6
