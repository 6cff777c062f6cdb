"""QA15 F1, F5, F9d, F9i, F9j: footage grants and the cameras they cover. On both backends (tests/ops/conftest.py).

* F1: a grant covers each camera as it was when granted (`cameras.identity`: registration time and place). A camera
  deleted and registered again under its id (elsewhere, with another feed), or moved, is refused (403
  `camera-changed`, audited); one deleted is refused (403 `camera-removed`). A grant stored before identities were
  kept accepts a camera registered before its issue only.
* F5: the nearest cameras of a package or grant are those that can give footage (working, with a stream URL); a
  footage link of a camera without a URL is a 404 audited `failed`, not an allowed access.
* F9d: `GET /grants?status=expired`. F9i: refused renewals of ended grants are audited. F9j: the `grant-revoked`
  notice names the cameras and the time.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import POINT, TENANT, Ops
from tests.ops.test_linkage import audit, event_body, fire_and_police, nearest_ids, open_link
from ucity.core.errors import UcityError
from ucity.ops.cameras import CameraIn
from ucity.ops.grants import Grant

NEW = {"id": "c-200", "lon": POINT[0] + 0.0003, "lat": POINT[1], "cameraType": "PTZ",
       "streamURL": "rtsp://vms.guro.example/live/c-200"}


async def _grant(ops: Ops, cameras: list[str], **extra: Any) -> dict[str, Any]:
    event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
    grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
        "agency": "police-112", "event": event.body["id"], "cameras": cameras, "purpose": "용의자 추적", **extra})
    assert grant.status == 201
    body: dict[str, Any] = grant.body
    return body


def _link(grant: dict[str, Any], camera: str) -> str:
    return next(entry["stream"] for entry in grant["links"] if entry["camera"] == camera)


async def _access_lines(ops: Ops, grant: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(line["outcome"], line.get("reason")) for line in await audit(ops, kind="grant", grant=grant["id"])
            if line["action"] == "access"]


async def test_a_camera_id_registered_again_elsewhere_is_not_the_granted_camera(make_ops: MakeOps,
                                                                                 receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        assert (await ops.call("create_camera", "POST", "/", NEW, role="admin")).status == 201
        grant = await _grant(ops, ["c-200"])
        link = _link(grant, "c-200")
        assert (await open_link(ops, link, "police")).status == 307
        await ops.advance(60)
        # the camera is deleted while the grant is live: its link is refused, not a 404 of a missing camera
        assert (await ops.call("delete_camera", "DELETE", "/", role="admin", cameraId="c-200")).status == 204
        removed = await open_link(ops, link, "police")
        assert removed.status == 403 and removed.extra["reason"] == "camera-removed"
        # the id is registered again elsewhere with another feed (a CSV re-import re-uses management numbers)
        await ops.advance(60)
        other = {**NEW, "lon": 127.0, "lat": 37.6, "streamURL": "rtsp://other.example/private-room"}
        assert (await ops.call("create_camera", "POST", "/", other, role="admin")).status == 201
        changed = await open_link(ops, link, "police")
        assert isinstance(changed, UcityError) and changed.status == 403
        assert changed.extra["reason"] == "camera-changed"
        assert "새 공유가 필요합니다 / " in changed.detail and "registered again or moved" in changed.detail
        assert await _access_lines(ops, grant) == [("ok", None), ("denied", "camera-removed"),
                                                  ("denied", "camera-changed")]
        # a new grant covers the new camera
        again = await _grant(ops, ["c-200"])
        assert (await open_link(ops, _link(again, "c-200"), "police")).headers["Location"] == other["streamURL"]


async def test_a_moved_camera_is_refused_and_an_unchanged_reimport_is_not(make_ops: MakeOps,
                                                                        receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        assert (await ops.call("create_camera", "POST", "/", NEW, role="admin")).status == 201
        grant = await _grant(ops, ["c-200"])
        link = _link(grant, "c-200")
        registry = ops.center.cameras
        await ops.advance(60)
        # written again in place (a re-import of the same file, a new name, the VMS password changed in its URL): the
        # same camera (a URL re-pointed at another feed is not: test_camera_grant_changes.py)
        rotated = "rtsp://viewer:n3w-pass@vms.guro.example/live/c-200"
        same = CameraIn.model_validate({**NEW, "name": "디지털로 c-200", "streamURL": rotated})
        assert not isinstance((await registry.put(TENANT, [same], "admin:park"))[0], Exception)
        assert (await open_link(ops, link, "police")).headers["Location"] == rotated
        # moved (a re-import with other coordinates): another camera
        moved = CameraIn.model_validate({**NEW, "lat": POINT[1] + 0.01})
        assert not isinstance((await registry.put(TENANT, [moved], "admin:park"))[0], Exception)
        await ops.settle()
        refused = await open_link(ops, link, "police")
        assert refused.status == 403 and refused.extra["reason"] == "camera-changed"


async def test_a_grant_stored_before_camera_identities_still_works_but_not_for_a_camera_registered_later(
        make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        assert (await ops.call("create_camera", "POST", "/", NEW, role="admin")).status == 201
        camera = (await nearest_ids(ops))[0]
        grant = await _grant(ops, ["c-200", camera])
        store = ops.ucity.store
        old = Grant.from_doc({k: v for k, v in (await store.get_grant(TENANT, grant["id"])).items() if k != "marks"})
        assert old.marks is None
        assert await store.save_grant(old.to_row(grant["issuedAt"]), [])  # as a grant of the previous release
        assert (await open_link(ops, _link(grant, "c-200"), "police")).status == 307
        assert (await open_link(ops, _link(grant, camera), "police")).status == 307
        await ops.advance(60)
        await ops.call("delete_camera", "DELETE", "/", role="admin", cameraId="c-200")
        await ops.advance(60)
        await ops.call("create_camera", "POST", "/", NEW, role="admin")  # same place, registered after the grant
        refused = await open_link(ops, _link(grant, "c-200"), "police")
        assert refused.status == 403 and refused.extra["reason"] == "camera-changed"
        assert (await open_link(ops, _link(grant, camera), "police")).status == 307


async def test_a_camera_without_a_stream_gives_its_slot_and_its_link_is_not_an_allowed_access(
        make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        near = await ops.call("list_cameras", params={"near": f"{POINT[0]},{POINT[1]}", "n": "6"})
        six = [c["id"] for c in near.body["cameras"]]
        assert len(six) == 6
        await ops.call("patch_camera", "PATCH", "/", {"streamURL": None}, role="admin", cameraId=six[0])
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        package = receiver.on("/119")[0].json["package"]
        assert [c["id"] for c in package["cameras"]] == six[1:]  # the 6th working camera takes the slot
        [linkage] = (await ops.call("get_event", eventId=created.body["id"])).body["linkages"]
        assert linkage["cameras"] == six[1:]
        listed = await ops.call("event_cameras", eventId=created.body["id"])
        assert [c["id"] for c in listed.body["cameras"]] == six[1:]
        # an operator may still share it by name; its link answers 404, audited as failed, not as footage seen
        grant = await _grant(ops, [six[0], six[1]])
        token = grant["token"]
        with pytest.raises(UcityError) as missing:
            await ops.call("camera_stream", params={"grant": token}, role="police", cameraId=six[0])
        assert missing.value.status == 404
        assert missing.value.detail == f"{six[0]}: 영상 주소 없음 / the camera has no stream URL"
        assert (await open_link(ops, _link(grant, six[1]), "police")).status == 307
        assert await _access_lines(ops, grant) == [("failed", "no-stream-url"), ("ok", None)]
        stats = (await ops.call("grant_stats")).body["agencies"]["police-112"]
        assert (stats["accessAllowed"], stats["accessDenied"]) == (1, 0)


async def test_expired_grants_are_listed_and_refused_renewals_of_ended_grants_are_audited(
        make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        cameras = (await nearest_ids(ops))[:2]
        ending = await _grant(ops, cameras, minutes=10)
        live = await _grant(ops, cameras, minutes=60)
        revoked = await _grant(ops, cameras, minutes=60)
        await ops.call("revoke_grant", "POST", "/", {"reason": "오인 신고"}, grantId=revoked["id"])
        await ops.advance(11 * 60)

        async def listed(status: str) -> list[str]:
            resp = await ops.call("list_grants", params={"status": status})
            assert resp.body["total"] == len(resp.body["grants"])
            assert {g["status"] for g in resp.body["grants"]} <= ({status} if status != "all" else {status, "active",
                                                                                                       "expired", "revoked"})
            return [g["id"] for g in resp.body["grants"]]

        assert await listed("expired") == [ending["id"]]
        assert await listed("active") == [live["id"]]
        assert await listed("revoked") == [revoked["id"]]
        assert sorted(await listed("all")) == sorted([ending["id"], live["id"], revoked["id"]])
        with pytest.raises(UcityError) as bad:
            await ops.call("list_grants", params={"status": "ended"})
        assert bad.value.status == 400 and "expired" in bad.value.detail
        # renewals of ended grants: 409, and audited like the limit refusals (who tried, why not)
        for grant, role, reason in ((ending, "police", "grant-expired"), (revoked, "operator", "grant-revoked")):
            with pytest.raises(UcityError) as refused:
                await ops.call("renew_grant", "POST", "/", {}, role=role, grantId=grant["id"])
            assert refused.value.status == 409
            lines = [line for line in await audit(ops, kind="grant", grant=grant["id"]) if line["action"] == "renewed"]
            actor = "agency:police-terminal" if role == "police" else "operator:op-kim"
            assert [(line["outcome"], line["reason"], line["actor"]) for line in lines] == [("denied", reason, actor)]
        stats = (await ops.call("grant_stats")).body["agencies"]["police-112"]
        assert stats["renewed"] == 0


async def test_the_revocation_notice_names_the_cameras_and_the_time(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        cameras = (await nearest_ids(ops))[:2]
        grant = await _grant(ops, cameras)
        await ops.advance(90)
        revoked = await ops.call("revoke_grant", "POST", "/", {"reason": "오인 신고"}, grantId=grant["id"])
        [notice] = [r.json for r in receiver.on("/112") if r.json["event"] == "grant-revoked"]
        assert notice["package"]["grant"] == {"id": grant["id"], "reason": "오인 신고", "cameras": cameras,
                                              "revokedAt": "2026-03-02T00:01:30.000000Z",
                                              "expiresAt": grant["expiresAt"]}
        assert revoked.body["revokedAt"] == "2026-03-02T00:01:30.000000Z"
        names = ", ".join(cameras)
        assert notice["text"] == {
            "ko": f"영상 공유 {grant['id']} 회수 (오인 신고): 카메라 {names}, 2026-03-02 09:01:30 KST부터 볼 수 없음. "
                  f"사건 {grant['event']}",
            "en": f"Footage grant {grant['id']} revoked (오인 신고): cameras {names}, no longer viewable from "
                  f"2026-03-02 09:01:30 KST. Event {grant['event']}"}
        assert notice["subject"] == {"ko": "영상 공유 회수", "en": "Footage grant revoked"}
