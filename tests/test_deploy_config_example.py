"""`deploy/ucity.toml.example`, the production configuration the docs point at (QA12 gaps), is one that
`ucity config validate` accepts: alone, and with the secrets file `deploy/systemd/ucity.env.example` as installed."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from ucity.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "ucity.toml.example"
ENV_EXAMPLE = ROOT / "deploy" / "systemd" / "ucity.env.example"
SECRET_KEYS = ("admin_token", "grant_secret", "pseudonym_secret", "webhook_secret", "password", "token")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: the test run's own UCITY_* (the PostgreSQL run's store URL) must not help or hurt."""
    for name in list(os.environ):
        if name.startswith("UCITY_"):
            monkeypatch.delenv(name)


def validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code = main(["config", "validate", "--config", str(EXAMPLE), "--data-dir", str(tmp_path / "data")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "configuration is valid" in captured.err
    shown: dict[str, object] = json.loads(captured.out)
    return shown


def test_the_example_validates_as_a_production_configuration(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    shown = validate(tmp_path, capsys)
    assert shown["environment"] == "production"
    server = shown["server"]
    assert isinstance(server, dict)
    assert server["host"] == "127.0.0.1" and server["require_auth"] is True  # loopback behind the proxy, guarded


def test_the_example_holds_no_secret() -> None:
    """Secrets come from the environment file, never from ucity.toml (docs/operations.md §9)."""
    config = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))

    def keys(value: object, path: str = "") -> list[str]:
        if isinstance(value, dict):
            return [k for key, v in value.items() for k in [f"{path}{key}", *keys(v, f"{path}{key}.")]]
        if isinstance(value, list):
            return [k for item in value for k in keys(item, path)]
        return []

    named = [key for key in keys(config) if key.rsplit(".", 1)[-1] in SECRET_KEYS]
    assert named == []
    assert "url" not in config.get("store", {}) and "url" not in config.get("mqtt", {})  # URLs carry passwords


def test_the_example_validates_with_the_secrets_file_as_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name.strip(), value.strip())
    shown = validate(tmp_path, capsys)
    store = shown["store"]
    assert isinstance(store, dict)
    assert str(store["url"]).startswith("postgresql://") and "CHANGE-ME" not in str(store["url"])  # masked
