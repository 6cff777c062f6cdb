"""An admin's GET, edit, PUT of a notifier: what GET answers is a valid PUT body. The read-only members it adds
(`source`, what the running notifier describes) are ignored, a header value shown masked keeps the stored one, and a
masked value with nothing stored is refused: the mask never becomes a webhook's credential."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.alarms.support import T0
from ucity.core.clock import FakeClock
from ucity.core.config import Settings
from ucity.server import create_app

TENANT = "urn:ngsi-ld:tenant:default"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, FakeClock(T0)), base_url="http://127.0.0.1:8000") as c:
        yield c


def stored_headers(client: TestClient, notifier: str) -> dict[str, str]:
    app = client.app.state.ucity  # type: ignore[attr-defined]
    found = app.alarms.contacts.notifiers.get(TENANT, notifier)
    return dict(found.headers)


def test_what_get_shows_can_be_put_back_and_keeps_the_credentials(client: TestClient) -> None:
    hook = {"id": "room", "type": "webhook", "url": "http://127.0.0.1:9/hook",
            "headers": {"Authorization": "Bearer s3cret-token"}}
    assert client.post("/api/v1/notifiers", json=hook).status_code == 201
    shown = client.get("/api/v1/notifiers/room").json()
    assert shown["headers"] == {"Authorization": "***"} and shown["kind"] == "webhook" and shown["source"] == "api"
    edited = {**shown, "description": "상황실 웹훅", "enabled": False}
    put = client.put("/api/v1/notifiers/room", json=edited)
    assert put.status_code == 200, put.text
    assert stored_headers(client, "room") == {"Authorization": "Bearer s3cret-token"}  # not "***"
    again = client.get("/api/v1/notifiers/room").json()
    assert (again["description"], again["enabled"]) == ("상황실 웹훅", False)
    # a new header value is taken as sent; a header renamed is a new one
    both = {**again, "headers": {"Authorization": "***", "X-Room": "7"}}
    assert client.put("/api/v1/notifiers/room", json=both).status_code == 200
    assert stored_headers(client, "room") == {"Authorization": "Bearer s3cret-token", "X-Room": "7"}


def test_a_masked_value_with_nothing_stored_is_refused(client: TestClient) -> None:
    hook = {"id": "room", "type": "webhook", "url": "http://127.0.0.1:9/hook", "headers": {"X-Key": "***"}}
    created = client.post("/api/v1/notifiers", json=hook)
    assert created.status_code == 400 and created.headers["content-type"].startswith("application/problem+json")
    assert "X-Key" in created.json()["detail"] and "보관된 값이 없습니다" in created.json()["detail"]
    assert client.post("/api/v1/notifiers", json={**hook, "headers": {"X-Key": "k1"}}).status_code == 201
    renamed = client.put("/api/v1/notifiers/room", json={**hook, "headers": {"X-Other": "***"}})
    assert renamed.status_code == 400 and "X-Other" in renamed.json()["detail"]
    assert stored_headers(client, "room") == {"X-Key": "k1"}


def test_an_unknown_member_is_still_refused_and_get_keeps_the_documents_provider(client: TestClient) -> None:
    assert client.post("/api/v1/notifiers", json={"id": "sms", "type": "sms"}).status_code == 201
    shown = client.get("/api/v1/notifiers/sms").json()
    assert shown["provider"] == "" and shown["sends"] is False  # the document's, not the recording instance's
    assert client.put("/api/v1/notifiers/sms", json=shown).status_code == 200
    typo = client.put("/api/v1/notifiers/sms", json={**shown, "enabeld": False})
    assert typo.status_code == 400 and "enabeld" in typo.text
