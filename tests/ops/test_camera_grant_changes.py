"""FIX-B (stop 27): cameras and the grants naming them; on both backends (tests/ops/conftest.py).

* A camera deleted, moved or registered again (through the camera API or any NGSI-LD write), or its footage URL
  re-pointed at another feed, is dropped from every live grant naming it (`grant` / `narrowed`), and a grant left with
  no camera is revoked; the agency is told (`grant-narrowed` / `grant-revoked`, bilingual, cameras and Korea time).
  A password changed in a URL is the same feed; a CSV re-import keeps the URLs (the dataset has none).
* `PATCH /api/v1/cameras`: the URLs of many cameras, each checked as the single PATCH, one result per item.
* `from` / `to` of the audit list and the grant statistics need a UTC offset (as the events list, QA15 F4).
* A direct share with an agency that does not receive the event's service takes the service that fits the event.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from starlette.testclient import TestClient

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import POINT, TENANT, TOKENS, Ops, ops_settings
from tests.ops.test_cameras import csv_bytes, row
from tests.ops.test_linkage import audit, event_body, fire_and_police, nearest_ids, open_link
from ucity.core.bus import Context
from ucity.core.errors import BadRequest, UcityError
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import delete_op, merge_op
from ucity.ops import linkage as lk
from ucity.ops.cameras import BULK_MAX, CameraIn, entity_id
from ucity.ops.events import Event
from ucity.server import create_app
from ucity.store.base import Mutation

NEW = {"id": "c-200", "lon": POINT[0] + 0.0003, "lat": POINT[1], "cameraType": "PTZ",
       "streamURL": "rtsp://vms.guro.example/live/c-200"}


async def _camera(ops: Ops) -> None:
    assert (await ops.call("create_camera", "POST", "/", NEW, role="admin")).status == 201


async def _grant(ops: Ops, cameras: list[str]) -> dict[str, Any]:
    event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
    grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
        "agency": "police-112", "event": event.body["id"], "cameras": cameras, "purpose": "용의자 추적"})
    assert grant.status == 201
    body: dict[str, Any] = grant.body
    return body


def _link(grant: dict[str, Any], camera: str) -> str:
    return next(entry["stream"] for entry in grant["links"] if entry["camera"] == camera)


async def _stored(ops: Ops, grant: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = (await ops.call("get_grant", grantId=grant["id"])).body
    return body


def _notices(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    return [r.json for r in receiver.on("/112") if r.json["event"] == kind]


async def _grant_lines(ops: Ops, grant: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [line for line in await audit(ops, kind="grant", grant=grant["id"]) if line["action"] == action]


# -- 1. camera changes narrow or revoke the grants naming the camera -------------------------------------------------
async def test_a_deleted_camera_leaves_its_grants_and_the_agency_is_told(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        await _camera(ops)
        other = (await nearest_ids(ops))[0]
        grant = await _grant(ops, ["c-200", other])
        await ops.advance(60)
        assert (await ops.call("delete_camera", "DELETE", "/", role="admin", cameraId="c-200")).status == 204
        stored = await _stored(ops, grant)
        assert stored["status"] == "active" and stored["cameras"] == [other]
        assert stored["droppedCameras"] == {"c-200": "camera-removed"}
        assert [c["camera"] for c in stored["links"]] == [other]
        # the links given before: the dropped camera's refused with its cause, the other's still open
        refused = await open_link(ops, _link(grant, "c-200"), "police")
        assert isinstance(refused, UcityError) and refused.status == 403 and refused.extra["reason"] == "camera-removed"
        assert (await open_link(ops, _link(grant, other), "police")).status == 307
        (line,) = await _grant_lines(ops, grant, "narrowed")
        assert (line["camera"], line["cause"], line["cameras"], line["actor"], line["agency"]) == (
            "c-200", "camera-removed", [other], "admin:admin", "police-112")
        (notice,) = _notices(receiver, "grant-narrowed")
        package = notice["package"]
        assert package["grant"] == {"id": grant["id"], "cameras": [other], "dropped": ["c-200"],
                                    "narrowedAt": "2026-03-02T00:01:00.000000Z", "expiresAt": grant["expiresAt"]}
        assert package["change"] == {"camera": "c-200", "cause": "camera-removed",
                                     "causeName": {"ko": "카메라 삭제", "en": "camera deleted"}}
        assert notice["subject"] == {"ko": "영상 공유 축소", "en": "Footage grant narrowed"}
        assert "카메라 c-200, 2026-03-02 09:01:00 KST부터 볼 수 없음" in notice["text"]["ko"]
        assert "(camera deleted): camera c-200, no longer viewable from 2026-03-02 09:01:00 KST" in notice["text"]["en"]
        assert f"Cameras left {other}, until 2026-03-02 09:30:00 KST" in notice["text"]["en"]


async def test_a_grant_losing_its_last_camera_is_revoked_whoever_deletes_it(make_ops: MakeOps,
                                                                          receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        await _camera(ops)
        grant = await _grant(ops, ["c-200"])
        # deleted by an NGSI-LD client (DELETE /ngsi-ld/v1/entities/{id}), not through the camera API
        (result,) = await ops.ucity.store.mutate(TENANT, [Mutation(entity_id("c-200"), delete_op(entity_id("c-200")))],
                                                 Context())
        assert not isinstance(result, Exception)
        await ops.settle()
        stored = await _stored(ops, grant)
        assert (stored["status"], stored["revokeReason"], stored["revokedBy"]) == ("revoked", "camera deleted", "system")
        assert stored["cameras"] == ["c-200"]  # what it covered until its end
        (line,) = await _grant_lines(ops, grant, "revoked")
        assert (line["camera"], line["cause"], line["reason"]) == ("c-200", "camera-removed", "camera deleted")
        (notice,) = _notices(receiver, "grant-revoked")
        assert notice["package"]["grant"]["cameras"] == ["c-200"]
        assert notice["package"]["grant"]["reason"] == "camera deleted"
        assert notice["package"]["change"]["cause"] == "camera-removed"
        assert notice["text"]["ko"].startswith(f"영상 공유 {grant['id']} 회수 (카메라 삭제: 카메라 c-200)")
        # its link says why (not merely "revoked")
        denied = await open_link(ops, _link(grant, "c-200"), "police")
        assert denied.status == 403 and denied.extra["reason"] == "camera-removed"


async def test_a_camera_moved_by_an_ngsi_ld_client_leaves_its_grants(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        await _camera(ops)
        other = (await nearest_ids(ops))[0]
        grant = await _grant(ops, ["c-200", other])
        moved = normalize_entity({"id": entity_id("c-200"), "location": {"type": "GeoProperty", "value": {
            "type": "Point", "coordinates": [POINT[0] + 0.01, POINT[1]]}}}, core_context(), require_type=False)
        (result,) = await ops.ucity.store.mutate(TENANT, [Mutation(entity_id("c-200"), merge_op(moved))], Context())
        assert not isinstance(result, Exception)
        await ops.settle()
        stored = await _stored(ops, grant)
        assert stored["cameras"] == [other] and stored["droppedCameras"] == {"c-200": "camera-changed"}
        assert [n["package"]["change"]["cause"] for n in _notices(receiver, "grant-narrowed")] == ["camera-changed"]
        # a change that does not move it (its name) leaves the other camera's grant alone
        renamed = await ops.call("patch_camera", "PATCH", "/", {"name": "다른 이름"}, role="admin", cameraId=other)
        assert renamed.status == 200 and (await _stored(ops, grant))["cameras"] == [other]


async def test_a_stream_url_re_pointed_leaves_the_grants_and_a_changed_password_does_not(
        make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        await _camera(ops)
        other = (await nearest_ids(ops))[0]
        grant = await _grant(ops, ["c-200", other])
        rotated = "rtsp://viewer:n3w@VMS.guro.example/live/c-200"  # the same feed, the VMS password changed
        await ops.call("patch_camera", "PATCH", "/", {"streamURL": rotated}, role="admin", cameraId="c-200")
        assert (await _stored(ops, grant))["cameras"] == ["c-200", other]
        assert (await open_link(ops, _link(grant, "c-200"), "police")).headers["Location"] == rotated
        # re-pointed at another camera's feed: the grant was not for that footage
        await ops.call("patch_camera", "PATCH", "/", {"streamURL": "rtsp://vms.guro.example/live/c-999"}, role="admin",
                       cameraId="c-200")
        stored = await _stored(ops, grant)
        assert stored["cameras"] == [other] and stored["droppedCameras"] == {"c-200": "camera-feed-changed"}
        refused = await open_link(ops, _link(grant, "c-200"), "police")
        assert refused.status == 403 and refused.extra["reason"] == "camera-feed-changed"
        assert "카메라 영상 주소 변경" in refused.detail and "camera footage URL changed since the grant" in refused.detail
        # the last camera's URL removed through the bulk route: the grant is revoked
        resp = await ops.call("patch_cameras", "PATCH", "/", {"cameras": [{"id": other, "streamURL": None}]},
                              role="admin")
        assert resp.status == 200 and resp.body["updated"] == 1
        stored = await _stored(ops, grant)
        assert (stored["status"], stored["revokeReason"]) == ("revoked", "camera footage URL changed")
        assert [n["package"]["change"]["cause"] for n in _notices(receiver, "grant-revoked")] == ["camera-feed-changed"]


async def test_a_camera_given_its_first_url_keeps_its_grants_and_a_csv_reimport_keeps_the_urls(
        make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        data = csv_bytes([row("3160000-0100", 카메라대수="1")])
        assert (await ops.call("import_cameras", "POST", "/", role="admin", raw=data, content_type="text/csv")).status == 200
        camera = "3160000-0100-1"
        grant = await _grant(ops, [camera])  # a direct share may name a camera without a URL yet
        resp = await ops.call("patch_cameras", "PATCH", "/", {"cameras": [
            {"id": camera, "streamURL": "rtsp://vms.guro.example/live/0100"}]}, role="admin")
        assert resp.body["updated"] == 1
        assert (await _stored(ops, grant))["cameras"] == [camera]
        again = await ops.call("import_cameras", "POST", "/", role="admin", raw=data, content_type="text/csv")
        assert again.body["camerasUpdated"] == 1
        shown = await ops.call("get_camera", role="admin", cameraId=camera)
        assert shown.body["streamURL"] == "rtsp://vms.guro.example/live/0100"  # not wiped by the file without URLs
        assert (await _stored(ops, grant))["status"] == "active"
        assert (await open_link(ops, _link(await _stored(ops, grant), camera), "police")).status == 307
        # a re-import that moves it: another camera, which neither keeps the feed nor the grant
        moved = csv_bytes([row("3160000-0100", 카메라대수="1", WGS84위도="37.5012")])
        assert (await ops.call("import_cameras", "POST", "/", role="admin", raw=moved,
                               content_type="text/csv")).body["camerasUpdated"] == 1
        assert (await ops.call("get_camera", role="admin", cameraId=camera)).body["streamURL"] is None
        stored = await _stored(ops, grant)
        assert (stored["status"], stored["droppedCameras"]) == ("revoked", {camera: "camera-changed"})
        denied = await open_link(ops, _link(grant, camera), "police")
        assert denied.status == 403 and denied.extra["reason"] == "camera-changed"


async def test_a_camera_changed_just_before_a_crash_leaves_its_grants_at_the_next_start(
        make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        await _camera(ops)
        other = (await nearest_ids(ops))[0]
        before = await _grant(ops, ["c-200", other])
        registry = ops.center.cameras
        follower, registry.on_change = registry.on_change, None  # the process stops before the grants follow
        moved = CameraIn.model_validate({**NEW, "lat": POINT[1] + 0.01})
        assert not isinstance((await registry.put(TENANT, [moved], "admin:park"))[0], Exception)
        registry.on_change = follower
        assert (await _stored(ops, before))["cameras"] == ["c-200", other]
        after = await _grant(ops, ["c-200"])  # a grant of the camera where it is now
        await ops.center.sweep()
        await ops.settle()
        stored = await _stored(ops, before)
        assert stored["cameras"] == [other] and stored["droppedCameras"] == {"c-200": "camera-changed"}
        (line,) = await _grant_lines(ops, before, "narrowed")
        assert line["actor"] == "system"
        assert [n["package"]["grant"]["id"] for n in _notices(receiver, "grant-narrowed")] == [before["id"]]
        assert (await _stored(ops, after))["cameras"] == ["c-200"]  # judged against its own record: untouched
        assert (await open_link(ops, _link(after, "c-200"), "police")).status == 307


# -- 2. PATCH /api/v1/cameras ------------------------------------------------------------------------------------
async def test_bulk_camera_urls_give_a_result_per_item(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        first, second, third = (await nearest_ids(ops))[:3]
        current = (await ops.call("get_camera", role="admin", cameraId=third)).body["streamURL"]
        items: list[Any] = [
            {"id": first, "streamURL": "rtsp://vms.guro.example/live/a", "stillImageURL": "https://vms.guro.example/a.jpg"},
            {"id": second, "streamURL": "file:///etc/passwd"},
            {"id": "no-such-camera", "streamURL": "rtsp://vms.guro.example/live/b"},
            {"id": first, "streamURL": "rtsp://vms.guro.example/live/c"},
            {"id": second},
            "c-1",
            {"id": third, "streamURL": current},
            {"id": second, "stillImageURL": "rtsp://vms.guro.example/still", "colour": "red"},
        ]
        resp = await ops.call("patch_cameras", "PATCH", "/api/v1/cameras", {"cameras": items}, role="admin")
        assert resp.status == 207
        assert (resp.body["updated"], resp.body["unchanged"], resp.body["failed"]) == (1, 1, 6)
        results = resp.body["results"]
        assert [r["status"] for r in results] == ["updated", "failed", "failed", "failed", "failed", "failed",
                                                  "unchanged", "failed"]
        codes = [[reason["code"] for reason in r.get("reasons", [])] for r in results]
        assert codes == [[], ["url-scheme"], ["not-found"], ["duplicate-id"], ["nothing-to-change"], ["not-an-object"],
                         [], ["field-unknown", "url-scheme"]] or codes == [
            [], ["url-scheme"], ["not-found"], ["duplicate-id"], ["nothing-to-change"], ["not-an-object"], [],
            ["url-scheme", "field-unknown"]]
        scheme = results[1]["reasons"][0]
        assert scheme["field"] == "streamURL" and scheme["ko"].startswith("주소 형식이 틀림") and "rtsp" in scheme["en"]
        assert results[2]["id"] == "no-such-camera" and results[5]["id"] is None
        shown = (await ops.call("get_camera", role="admin", cameraId=first)).body
        assert (shown["streamURL"], shown["stillImageURL"]) == ("rtsp://vms.guro.example/live/a",
                                                                "https://vms.guro.example/a.jpg")
        assert (await ops.call("get_camera", role="admin", cameraId=second)).body["streamURL"] != "file:///etc/passwd"
        lines = [line for line in await audit(ops, kind="camera") if line.get("bulk")]
        assert [(line["action"], line["camera"], line["fields"], line["actor"]) for line in lines] == [
            ("changed", first, ["stillImageURL", "streamURL"], "admin:admin")]
        ok = await ops.call("patch_cameras", "PATCH", "/", {"cameras": [{"id": second, "streamURL": None}]},
                            role="admin")
        assert ok.status == 200 and ok.body["results"] == [{"index": 0, "id": second, "status": "updated"}]


async def test_bulk_camera_urls_are_for_admins_and_limited_in_size(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        camera = (await nearest_ids(ops))[0]
        body = {"cameras": [{"id": camera, "streamURL": "rtsp://elsewhere.example/x"}]}
        with pytest.raises(UcityError) as refused:
            await ops.call("patch_cameras", "PATCH", "/", body, role="operator")
        assert refused.value.status == 403
        too_many = {"cameras": [{"id": f"c-{i}", "streamURL": "rtsp://vms.guro.example/x"} for i in range(BULK_MAX + 1)]}
        with pytest.raises(BadRequest) as large:
            await ops.call("patch_cameras", "PATCH", "/", too_many, role="admin")
        assert f"at most {BULK_MAX} cameras per request" in large.value.detail and "나누어 보내십시오" in large.value.detail
        for wrong in ({"cameras": []}, {"cameras": {"id": camera}}, {"items": []}):
            with pytest.raises(BadRequest):
                await ops.call("patch_cameras", "PATCH", "/", wrong, role="admin")
        assert (await ops.call("get_camera", role="admin", cameraId=camera)).body["streamURL"] != "rtsp://elsewhere.example/x"


# -- 3. times without a UTC offset ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("handler", "permission_role"), [("list_audit", "admin"), ("grant_stats", "admin")])
async def test_audit_and_statistics_refuse_a_time_without_its_offset(make_ops: MakeOps, handler: str,
                                                                     permission_role: str) -> None:
    async with make_ops(cameras=False) as ops:
        for name in ("from", "to"):
            with pytest.raises(BadRequest) as refused:
                await ops.call(handler, params={name: "2026-03-02T09:00:00"}, role=permission_role)
            assert refused.value.status == 400
            assert f"{name}에 UTC 오프셋 필요" in refused.value.detail and f"{name} needs a UTC offset" in refused.value.detail
        resp = await ops.call(handler, params={"from": "2026-03-02T09:00:00+09:00", "to": "2026-03-03T00:00:00Z"},
                              role=permission_role)
        assert resp.status == 200


# -- 4. the service of a direct share --------------------------------------------------------------------------------
def _event(service: str, type_code: str) -> Event:
    return cast(Event, SimpleNamespace(service=service, type_code=type_code))


def test_a_direct_share_takes_the_service_that_fits_the_event() -> None:
    fire, police = ["119_DISPATCH", "DISASTER"], ["112_VIDEO", "112_DISPATCH", "VULNERABLE"]
    assert lk.share_service(_event("119_DISPATCH", "fire"), fire) == "119_DISPATCH"  # its own service
    assert lk.share_service(_event("IOT", "flood"), fire) == "DISASTER"  # by the type, not the agency's first
    assert lk.share_service(_event("VULNERABLE", "dementia_missing"), police) == "VULNERABLE"
    assert lk.share_service(_event("119_DISPATCH", "fire"), police) == "112_DISPATCH"  # a neighbouring service
    assert lk.share_service(_event("IOT", "tilt_ladder"), fire) == "DISASTER"  # by the event's service
    # nothing fits: the least the agency receives, never the subject's section
    assert lk.share_service(_event("IOT", "tilt_ladder"), ["VULNERABLE", "112_DISPATCH", "112_VIDEO"]) == "112_VIDEO"


async def test_a_direct_share_of_a_flood_with_the_fire_service_gets_the_disaster_sections(
        make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("IOT", "flood"))
        camera = (await nearest_ids(ops))[0]
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "fire-119", "event": event.body["id"], "cameras": [camera]})
        assert grant.status == 201
        shown = await ops.call("get_event", eventId=event.body["id"])
        (link,) = [x for x in shown.body["linkages"] if x.get("direct")]
        assert link["service"] == "DISASTER"
        (package,) = [r.json["package"] for r in receiver.on("/119") if r.json["event"] == "linkage"]
        assert package["service"] == "DISASTER" and "activeAlarms" in package and "surroundings" not in package


# -- through HTTP: the route is mounted, and the refusals are ProblemDetails ----------------------------------------
def test_the_bulk_route_and_the_time_refusals_over_http(tmp_path: Path) -> None:
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    with TestClient(create_app(ops_settings(tmp_path)), base_url="http://127.0.0.1:8000") as http:
        camera = {"id": "gate-1", "lon": POINT[0], "lat": POINT[1]}
        assert http.post("/api/v1/cameras", json=camera, headers=admin).status_code == 201
        resp = http.patch("/api/v1/cameras", json={"cameras": [
            {"id": "gate-1", "streamURL": "rtsp://vms.example/live/gate-1"}, {"id": "gate-2", "streamURL": "x"}]},
            headers=admin)
        assert resp.status_code == 207
        assert [r["status"] for r in resp.json()["results"]] == ["updated", "failed"]
        assert http.get("/api/v1/cameras/gate-1", headers=admin).json()["streamURL"] == "rtsp://vms.example/live/gate-1"
        for path in ("/api/v1/audit", "/api/v1/grants/stats"):
            refused = http.get(path, params={"from": "2026-03-02T09:00:00"}, headers=admin)
            problem = refused.json()
            assert refused.status_code == 400 and problem["status"] == 400 and problem["type"] and problem["title"]
            assert "UTC 오프셋" in problem["detail"] and "needs a UTC offset" in problem["detail"]
            assert http.get(path, params={"from": "2026-03-02T09:00:00+09:00"}, headers=admin).status_code == 200
