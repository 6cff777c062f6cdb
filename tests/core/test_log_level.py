"""`log_level` is checked with the rest of the settings: a misspelled level is refused at start (and by `config
validate`) naming the levels, not when the first logger is configured; any case is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ucity.cli import main
from ucity.core.config import load_settings


@pytest.fixture(autouse=True)
def _no_store_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UCITY_STORE__URL", raising=False)  # the PostgreSQL run sets it


@pytest.mark.parametrize(("given", "kept"), [("debug", "DEBUG"), ("Warning", "WARNING"), (" ERROR ", "ERROR")])
def test_a_level_in_any_case_is_kept_in_capitals(given: str, kept: str, tmp_path: Path) -> None:
    assert load_settings(environment="test", data_dir=str(tmp_path), log_level=given).log_level == kept


@pytest.mark.parametrize("bad", ["VERBOSE", "warn", "", "10"])
def test_an_unknown_level_is_refused_naming_the_levels(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        load_settings(environment="test", data_dir=str(tmp_path), log_level=bad)
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in str(refused.value)


def test_config_validate_refuses_a_misspelled_level_from_the_environment(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UCITY_LOG_LEVEL", "INFOO")
    with pytest.raises(SystemExit) as exited:
        main(["config", "validate", "--data-dir", str(tmp_path)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "INFOO" in err and "DEBUG, INFO, WARNING, ERROR, CRITICAL" in err and "Traceback" not in err
