"""A production start says, in the log, which APIs have no authentication yet (docs/operations.md §4)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ucity.core.config import load_settings
from ucity.server import UNAUTHENTICATED_APIS, create_app

SECRETS = {"alarms": {"webhook_secret": "a" * 32},
           "ops": {"grant_secret": "b" * 32, "pseudonym_secret": "c" * 32, "admin_token": "d" * 32}}


@pytest.mark.parametrize("environment, said", [("production", True), ("development", False)])
def test_production_start_warns_of_the_open_apis(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                 environment: str, said: bool) -> None:
    settings = load_settings(environment=environment, data_dir=tmp_path, **SECRETS)
    with caplog.at_level(logging.WARNING, logger="ucity.server"), \
            TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as http:
        assert http.get("/health").status_code == 200
    warned = [r for r in caplog.records if r.name == "ucity.server" and r.getMessage() == UNAUTHENTICATED_APIS]
    assert len(warned) == (1 if said else 0)
    assert "NGSI-LD" in UNAUTHENTICATED_APIS and "authenticating proxy" in UNAUTHENTICATED_APIS
