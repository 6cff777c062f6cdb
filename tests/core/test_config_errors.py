"""QA12: a refused configuration never prints a value (F1), the shipped env file starts (F2), `ucity serve` reminds
about plain HTTP beyond loopback in production (F5), `config validate` shows the SSRF guards in force (S3)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ucity.cli import exposed_reminder, main
from ucity.core.config import load_settings, missing_secret_warnings, settings_error_lines

ADMIN = "ADMINtokenSECRETvalue0123456789"
DB_PASSWORD = "DBPASSWORDsecret"
GRANT = "GRANTsecretVALUEabcdefghijk"
PSEUDONYM = "PSEUDOsecretVALUE123456789"
HOOK = "HOOKsecretVALUE0987654321zyx"
SECRETS = (ADMIN, DB_PASSWORD, GRANT, PSEUDONYM, HOOK)
COMMANDS = (["config", "validate"], ["serve"], ["worker"], ["migrate"], ["retention", "sweep", "--dry-run"])
EXAMPLE_ENV = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "ucity.env.example"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("UCITY_"):
            monkeypatch.delenv(name)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        # pydantic showed the head and the tail of a long input (`{'environment': 'producti...ecretVALUEabcdefghijk'}`)
        for part in (secret, secret[:10], secret[-10:]):
            assert part not in text, part


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "invalid configuration:" in err and "Traceback" not in err and "errors.pydantic.dev" not in err
    return err


# -- F1: no value in a configuration error ------------------------------------------------------------------------
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_misspelled_secret_key_is_named_with_the_closest_key_never_shown(
        command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "typo.toml"
    config.write_text(f'environment = "production"\n[ops]\nadmin_tokn = "{ADMIN}"\n')
    err = refused([*command, "--config", str(config), "--data-dir", str(tmp_path / "d")], capsys)
    assert_no_secret(err)
    assert "unknown setting ops.admin_tokn: no such key in the ops settings; did you mean ops.admin_token?" in err
    assert "알 수 없는 설정 키 ops.admin_tokn" in err and "ops.admin_token을(를) 뜻했나요?" in err


def test_a_misspelled_store_url_key_shows_no_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "typo.toml"
    config.write_text(f'[store]\nurl = "postgresql://ucity:{DB_PASSWORD}@127.0.0.1/ucity"\n'
                      f'urll = "postgresql://ucity:{DB_PASSWORD}@db/ucity"\n')
    err = refused(["config", "validate", "--config", str(config)], capsys)
    assert_no_secret(err)
    assert "did you mean store.url?" in err


def test_a_misspelled_secret_variable_names_the_variable_and_not_its_value(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UCITY_OPS__ADMIN_TOKN", ADMIN)
    err = refused(["serve", "--data-dir", str(tmp_path)], capsys)
    assert_no_secret(err)
    assert "unknown environment variable UCITY_OPS__ADMIN_TOKN: no such key in the ops settings; " \
           "did you mean UCITY_OPS__ADMIN_TOKEN?" in err
    assert "알 수 없는 환경 변수 UCITY_OPS__ADMIN_TOKN" in err


def test_a_placeholder_secret_is_named_without_any_other_secret(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The model validator's input is the whole configuration: pydantic showed the admin token's tail."""
    config = tmp_path / "leak.toml"
    config.write_text(f'environment = "production"\n[ops]\ngrant_secret = "change-me"\npseudonym_secret = "{PSEUDONYM}"\n'
                      f'admin_token = "{ADMIN}"\n')
    monkeypatch.setenv("UCITY_ALARMS__WEBHOOK_SECRET", HOOK)
    err = refused(["config", "validate", "--config", str(config), "--data-dir", str(tmp_path / "d")], capsys)
    assert_no_secret(err)
    assert 'ops.grant_secret: the placeholder "change-me"' in err and "예시 값" in err
    assert "alarms.webhook_secret" not in err and "ops.admin_token" not in err  # only the placeholder one is named


def test_a_refused_value_is_located_not_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f'[store]\nurl = "mysql://ucity:{DB_PASSWORD}@db/ucity"\n[server]\nport = "{ADMIN}"\n')
    err = refused(["config", "validate", "--config", str(config)], capsys)
    assert_no_secret(err)
    assert "  - store.url must start with sqlite:// or postgresql://" in err  # the message names its setting
    assert "  - server.port: Input should be a valid integer" in err


def test_the_validation_error_itself_hides_the_input(tmp_path: Path) -> None:
    """What other callers print (`ucity demo` says str(exc)) holds no value either."""
    with pytest.raises(ValidationError) as refusal:
        load_settings(data_dir=str(tmp_path), ops={"admin_tokn": ADMIN, "grant_secret": "change-me",
                                                   "pseudonym_secret": PSEUDONYM}, environment="production")
    assert_no_secret(str(refusal.value))
    lines = settings_error_lines(refusal.value)
    assert any(line.startswith("알 수 없는 설정 키 ops.admin_tokn") for line in lines)
    assert_no_secret("\n".join(lines))


def test_an_unknown_key_in_a_list_entry_and_at_the_top_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refusal:
        load_settings(data_dir=str(tmp_path), environmnet="production",
                      retention={"history": [{"type": "X", "keep_days": 3, "atrs": ["a"]}]})
    lines = settings_error_lines(refusal.value)
    assert any("unknown setting environmnet: no such setting; did you mean environment?" in line for line in lines)
    assert any("unknown setting retention.history[0].atrs: no such key in the retention.history[0] settings; "
               "did you mean retention.history[0].attrs?" in line for line in lines)


# -- F2: an empty secret is unset, the shipped env file starts ----------------------------------------------------
def _example_environment() -> dict[str, str]:
    values = {}
    for line in EXAMPLE_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_the_shipped_env_file_starts_with_a_warning_per_missing_secret(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = _example_environment()
    assert example["UCITY_ENVIRONMENT"] == "production" and example["UCITY_OPS__GRANT_SECRET"] == ""
    for name, value in example.items():
        monkeypatch.setenv(name, value)
    assert main(["config", "validate", "--data-dir", str(tmp_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["ops"]["grant_secret"] is shown["ops"]["pseudonym_secret"] is shown["alarms"]["webhook_secret"] is None
    settings = load_settings(data_dir=str(tmp_path))
    assert [w.split(" 미설정", 1)[0] for w in missing_secret_warnings(settings)] == [
        "ops.grant_secret", "ops.pseudonym_secret", "alarms.webhook_secret"]


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_secret_is_unset_in_the_file_too(empty: str, tmp_path: Path) -> None:
    settings = load_settings(environment="production", data_dir=str(tmp_path),
                             ops={"grant_secret": empty, "pseudonym_secret": empty, "admin_token": empty},
                             alarms={"webhook_secret": empty})
    assert settings.ops.grant_secret is settings.ops.pseudonym_secret is settings.ops.admin_token is None
    assert settings.alarms.webhook_secret is None and len(missing_secret_warnings(settings)) == 3


def test_the_placeholder_is_still_refused_outside_development(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"alarms\.webhook_secret, ops\.admin_token: the placeholder"):
        load_settings(environment="test", data_dir=str(tmp_path), alarms={"webhook_secret": "change-me"},
                      ops={"admin_token": "change-me"})
    assert load_settings(environment="development", data_dir=str(tmp_path), ops={"grant_secret": "change-me"})


# -- F5: plain HTTP beyond loopback in production -----------------------------------------------------------------
@pytest.mark.parametrize(("environment", "host", "warned"), [
    ("production", "0.0.0.0", True), ("production", "::", True), ("production", "10.20.0.5", True),
    ("production", "ucity.city.example", True), ("production", "127.0.0.1", False), ("production", "127.0.1.1", False),
    ("production", "::1", False), ("production", "localhost", False), ("development", "0.0.0.0", False),
])
def test_serve_reminds_once_about_plain_http_beyond_loopback_in_production(
        environment: str, host: str, warned: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    runs: list[dict[str, Any]] = []
    monkeypatch.setattr("ucity.cli._run_uvicorn", lambda app, listening, **kwargs: runs.append(kwargs) or True)
    monkeypatch.setattr("ucity.server.create_app", lambda settings, tune_gc: type("App", (), {"state": None})())
    monkeypatch.setenv("UCITY_ENVIRONMENT", environment)
    with caplog.at_level(logging.WARNING, logger="ucity.cli"):
        assert main(["serve", "--data-dir", str(tmp_path), "--host", host, "--port", "8123"]) == 0
    assert runs and runs[0]["host"] == host  # listening is not refused: only a reminder
    reminders = [r for r in caplog.records if r.name == "ucity.cli" and "plain HTTP" in r.getMessage()]
    assert len(reminders) == (1 if warned else 0)
    if warned:
        message = reminders[0].getMessage()
        assert f"{host}:8123" in message and "reminder:" in message and "TLS reverse proxy" in message
        assert "평문 HTTP" in message and reminders[0].levelno == logging.WARNING


def test_the_unit_file_keeps_serve_on_loopback(tmp_path: Path) -> None:
    unit = (EXAMPLE_ENV.parent / "ucity.service").read_text()
    (start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    host = start.split("--host", 1)[1].split()[0]
    assert exposed_reminder(load_settings(environment="production", data_dir=str(tmp_path),
                                          server={"host": host})) is None


# -- S3: the SSRF guards in force ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("environment", "given", "shown"), [
    ("production", None, True), ("development", None, False), ("test", None, False), ("production", False, False),
    ("development", True, True),
])
def test_config_validate_shows_the_ssrf_guards_in_force(environment: str, given: bool | None, shown: bool,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "ucity.toml"
    text = f'environment = "{environment}"\n'
    if given is not None:
        value = str(given).lower()
        text += f"[subscriptions]\nblock_private_networks = {value}\n[ngsild]\ncontext_block_private_networks = {value}\n"
    config.write_text(text)
    assert main(["config", "validate", "--config", str(config), "--data-dir", str(tmp_path / "d")]) == 0
    settings = json.loads(capsys.readouterr().out)
    assert settings["subscriptions"]["block_private_networks"] is shown
    assert settings["ngsild"]["context_block_private_networks"] is shown
