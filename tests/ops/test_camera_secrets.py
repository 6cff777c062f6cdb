"""Camera stream and still URLs (they may carry the VMS's credentials) never reach the NGSI-LD API: not in an
entity, a query, `q`, the temporal API or a notification, whether the camera came through the operations API
or a CSV import. The admin camera API still shows them and footage links still redirect to them (QA finding
4). Camera entities of the old layout have theirs moved out, history included, once per tenant."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from tests.alarms.receiver import Receiver
from tests.ops.support import POINT, T0, TENANT, TOKENS, agency, ops_settings
from ucity.core.bus import Context
from ucity.core.clock import FakeClock
from ucity.core.config import Settings
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import append_op, create_op, delete_op
from ucity.ops.cameras import GLOBAL, MIGRATION_KIND, CameraIn
from ucity.server import create_app
from ucity.store import open_store
from ucity.store.base import Mutation, TemporalQuery

B = "/ngsi-ld/v1"
STREAM = "rtsp://admin:pw1@vms.example/live/gate-1"
STILL = "https://viewer:pw2@vms.example/still/gate-1.jpg"
SECRETS = ("pw1@", "pw2@", "pw3@", "vms.example")  # none of it may appear in anything NGSI-LD serves
WAIT_S = 30.0  # the longest a notification may take to arrive (a generous bound, not a timing assertion)


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return ops_settings(tmp_path, agencies=[agency("police-112", "police", ["112_VIDEO", "112_DISPATCH"])])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


def secret_free(text: str) -> bool:
    return not any(s in text for s in SECRETS)


def ngsi_ld_views(http: TestClient, entity: str, headers: dict[str, str] | None = None) -> list[str]:
    """What an anonymous NGSI-LD client can read of a camera: entity, query with `attrs` and `q`, history."""
    headers = headers or {}
    out = []
    for path, params in (
            (f"{B}/entities/{entity}", {}),
            (f"{B}/entities/{entity}", {"options": "keyValues,sysAttrs"}),
            (f"{B}/entities", {"type": "Camera", "attrs": "streamURL,stillImageURL", "options": "keyValues"}),
            (f"{B}/entities", {"type": "Camera", "q": "streamURL"}),
            (f"{B}/entities", {"type": "Camera", "q": "stillImageURL"}),
            (f"{B}/temporal/entities/{entity}", {}),
            (f"{B}/temporal/entities", {"type": "Camera", "attrs": "streamURL,stillImageURL"}),
    ):
        resp = http.get(path, params=params, headers=headers)
        assert resp.status_code in (200, 404), (path, params, resp.text)
        out.append(resp.text)
    return out


def query(http: TestClient, q: str, headers: dict[str, str] | None = None) -> list[Any]:
    resp = http.get(f"{B}/entities", params={"type": "Camera", "q": q}, headers=headers or {})
    assert resp.status_code == 200, resp.text
    found: list[Any] = resp.json()
    return found


def wait_for(receiver: Receiver, count: int) -> list[Any]:
    deadline = time.monotonic() + WAIT_S
    while len(receiver.on("/camera")) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return [r.json for r in receiver.on("/camera")]


def follow(http: TestClient, link: str, role: str = "police") -> Any:
    parts = urlsplit(link)
    return http.get(f"{parts.path}?{parts.query}", headers=bearer(role), follow_redirects=False)


def grant_links(http: TestClient, cameras: list[str]) -> dict[str, dict[str, str]]:
    event = http.post("/api/v1/events", json={"service": "112_DISPATCH", "typeCode": "robbery",
                                              "location": {"lon": POINT[0], "lat": POINT[1]}}, headers=bearer("operator"))
    assert event.status_code == 201, event.text
    grant = http.post("/api/v1/grants", json={"agency": "police-112", "event": event.json()["id"], "cameras": cameras},
                      headers=bearer("operator"))
    assert grant.status_code == 201, grant.text
    return {entry["camera"]: entry for entry in grant.json()["links"]}


CSV_HEADER = ["관리번호", "관리기관명", "소재지도로명주소", "설치목적구분", "카메라대수", "촬영방면정보", "WGS84위도",
              "WGS84경도"]


def csv_file() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerow(["0001", "서울특별시 구로구청", "서울특별시 구로구 디지털로 300", "생활방범", "2", "북측 방면", "37.4954",
                     "126.8874"])
    return out.getvalue().encode("utf-8")


def test_urls_of_cameras_registered_through_the_ops_api_never_reach_ngsi_ld(settings: Settings,
                                                                            receiver: Receiver) -> None:
    with TestClient(create_app(settings, FakeClock(T0)), base_url="http://127.0.0.1:8000") as http:
        sub = http.post(f"{B}/subscriptions", json={
            "type": "Subscription", "entities": [{"type": "Camera"}],
            "notification": {"endpoint": {"uri": f"{receiver.url}/camera"}}})
        assert sub.status_code == 201, sub.text

        camera = {"id": "gate-1", "lon": POINT[0], "lat": POINT[1], "cameraType": "FIXED", "heading": 90,
                  "fieldOfView": 70, "streamURL": STREAM, "stillImageURL": STILL}
        created = http.post("/api/v1/cameras", json=camera, headers=bearer("admin"))
        assert created.status_code == 201
        assert (created.json()["streamURL"], created.json()["stillImageURL"]) == (STREAM, STILL)
        changed = http.patch("/api/v1/cameras/gate-1", json={"streamURL": STREAM.replace("pw1", "pw3"),
                                                              "status": "fault"}, headers=bearer("admin"))
        assert changed.status_code == 200 and changed.json()["streamURL"] == STREAM.replace("pw1", "pw3")
        imported = http.post("/api/v1/cameras/import", content=csv_file(), params={"prefix": "csv-"},
                             headers={**bearer("admin"), "Content-Type": "text/csv"})
        assert imported.status_code == 200 and imported.json()["camerasCreated"] == 2, imported.text
        url_only = http.patch("/api/v1/cameras/csv-0001-1", json={"streamURL": "rtsp://u:pw3@vms.example/live/c1"},
                              headers=bearer("admin"))
        assert url_only.status_code == 200 and url_only.json()["streamURL"] == "rtsp://u:pw3@vms.example/live/c1"

        # Nothing NGSI-LD serves holds a URL: entity, `attrs`, `q`, history ...
        for entity in ("urn:ngsi-ld:Camera:gate-1", "urn:ngsi-ld:Camera:csv-0001-1", "urn:ngsi-ld:Camera:csv-0001-2"):
            for text in ngsi_ld_views(http, entity):
                assert secret_free(text), text
        stored = http.get(f"{B}/entities/urn:ngsi-ld:Camera:gate-1", params={"options": "keyValues"}).json()
        assert stored["heading"] == 90 and stored["status"] == "fault"  # the camera itself is there
        assert "streamURL" not in stored and "stillImageURL" not in stored
        assert query(http, "streamURL") == [] and query(http, "stillImageURL") == []
        # ... nor a notification (the create, the patch, the import's batch)
        notifications = wait_for(receiver, 3)
        assert len(notifications) >= 3
        assert {e["id"] for n in notifications for e in n["data"]} == {
            "urn:ngsi-ld:Camera:gate-1", "urn:ngsi-ld:Camera:csv-0001-1", "urn:ngsi-ld:Camera:csv-0001-2"}
        assert all(secret_free(r.body.decode()) for r in receiver.on("/camera"))

        # The admin camera API shows the URLs; an operator sees only whether there is a still.
        admin_view = http.get("/api/v1/cameras/gate-1", headers=bearer("admin")).json()
        assert (admin_view["streamURL"], admin_view["stillImageURL"]) == (STREAM.replace("pw1", "pw3"), STILL)
        operator_view = http.get("/api/v1/cameras/gate-1", headers=bearer("operator")).json()
        assert "streamURL" not in operator_view and operator_view["hasStill"] is True
        listed = http.get("/api/v1/cameras", params={"limit": "50"}, headers=bearer("admin")).json()["cameras"]
        assert {c["id"]: c["streamURL"] for c in listed} == {
            "gate-1": STREAM.replace("pw1", "pw3"), "csv-0001-1": "rtsp://u:pw3@vms.example/live/c1", "csv-0001-2": None}

        # A footage link still redirects to the URL; a camera without one answers 404.
        links = grant_links(http, ["gate-1", "csv-0001-2"])
        stream = follow(http, links["gate-1"]["stream"])
        assert stream.status_code == 307 and stream.headers["location"] == STREAM.replace("pw1", "pw3")
        still = follow(http, links["gate-1"]["still"])
        assert still.status_code == 307 and still.headers["location"] == STILL
        none = follow(http, links["csv-0001-2"]["stream"])
        assert none.status_code == 404 and "no stream URL" in none.json()["detail"]

        # null removes a URL (the entity is not touched; the live grants naming the camera lose it: FIX-B,
        # test_camera_grant_changes.py); a re-import in place keeps the URLs (the file has none).
        removed = http.patch("/api/v1/cameras/gate-1", json={"stillImageURL": None}, headers=bearer("admin"))
        assert removed.status_code == 200 and removed.json()["stillImageURL"] is None
        assert removed.json()["streamURL"] == STREAM.replace("pw1", "pw3")
        gone = follow(http, links["gate-1"]["still"])
        assert gone.status_code == 403 and gone.json()["reason"] == "camera-feed-changed"
        again = http.post("/api/v1/cameras/import", content=csv_file(), params={"prefix": "csv-"},
                          headers={**bearer("admin"), "Content-Type": "text/csv"})
        assert again.status_code == 200 and again.json()["camerasUpdated"] == 2
        kept = http.get("/api/v1/cameras/csv-0001-1", headers=bearer("admin")).json()["streamURL"]
        assert kept == "rtsp://u:pw3@vms.example/live/c1"
        assert http.delete("/api/v1/cameras/gate-1", headers=bearer("admin")).status_code == 204
        assert ("urn:ngsi-ld:Camera:gate-1" not in
                [k for _, k, _ in http.portal.call(http.app.state.ucity.store.list_docs, "camera-access")])


def old_camera(camera_id: str, stream: str, still: str | None = None) -> dict[str, Any]:
    """A Camera entity as the simulator and the registry wrote them before: the URLs as attributes."""
    entity: dict[str, Any] = {"id": f"urn:ngsi-ld:Camera:{camera_id}", "type": "Camera",
                              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": list(POINT)}},
                              "cameraType": {"type": "Property", "value": "PTZ"},
                              "streamURL": {"type": "Property", "value": stream}}
    if still is not None:
        entity["stillImageURL"] = {"type": "Property", "value": still}
    return entity


async def previous_version(settings: Settings, clock: FakeClock) -> None:
    """What the previous layout left in the store: Camera entities with their URLs as attributes, and history."""
    store = open_store(settings, clock)
    await store.start()
    ctx = core_context()

    async def write(tenant: str, entity_id: str, apply: Any) -> None:
        (result,) = await store.mutate(tenant, [Mutation(entity_id, apply)], Context(actor="ngsi-ld"))
        assert not isinstance(result, Exception), result

    try:
        for entity in (old_camera("old-1", "rtsp://admin:pw1@vms.example/live/1", "https://vms.example/still/1.jpg"),
                       old_camera("old-2", "rtsp://admin:pw1@vms.example/live/2-first"),
                       old_camera("old-3", "rtsp://admin:pw1@vms.example/live/3"),
                       old_camera("bad-4", "javascript:alert(1)")):
            await write(TENANT, entity["id"], create_op(normalize_entity(entity, ctx)))
        clock.advance(1)
        await write(TENANT, "urn:ngsi-ld:Camera:old-2", append_op(normalize_entity({
            "id": "urn:ngsi-ld:Camera:old-2", "streamURL": {"type": "Property",
                                                           "value": "rtsp://admin:pw1@vms.example/live/2"}},
            ctx, require_type=False)))
        await write(TENANT, "urn:ngsi-ld:Camera:old-3", delete_op("urn:ngsi-ld:Camera:old-3"))
        c2 = old_camera("c2-1", "rtsp://admin:pw1@vms.example/live/c2")
        await write("city2", c2["id"], create_op(normalize_entity(c2, ctx)))
        # what the previous version left readable: history, deleted cameras' too
        history, _ = await store.temporal_query(TENANT, TemporalQuery(ids=("urn:ngsi-ld:Camera:old-2",
                                                                            "urn:ngsi-ld:Camera:old-3")))
        assert "2-first" in str(history) and "live/3" in str(history)
    finally:
        await store.stop()


def test_old_camera_entities_have_their_urls_moved_out_history_included(settings: Settings,
                                                                        receiver: Receiver) -> None:
    clock = FakeClock(T0)
    city2 = {"NGSILD-Tenant": "city2"}
    # The previous version: URLs in the entities (one changed once, one camera deleted since), in two tenants.
    # Written straight into the store: this version deletes URL attributes that NGSI-LD clients write.
    asyncio.run(previous_version(settings, clock))
    clock.advance(60)

    # This version's first start: the default tenant is migrated at once.
    with TestClient(create_app(settings, clock), base_url="http://127.0.0.1:8000") as http:
        sub = http.post(f"{B}/subscriptions", json={
            "type": "Subscription", "entities": [{"type": "Camera"}],
            "notification": {"endpoint": {"uri": f"{receiver.url}/camera"}}})
        assert sub.status_code == 201, sub.text
        for entity in ("urn:ngsi-ld:Camera:old-1", "urn:ngsi-ld:Camera:old-2", "urn:ngsi-ld:Camera:old-3",
                       "urn:ngsi-ld:Camera:bad-4"):
            for text in ngsi_ld_views(http, entity):
                assert secret_free(text) and "javascript" not in text, text
        kept = http.get(f"{B}/entities/urn:ngsi-ld:Camera:old-1", params={"options": "keyValues"}).json()
        assert kept["cameraType"] == "PTZ" and "streamURL" not in kept
        admin = http.get("/api/v1/cameras/old-2", headers=bearer("admin")).json()
        assert admin["streamURL"] == "rtsp://admin:pw1@vms.example/live/2"  # the current value, not the first
        admin = http.get("/api/v1/cameras/old-1", headers=bearer("admin")).json()
        assert (admin["streamURL"], admin["stillImageURL"]) == ("rtsp://admin:pw1@vms.example/live/1",
                                                                "https://vms.example/still/1.jpg")
        bad = http.get("/api/v1/cameras/bad-4", headers=bearer("admin")).json()
        assert bad["streamURL"] is None  # not a URL the footage redirect may send anyone to: dropped
        links = grant_links(http, ["old-1"])
        stream = follow(http, links["old-1"]["stream"])
        assert stream.status_code == 307 and stream.headers["location"] == "rtsp://admin:pw1@vms.example/live/1"

        # Another tenant is migrated on its first use by the operations centre.
        assert "pw1@" in http.get(f"{B}/entities/urn:ngsi-ld:Camera:c2-1", headers=city2).text
        other = http.get("/api/v1/cameras/c2-1", headers={**bearer("admin"), **city2})
        assert other.status_code == 200 and other.json()["streamURL"] == "rtsp://admin:pw1@vms.example/live/c2"
        for text in ngsi_ld_views(http, "urn:ngsi-ld:Camera:c2-1", city2):
            assert secret_free(text), text

        # The migration's writes were ordinary: no notification carried a URL (there was none to carry).
        assert all(secret_free(r.body.decode()) for r in receiver.on("/camera"))
        marks = {(t, k): d for t, k, d in http.portal.call(http.app.state.ucity.store.list_docs, MIGRATION_KIND)}
        done = marks[(TENANT, "done")]
        assert (done["moved"], done["stripped"], done["unusable"]) == (2, 3, 1)  # old-1, old-2; bad-4's dropped
        assert marks[(TENANT, "done")]["historyPurged"] > 0

        # After the upgrade, a streamURL an NGSI-LD client writes is refused, not moved: never stored at all.
        refused = http.post(f"{B}/entities", json=old_camera("new-5", "https://evil.example/phish"))
        assert refused.status_code == 400 and "PATCH /api/v1/cameras/{id}" in refused.json()["detail"]
        assert http.get(f"{B}/entities/urn:ngsi-ld:Camera:new-5").status_code == 404
    clock.advance(60)

    # Idempotent: the next start moves nothing more (and does not take the client's URL either).
    with TestClient(create_app(settings, clock), base_url="http://127.0.0.1:8000") as http:
        forget_done = {(t, k) for t, k, _ in http.portal.call(http.app.state.ucity.store.list_docs, MIGRATION_KIND)}
        assert (TENANT, "done") in forget_done and (GLOBAL, "since") in forget_done
        assert http.get("/api/v1/cameras/new-5", headers=bearer("admin")).status_code == 404
        assert http.get("/api/v1/cameras/old-2", headers=bearer("admin")).json()["streamURL"] == \
            "rtsp://admin:pw1@vms.example/live/2"
        # a forced re-run over the same data changes nothing
        center = http.app.state.ucity.ops
        report = http.portal.call(center.cameras.migrate, TENANT)
        assert report == {"moved": 0, "stripped": 0, "unusable": 0, "historyPurged": 0}


def test_a_camera_deleted_through_ngsi_ld_takes_its_urls_with_it(settings: Settings) -> None:
    with TestClient(create_app(settings, FakeClock(T0)), base_url="http://127.0.0.1:8000") as http:
        camera = {"id": "gate-1", "lon": POINT[0], "lat": POINT[1], "streamURL": STREAM, "stillImageURL": STILL}
        assert http.post("/api/v1/cameras", json=camera, headers=bearer("admin")).status_code == 201
        assert http.delete(f"{B}/entities/urn:ngsi-ld:Camera:gate-1").status_code == 204
        store = http.app.state.ucity.store
        http.portal.call(http.app.state.ucity.ops.cameras.idle)
        assert [k for _, k, _ in http.portal.call(store.list_docs, "camera-access")] == []
        # a camera created again under that id (through NGSI-LD, without URLs) has none: no old URL comes back
        again = old_camera("gate-1", "rtsp://x/unused")
        del again["streamURL"]
        assert http.post(f"{B}/entities", json=again).status_code == 201
        view = http.get("/api/v1/cameras/gate-1", headers=bearer("admin")).json()
        assert (view["streamURL"], view["stillImageURL"], view["hasStill"]) == (None, None, False)
        assert follow(http, grant_links(http, ["gate-1"])["gate-1"]["stream"]).status_code == 404


def test_a_deletion_racing_a_registration_keeps_the_new_urls(settings: Settings) -> None:
    """The record goes when the deletion commits, not when the bus gets to it: a camera registered again right
    after keeps its own URLs, whatever the order the rest of ucity hears of the two writes in."""
    with TestClient(create_app(settings, FakeClock(T0)), base_url="http://127.0.0.1:8000") as http:
        ucity = http.app.state.ucity
        camera = {"id": "gate-1", "lon": POINT[0], "lat": POINT[1], "streamURL": STREAM}
        assert http.post("/api/v1/cameras", json=camera, headers=bearer("admin")).status_code == 201

        async def delete_then_register() -> None:
            # the deletion's bus event is still queued (nothing awaited between) when the camera API writes again
            delete = ucity.store.mutate(TENANT, [Mutation("urn:ngsi-ld:Camera:gate-1",
                                                          delete_op("urn:ngsi-ld:Camera:gate-1"))],
                                        Context(actor="ngsi-ld"))
            (deleted,) = await delete
            assert not isinstance(deleted, Exception)
            await ucity.ops.cameras.put(TENANT, [CameraIn(id="gate-1", lon=POINT[0], lat=POINT[1],
                                                          streamURL="rtsp://vms.example/live/new")], "admin:admin")
            await ucity.publisher.drain()
            await ucity.ops.cameras.idle()

        http.portal.call(delete_then_register)
        view = http.get("/api/v1/cameras/gate-1", headers=bearer("admin")).json()
        assert view["streamURL"] == "rtsp://vms.example/live/new"
        stored = {k: d for _, k, d in http.portal.call(ucity.store.list_docs, "camera-access")}
        assert stored["urn:ngsi-ld:Camera:gate-1"]["streamURL"] == "rtsp://vms.example/live/new"


def test_urls_written_through_ngsi_ld_are_refused_never_stored(settings: Settings, receiver: Receiver) -> None:
    """A write that puts a `streamURL` / `stillImageURL` into a Camera through NGSI-LD (under the core context or
    another one; a create, an attribute update, a batch) is refused with 400 before anything is stored: no
    reader, subscriber or history sees it, and it never becomes a footage target. The NGSI-LD API has no roles:
    anybody could otherwise read the credentials such URLs carry, or choose where the agencies' links lead."""
    with TestClient(create_app(settings, FakeClock(T0)), base_url="http://127.0.0.1:8000") as http:
        sub = http.post(f"{B}/subscriptions", json={
            "type": "Subscription", "entities": [{"type": "Camera"}],
            "notification": {"endpoint": {"uri": f"{receiver.url}/camera"}}})
        assert sub.status_code == 201, sub.text
        camera = {"id": "gate-1", "lon": POINT[0], "lat": POINT[1], "streamURL": STREAM}
        assert http.post("/api/v1/cameras", json=camera, headers=bearer("admin")).status_code == 201
        update = http.post(f"{B}/entities/urn:ngsi-ld:Camera:gate-1/attrs", json={
            "streamURL": {"type": "Property", "value": "rtsp://admin:pw3@evil.example/live"}})
        assert update.status_code == 400 and "streamURL" in update.json()["detail"], update.text
        # a client's own @context (here inline) maps the name elsewhere: still a URL attribute of a Camera
        created = http.post(f"{B}/entities", json={
            **old_camera("hub-7", "rtsp://admin:pw3@vms.example/live/7"),
            "@context": [{"stillImageURL": "https://smartdatamodels.org/dataModel.Device/stillImageURL"}],
            "stillImageURL": {"type": "Property", "value": "https://viewer:pw2@vms.example/7.jpg"}},
            headers={"Content-Type": "application/ld+json"})
        assert created.status_code == 400, created.text
        assert http.get(f"{B}/entities/urn:ngsi-ld:Camera:hub-7").status_code == 404
        # in a batch, only the entity that carries one is refused
        batch = http.post(f"{B}/entityOperations/upsert", json=[
            {k: v for k, v in old_camera("hub-8", STREAM).items() if k != "streamURL"},
            old_camera("hub-9", "rtsp://admin:pw3@evil.example/live/9")])
        assert batch.status_code == 207, batch.text
        assert [e["entityId"] for e in batch.json()["errors"]] == ["urn:ngsi-ld:Camera:hub-9"]
        assert http.get(f"{B}/entities/urn:ngsi-ld:Camera:hub-8").status_code == 200
        # a sub-attribute of that name carries the same credentials (QA2 finding 2); a camera with more types too
        nested = http.post(f"{B}/entities/urn:ngsi-ld:Camera:hub-8/attrs", json={"info": {
            "type": "Property", "value": 1, "streamURL": {"type": "Property", "value": "rtsp://u:pw9@evil.example/n"}}})
        assert nested.status_code == 400 and "streamURL" in nested.json()["detail"], nested.text
        typed = http.post(f"{B}/entities", json={**old_camera("hub-10", "rtsp://u:pw8@evil.example/t"),
                                                 "type": ["Thing", "Camera"]})
        assert typed.status_code == 400, typed.text
        for text in ngsi_ld_views(http, "urn:ngsi-ld:Camera:gate-1"):
            assert secret_free(text) and "evil.example" not in text, text
        # the registered URL stays the footage target
        assert http.get("/api/v1/cameras/gate-1", headers=bearer("admin")).json()["streamURL"] == STREAM
        links = grant_links(http, ["gate-1"])
        assert follow(http, links["gate-1"]["stream"]).headers["location"] == STREAM
        notes = wait_for(receiver, 2)  # gate-1 registered, hub-8 created: the commits there were
        assert {n["data"][0]["id"] for n in notes} == {"urn:ngsi-ld:Camera:gate-1", "urn:ngsi-ld:Camera:hub-8"}
        assert all(secret_free(r.body.decode()) and "evil" not in r.body.decode() for r in receiver.on("/camera"))
