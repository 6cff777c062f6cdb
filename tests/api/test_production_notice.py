"""A production start with `server.require_auth` off says, in the log, which APIs have no authentication
(docs/operations.md §4); with it on (production's default) it says nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ucity.core.config import load_settings
from ucity.server import UNAUTHENTICATED_APIS, create_app

SECRETS = {"alarms": {"webhook_secret": "a" * 32},
           "ops": {"grant_secret": "b" * 32, "pseudonym_secret": "c" * 32, "admin_token": "d" * 32}}


@pytest.mark.parametrize("environment, require_auth, said", [
    ("production", False, True), ("production", None, False), ("production", True, False),
    ("development", None, False), ("development", False, False)])
def test_production_start_warns_of_the_open_apis(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                 environment: str, require_auth: bool | None, said: bool) -> None:
    settings = load_settings(environment=environment, data_dir=tmp_path, server={"require_auth": require_auth},
                             **SECRETS)
    with caplog.at_level(logging.WARNING, logger="ucity.server"), \
            TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as http:
        assert http.get("/health").status_code == 200
        assert http.get("/api/v1/alarms").status_code == (401 if settings.auth_required else 200)
    warned = [r for r in caplog.records if r.name == "ucity.server" and r.getMessage() == UNAUTHENTICATED_APIS]
    assert len(warned) == (1 if said else 0)
    assert "NGSI-LD" in UNAUTHENTICATED_APIS and "authenticating proxy" in UNAUTHENTICATED_APIS
    assert "server.require_auth" in UNAUTHENTICATED_APIS
