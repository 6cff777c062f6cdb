"""Refusals a Korean operator reads, in Korean and English (FIX-C): a notification endpoint on a refused network
(400, no URL secret in it) and a tenant that was never created (404 NonexistentTenant)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import NGSI, assert_problem
from ucity.core.config import load_settings
from ucity.server import create_app

SUBS = f"{NGSI}/subscriptions"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"),
                             subscriptions={"block_private_networks": True, "allowed_networks": ["10.20.0.0/16"]})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as c:
        yield c


def test_a_refused_endpoint_is_said_in_korean_and_english_without_its_secrets(guarded: TestClient) -> None:
    uri = "http://hook-user:Pw-q8w7@10.21.0.5:9000/n/Key-q8w7?token=Tok-q8w7"
    body = {"type": "Subscription", "entities": [{"type": "Building"}], "notification": {"endpoint": {"uri": uri}}}
    detail = assert_problem(guarded.post(SUBS, json=body), 400, "BadRequestData")["detail"]
    ko, _, en = detail.partition(" / ")
    assert "내부망" in ko and "10.21.0.5" in ko and "subscriptions.allowed_networks" in ko
    assert "non-public address (10.21.0.5)" in en and "subscriptions.allowed_networks" in en
    for secret in ("hook-user", "Pw-q8w7", "Key-q8w7", "Tok-q8w7"):
        assert secret not in detail, secret


@pytest.mark.parametrize("path", [f"{NGSI}/entities?type=Building", SUBS, f"{NGSI}/types"])
def test_a_nonexistent_tenant_is_said_in_korean_and_english(client: TestClient, path: str) -> None:
    body = assert_problem(client.get(path, headers={"NGSILD-Tenant": "nobody"}), 404, "NonexistentTenant")
    assert body["detail"] == "테넌트 nobody 없음 / tenant nobody does not exist"
