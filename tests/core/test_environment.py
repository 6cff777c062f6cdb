"""Nested `UCITY_<SECTION>__<KEY>` environment variables with a key that does not exist are refused at start, as
unknown top-level ones are (QA8 F4): the dashboard's `UCITY_WEB__*` and the domains' `UCITY_DOMAINS__*` included."""

from __future__ import annotations

from pathlib import Path

import pytest

from ucity.cli import main
from ucity.core.config import OTHER_SECTIONS, load_settings, unknown_environment
from ucity.web.settings import WebSettings


@pytest.fixture(autouse=True)
def _no_store_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UCITY_STORE__URL", raising=False)  # the PostgreSQL run sets it


def test_the_web_keys_core_knows_are_the_dashboards_settings() -> None:
    assert OTHER_SECTIONS["WEB"] == {name.upper() for name in WebSettings.model_fields}


@pytest.mark.parametrize(("variable", "closest"), [
    ("UCITY_WEB__TILE_URLL", "UCITY_WEB__TILE_URL"), ("UCITY_WEB__REFRESH", "UCITY_WEB__REFRESH_S"),
    ("ucity_web__default_languge", "UCITY_WEB__DEFAULT_LANGUAGE"),
])
def test_a_misspelled_web_key_is_refused_naming_the_closest(variable: str, closest: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, "none")
    with pytest.raises(ValueError) as refused:
        load_settings(data_dir=str(tmp_path))
    assert f"unknown environment variable {variable}: no such key in the web settings" in str(refused.value)
    assert f"did you mean {closest}?" in str(refused.value)


def test_the_web_settings_themselves_are_accepted() -> None:
    assert unknown_environment([f"UCITY_WEB__{key}" for key in OTHER_SECTIONS["WEB"]] + ["ucity_web__tile_url"]) == []


@pytest.mark.parametrize(("variable", "closest"), [
    ("UCITY_DOMAINS__ENABLEDD", "UCITY_DOMAINS__ENABLED"),
    ("UCITY_DOMAINS__FACILITY_SAFTY__DEFAULT_CLASS", "UCITY_DOMAINS__FACILITY_SAFETY"),
])
def test_a_domain_variable_naming_no_domain_is_refused(variable: str, closest: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UCITY_DOMAINS__ENABLED", '["facility_safety"]')
    monkeypatch.setenv(variable, '["x"]')
    with pytest.raises(ValueError) as refused:
        load_settings(data_dir=str(tmp_path))
    assert f"unknown environment variable {variable}: no domain" in str(refused.value)
    assert f"did you mean {closest}?" in str(refused.value)


def test_an_enabled_domains_table_in_the_environment_is_accepted(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UCITY_DOMAINS__ENABLED", '["facility_safety"]')
    monkeypatch.setenv("UCITY_DOMAINS__FACILITY_SAFETY__SOMETHING", "1")  # its keys are the domain's to check
    settings = load_settings(data_dir=str(tmp_path))
    assert settings.domains.config_for("facility_safety") == {"something": "1"}


def test_a_disabled_domains_settings_in_the_environment_are_not_refused(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment may keep the settings of a domain it has switched off: they have no effect, and no refusal."""
    monkeypatch.setenv("UCITY_DOMAINS__ENABLED", "[]")
    monkeypatch.setenv("UCITY_DOMAINS__FACILITY_SAFETY__DEFAULT_CLASS", "B")
    settings = load_settings(data_dir=str(tmp_path))
    assert settings.domains.enabled == []


def test_config_validate_refuses_a_misspelled_web_key_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UCITY_WEB__TILE_URLL", "none")
    with pytest.raises(SystemExit) as exited:
        main(["config", "validate", "--data-dir", str(tmp_path)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "UCITY_WEB__TILE_URLL" in err and "UCITY_WEB__TILE_URL?" in err and "Traceback" not in err
