"""Camera stream and still URLs cannot be put into history through the NGSI-LD temporal API either: a temporal
POST, an attribute append or an instance PATCH that would record a `streamURL` / `stillImageURL` of a Camera (under
any @context, or as a sub-attribute) is refused with the entity API's 400 before anything is stored (QA finding:
the store's write check covered entity writes only). ucity/ngsild/temporal.py `_check_writes`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.ops.support import POINT, T0, TOKENS, ops_settings
from ucity.core.clock import FakeClock
from ucity.server import create_app

B = "/ngsi-ld/v1"
TEMPORAL = f"{B}/temporal/entities"
CAMERA = "urn:ngsi-ld:Camera:gate-1"
STREAM = "rtsp://admin:pw1@vms.example/live/gate-1"
EVIL = "rtsp://admin:pw3@evil.example/live"


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ops_settings(tmp_path), FakeClock(T0)), base_url="http://127.0.0.1:8000") as client:
        camera = {"id": "gate-1", "lon": POINT[0], "lat": POINT[1], "streamURL": STREAM}
        assert client.post("/api/v1/cameras", json=camera,
                           headers={"Authorization": f"Bearer {TOKENS['admin']}"}).status_code == 201
        yield client


def instance(value: Any, at: str = "2026-03-02T00:00:00Z", **more: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at, **more}


def refusal(http: TestClient, path: str, body: Any, method: str = "POST", **kwargs: Any) -> dict[str, Any]:
    resp = http.request(method, path, json=body, **kwargs)
    assert resp.status_code == 400, (path, resp.status_code, resp.text)
    problem: dict[str, Any] = resp.json()
    return problem


def history_text(http: TestClient, entity: str) -> str:
    resp = http.get(f"{TEMPORAL}/{entity}")
    assert resp.status_code in (200, 404), resp.text
    return resp.text


def test_a_temporal_post_of_camera_urls_is_refused_like_an_entity_write(http: TestClient) -> None:
    entity_api = refusal(http, f"{B}/entities/{CAMERA}/attrs", {"streamURL": {"type": "Property", "value": EVIL}})
    problem = refusal(http, TEMPORAL, {"id": CAMERA, "type": "Camera", "streamURL": [instance(EVIL)]})
    assert problem["detail"] == entity_api["detail"] and problem["title"] == entity_api["title"]
    assert "streamURL" in problem["detail"]
    # another type in the body: the camera's types (current state) still count, and history merges them
    refusal(http, TEMPORAL, {"id": CAMERA, "type": "Thing", "stillImageURL": [instance("https://u:pw2@evil.example/1")]})
    # a client's own @context maps the name elsewhere: still a URL attribute
    refusal(http, TEMPORAL, {
        "id": CAMERA, "type": "Camera", "@context": [{"streamURL": "https://example.org/mine#streamURL"}],
        "streamURL": [instance(EVIL)]}, headers={"Content-Type": "application/ld+json"})
    # a sub-attribute of that name carries the same credentials
    refusal(http, TEMPORAL, {"id": CAMERA, "type": "Camera",
                             "info": [instance(1, streamURL={"type": "Property", "value": EVIL})]})
    # a camera that exists only in history (no current entity) is refused too, and nothing of it is recorded
    refusal(http, TEMPORAL, {"id": "urn:ngsi-ld:Camera:ghost", "type": "Camera", "streamURL": [instance(EVIL)]})
    assert http.get(f"{TEMPORAL}/urn:ngsi-ld:Camera:ghost").status_code == 404
    assert "evil.example" not in history_text(http, CAMERA)


def test_an_append_and_an_instance_patch_are_refused_too(http: TestClient) -> None:
    # a Camera known only from its history: its recorded type decides, the append's body has none
    created = http.post(TEMPORAL, json={"id": "urn:ngsi-ld:Camera:old-9", "type": "Camera",
                                        "info": [instance(1)]})
    assert created.status_code == 201, created.text
    for entity in (CAMERA, "urn:ngsi-ld:Camera:old-9"):
        problem = refusal(http, f"{TEMPORAL}/{entity}/attrs", {"streamURL": [instance(EVIL, "2026-03-02T00:01:00Z")]})
        assert "streamURL" in problem["detail"]
    history = http.get(f"{TEMPORAL}/urn:ngsi-ld:Camera:old-9").json()
    recorded = history["info"] if isinstance(history["info"], dict) else history["info"][0]
    path = f"{TEMPORAL}/urn:ngsi-ld:Camera:old-9/attrs/info/{recorded['instanceId']}"
    refusal(http, path, instance(2, streamURL={"type": "Property", "value": EVIL}), method="PATCH")
    refusal(http, path, {"info": [instance(2, stillImageURL={"type": "Property", "value": EVIL})]}, method="PATCH")
    for entity in (CAMERA, "urn:ngsi-ld:Camera:old-9"):
        assert "evil.example" not in history_text(http, entity)
    # what is no URL is still recorded and changed
    assert http.patch(path, json=instance(2)).status_code == 204
    assert http.post(f"{TEMPORAL}/{CAMERA}/attrs", json={"info": [instance(3)]}).status_code == 204


def test_other_entities_may_keep_such_attributes_in_history(http: TestClient) -> None:
    """Only a Camera's URLs are private: another type's `streamURL` (e.g. a media device) is recorded."""
    created = http.post(TEMPORAL, json={"id": "urn:ngsi-ld:MediaPlayer:p1", "type": "MediaPlayer",
                                        "streamURL": [instance("https://media.example/p1")]})
    assert created.status_code == 201, created.text
    assert "media.example" in history_text(http, "urn:ngsi-ld:MediaPlayer:p1")
