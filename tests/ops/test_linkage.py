"""Agency linkage and footage grants: the 119 package at a real local webhook with signed grant links that
work before expiry and fail after it, for another agency and after revocation, every access audited
(PLAT-R5, R6, R7); the 112 gate holding other crime types for an operator (PLAT-R4)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import POINT, TOKENS, WEBHOOK_SECRET, Ops, agency
from ucity.alarms.notifiers.webhook import SIGNATURE_HEADER, verify
from ucity.ops.auth import SYSTEM


def fire_and_police(receiver: Receiver) -> dict[str, Any]:
    return {"agencies": [
        agency("fire-119", "fire", ["119_DISPATCH", "DISASTER"], receiver.url + "/119", autoServices=["119_DISPATCH"]),
        agency("police-112", "police", ["112_VIDEO", "112_DISPATCH", "VULNERABLE"], receiver.url + "/112"),
        agency("disaster-room", "disaster", ["DISASTER"], None),
    ]}


def event_body(service: str, type_code: str, **extra: Any) -> dict[str, Any]:
    return {"service": service, "typeCode": type_code, "location": {"lon": POINT[0], "lat": POINT[1]},
            "address": "서울특별시 구로구 디지털로 300", "details": "3층 창문에서 연기", **extra}


def link_parts(url: str) -> tuple[str, str, str]:
    """(camera id, footage kind, token) of a footage link."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    return segments[-2], segments[-1], parse_qs(parts.query)["grant"][0]


async def open_link(ops: Ops, url: str, role: str | None) -> Any:
    camera, kind, token = link_parts(url)
    handler = "camera_stream" if kind == "stream" else "camera_still"
    try:
        return await ops.call(handler, params={"grant": token}, role=role, cameraId=camera)
    except Exception as exc:  # a denial is a UcityError: return it for the assertions
        return exc


async def audit(ops: Ops, **params: str) -> list[dict[str, Any]]:
    resp = await ops.call("list_audit", params={"limit": "1000", **params}, role="admin")
    assert resp.status == 200
    entries: list[dict[str, Any]] = resp.body["entries"]
    return entries


async def nearest_ids(ops: Ops) -> list[str]:
    resp = await ops.call("list_cameras", params={"near": f"{POINT[0]},{POINT[1]}"})
    return [c["id"] for c in resp.body["cameras"]]


# -- 119 ---------------------------------------------------------------------------------------------------
async def test_119_package_reaches_the_webhook_with_links_that_expire(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        first, streamless = (await nearest_ids(ops))[1:3]
        await ops.call("patch_camera", "PATCH", "/", {"stillImageURL": "https://vms.guro.example/still/x.jpg"},
                       role="admin", cameraId=first)
        await ops.call("patch_camera", "PATCH", "/", {"streamURL": None}, role="admin", cameraId=streamless)
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        assert created.status == 201
        event_id = created.body["id"]
        assert created.body["status"] == "sharing"
        [linkage] = created.body["linkages"]
        assert (linkage["agency"], linkage["status"], linkage["automatic"]) == ("fire-119", "queued", True)

        # the package arrived, signed like every ucity webhook
        [delivery] = receiver.on("/119")
        assert verify(WEBHOOK_SECRET.encode(), delivery.body, delivery.headers[SIGNATURE_HEADER.lower()])
        body = delivery.json
        assert body["event"] == "linkage" and body["subject"]["ko"].startswith("[119 긴급출동 지원] 화재")
        # texts for people: level names and Korea time, as in alarm notifications (QA C1); fields stay codes, UTC
        assert body["text"] == {
            "ko": f"119 긴급출동 지원: 화재 (단계 경계) 서울특별시 구로구 디지털로 300, 발생 2026-03-02 09:00:00 KST. "
                  f"사건 {event_id}",
            "en": f"119 dispatch support: Fire (level Warning) 서울특별시 구로구 디지털로 300, occurred "
                  f"2026-03-02 09:00:00 KST. Event {event_id}"}
        package = body["package"]
        assert package["service"] == "119_DISPATCH" and package["agency"] == "fire-119"
        assert package["event"]["level"] == "warning" and package["event"]["occurredAt"] == "2026-03-02T00:00:00.000000Z"
        assert package["event"]["id"] == event_id and package["event"]["details"] == "3층 창문에서 연기"
        # the nearest cameras that can give footage: the one without a stream gives its slot to the next (QA15 F5)
        ids, near = [c["id"] for c in package["cameras"]], await nearest_ids(ops)
        assert streamless not in ids and len(ids) == 5 and ids[:4] == [c for c in near if c != streamless]
        assert all(c["stream"] for c in package["cameras"])
        assert package["still"] == {"camera": first, "url": package["cameras"][1]["still"]}  # PLAT-R7
        assert set(package["surroundings"]) == {"traffic", "parking", "hydrants", "activeAlarms", "radiusM"}
        assert package["grant"]["expiresAt"] == "2026-03-02T00:30:00.000000Z"  # 30 minutes
        stored = (await ops.call("get_event", eventId=event_id)).body["linkages"][0]
        assert stored["status"] == "delivered" and stored["deliveredAt"] == "2026-03-02T00:00:00.000000Z"

        # before expiry: the fire agency's terminal follows the links to the camera
        stream_url = package["cameras"][0]["stream"]
        resp = await open_link(ops, stream_url, "fire")
        assert resp.status == 307
        assert resp.headers["Location"] == f"rtsp://vms.guro.example/live/{package['cameras'][0]['id'][5:]}"
        resp = await open_link(ops, package["still"]["url"], "fire")
        assert resp.status == 307 and resp.headers["Location"] == "https://vms.guro.example/still/x.jpg"

        # another agency, or nobody, cannot use them
        denied = await open_link(ops, stream_url, "police")
        assert denied.status == 403 and denied.extra["reason"] == "other-agency"
        denied = await open_link(ops, stream_url, None)
        assert denied.status == 401 and denied.extra["reason"] == "unauthenticated"
        # a camera outside the grant, or a tampered token, neither
        camera, _, token = link_parts(stream_url)
        outside = await _try(ops, "camera_stream", token, "fire", "guro-cctv-00001")
        assert outside.status == 403 and outside.extra["reason"] == "camera-not-granted"
        head, payload, signature = token.split(".")
        forged = await _try(ops, "camera_stream", f"{head}.{payload}x.{signature}", "fire", camera)
        assert forged.status == 403 and forged.extra["reason"] in ("bad-signature", "malformed")

        # after expiry (fake clock): refused
        await ops.advance(30 * 60 + 1)
        expired = await open_link(ops, stream_url, "fire")
        assert expired.status == 403 and expired.extra["reason"] == "expired"

        # every access is in the audit log, with its outcome and reason
        accesses = await audit(ops, action="access", event=event_id)
        assert [(a["agency"], a["outcome"], a["reason"], a["footage"]) for a in accesses] == [
            ("fire-119", "ok", None, "stream"), ("fire-119", "ok", None, "still"),
            ("police-112", "denied", "other-agency", "stream"), (None, "denied", "unauthenticated", "stream"),
            ("fire-119", "denied", "camera-not-granted", "stream"),
            ("fire-119", "denied", "expired", "stream"),
        ]
        assert all(a["grant"] == package["grant"]["id"] and a["kind"] == "grant" for a in accesses)
        forged_line = [a for a in await audit(ops, action="access") if a["outcome"] == "denied"
                       and a["reason"] in ("bad-signature", "malformed")]
        assert len(forged_line) == 1 and forged_line[0]["grant"] is None  # nothing of a forged token is trusted


async def test_a_link_without_its_grant_is_refused_and_audited(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        camera = (await nearest_ids(ops))[0]
        absent = await _call_error(ops, "camera_stream", "GET", None, "fire", cameraId=camera)
        empty = await _try(ops, "camera_still", "", "police", camera)
        anonymous = await _try(ops, "camera_stream", "", None, camera)
        for denied in (absent, empty, anonymous):
            assert denied.status == 400 and denied.extra["reason"] == "missing-grant"
            assert denied.to_problem()["type"].endswith("BadRequestData")
        # every attempt is audited (QA 16), with who tried, and nothing of any credential
        lines = await audit(ops, action="access")
        assert [(a["actor"], a["agency"], a["camera"], a["footage"], a["outcome"], a["reason"], a["grant"])
                for a in lines] == [
            ("agency:fire-terminal", "fire-119", camera, "stream", "denied", "missing-grant", None),
            ("agency:police-terminal", "police-112", camera, "still", "denied", "missing-grant", None),
            ("anonymous", None, camera, "stream", "denied", "missing-grant", None)]
        assert not any(token in str(lines) for token in TOKENS.values())
        assert (await ops.call("grant_stats")).body["agencies"]["fire-119"]["accessDenied"] == 1


async def test_a_link_without_a_token_is_an_unauthorized_problem(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        denied = await open_link(ops, receiver.on("/119")[0].json["package"]["cameras"][0]["stream"], None)
        problem = denied.to_problem()
        # the same type and title as every other 401 (QA 13), with the footage reason
        assert (denied.status, problem["type"], problem["title"], problem["reason"]) == (
            401, "urn:ucity:errors:Unauthorized", "Authentication required", "unauthenticated")
        assert denied.headers["WWW-Authenticate"].startswith("Bearer")


async def _try(ops: Ops, handler: str, token: str, role: str | None, camera: str) -> Any:
    try:
        return await ops.call(handler, params={"grant": token}, role=role, cameraId=camera)
    except Exception as exc:
        return exc


async def test_revoked_grant_links_fail_and_the_agency_is_told(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
        cameras = (await nearest_ids(ops))[:2]
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": cameras, "purpose": "용의자 도주로 확인"})
        assert grant.status == 201 and grant.body["status"] == "active"
        assert grant.body["expiresAt"] == "2026-03-02T00:30:00.000000Z"
        link = grant.body["links"][0]["stream"]
        assert (await open_link(ops, link, "police")).status == 307
        revoked = await ops.call("revoke_grant", "POST", "/", {"reason": "오인 신고"}, grantId=grant.body["id"])
        assert revoked.body["status"] == "revoked" and revoked.body["revokedBy"] == "operator:op-kim"
        denied = await open_link(ops, link, "police")
        assert denied.status == 403 and denied.extra["reason"] == "revoked"
        notices = [r.json for r in receiver.on("/112") if r.json["event"] == "grant-revoked"]
        assert notices and notices[0]["package"]["grant"] == {
            "id": grant.body["id"], "reason": "오인 신고", "cameras": grant.body["cameras"],
            "revokedAt": revoked.body["revokedAt"], "expiresAt": revoked.body["expiresAt"]}
        lines = await audit(ops, grant=grant.body["id"], kind="grant")  # (the share's linkage lines aside)
        assert [(line["action"], line["outcome"], line["actor"]) for line in lines] == [
            ("issued", "ok", "operator:op-kim"), ("access", "ok", "agency:police-terminal"),
            ("revoked", "ok", "operator:op-kim"), ("access", "denied", "agency:police-terminal")]
        assert lines[0]["cameras"] == cameras and "purpose" not in lines[0]  # its length only (FIX-I)
        assert (lines[0]["purposeChars"], lines[0]["purposeMasked"]) == (len("용의자 도주로 확인"), False)
        assert (lines[2]["reasonChars"], lines[2]["reasonMasked"]) == (len("오인 신고"), False) and "reason" not in lines[2]
        assert lines[0]["start"] == "2026-03-02T00:00:00.000000Z" and lines[0]["end"] == "2026-03-02T00:30:00.000000Z"


async def test_renewal_extends_with_a_new_token(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "theft"))
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": (await nearest_ids(ops))[:1]})
        old_link = grant.body["links"][0]["stream"]
        await ops.advance(25 * 60)
        renewed = await ops.call("renew_grant", "POST", "/", {}, role="police", grantId=grant.body["id"])
        assert renewed.status == 200 and renewed.body["renewals"] == 1
        assert renewed.body["expiresAt"] == "2026-03-02T00:55:00.000000Z"
        new_link = renewed.body["links"][0]["stream"]
        assert new_link != old_link
        await ops.advance(6 * 60)  # 00:31: the old link ended with its own expiry, the new one lives
        assert (await open_link(ops, old_link, "police")).extra["reason"] == "expired"
        assert (await open_link(ops, new_link, "police")).status == 307
        await ops.advance(25 * 60)  # 00:56
        assert (await open_link(ops, new_link, "police")).extra["reason"] == "expired"
        late = await _call_error(ops, "renew_grant", "POST", {}, "police", grantId=grant.body["id"])
        assert late.status == 409


async def _call_error(ops: Ops, name: str, method: str, body: Any, role: str, **path: Any) -> Any:
    try:
        return await ops.call(name, method, "/", body, role=role, **path)
    except Exception as exc:
        return exc


async def test_closing_the_event_revokes_its_grants(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        link = receiver.on("/119")[0].json["package"]["cameras"][0]["stream"]
        event_id = created.body["id"]
        for status in ("dispatched", "closed"):
            assert (await ops.call("event_status", "POST", "/", {"status": status}, eventId=event_id)).status == 200
        denied = await open_link(ops, link, "fire")
        assert denied.status == 403 and denied.extra["reason"] == "revoked"
        grants = await ops.call("list_grants", params={"event": event_id, "status": "revoked"})
        assert grants.body["total"] == 1 and grants.body["grants"][0]["revokeReason"] == "event closed"
        grant_id = grants.body["grants"][0]["id"]
        # the fire room is told, as for a revocation by hand (QA 9): its terminal drops the links
        notices = [r.json for r in receiver.on("/119") if r.json["event"] == "grant-revoked"]
        [revoked] = grants.body["grants"]
        assert [n["package"] for n in notices] == [{"grant": {
            "id": grant_id, "reason": "event closed", "cameras": revoked["cameras"], "revokedAt": revoked["revokedAt"],
            "expiresAt": revoked["expiresAt"]}, "event": {"id": event_id}}]
        assert notices[0]["subject"] == {"ko": "영상 공유 회수", "en": "Footage grant revoked"}
        lines = await audit(ops, grant=grant_id, action="revoked")
        assert [(line["actor"], line["reason"]) for line in lines] == [("operator:op-kim", "event closed")]


async def test_cancelling_the_event_revokes_every_grant_and_tells_each_agency(make_ops: MakeOps,
                                                                              receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "robbery"),
                                 role="police")
        event_id = created.body["id"]
        police_grant = created.body["linkages"][0]["grant"]
        cameras = (await nearest_ids(ops))[:1]
        fire = await ops.call("create_grant", "POST", "/api/v1/grants", {"agency": "fire-119", "event": event_id,
                                                                          "cameras": cameras})
        # one grant already revoked by hand is not revoked (nor announced) twice, and does not stop the others
        handled = await ops.call("create_grant", "POST", "/api/v1/grants", {"agency": "fire-119", "event": event_id,
                                                                            "cameras": cameras})
        await ops.call("revoke_grant", "POST", "/", {"reason": "잘못 공유"}, grantId=handled.body["id"])
        assert (await ops.call("event_status", "POST", "/", {"status": "cancelled"}, eventId=event_id)).status == 200
        told = {(r.path, r.json["package"]["grant"]["id"], r.json["package"]["grant"]["reason"])
                for r in receiver.received if r.json["event"] == "grant-revoked"}
        assert told == {("/112", police_grant, "event cancelled"), ("/119", fire.body["id"], "event cancelled"),
                        ("/119", handled.body["id"], "잘못 공유")}
        assert len([r for r in receiver.received if r.json["event"] == "grant-revoked"]) == 3
        revoked = await audit(ops, event=event_id, action="revoked")
        # the operator's typed reason by its length only (FIX-I), the codes as they are
        assert sorted((line["grant"], str(line.get("reason", line.get("reasonChars")))) for line in revoked) == sorted([
            (handled.body["id"], str(len("잘못 공유"))), (police_grant, "event cancelled"),
            (fire.body["id"], "event cancelled")])


async def test_a_grant_made_while_its_event_closes_is_revoked_and_announced(make_ops: MakeOps,
                                                                             receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        held_event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "noise"),
                                    role="police")
        direct_event = await ops.call("create_event", "POST", "/api/v1/events", event_body("DISASTER", "flood"))
        issue = ops.center.grants.issue

        async def cancelled_meanwhile(tenant: str, agency_id: str, event: str, *args: Any, **kwargs: Any) -> Any:
            # another operator cancels the event between the checks and the grant (the close finds no grant yet)
            await ops.center.transition(tenant, event, "cancelled", SYSTEM)
            return await issue(tenant, agency_id, event, *args, **kwargs)

        ops.center.grants.issue = cancelled_meanwhile
        linkage = held_event.body["linkages"][0]["id"]
        late = await _call_error(ops, "approve_linkage", "POST", {}, "operator", eventId=held_event.body["id"],
                                 linkageId=linkage)
        assert late.status == 409
        direct = await _call_error(ops, "create_grant", "POST", {
            "agency": "fire-119", "event": direct_event.body["id"], "cameras": (await nearest_ids(ops))[:1]},
                                   "operator")
        assert direct.status == 409
        ops.center.grants.issue = issue
        event = (await ops.call("get_event", eventId=held_event.body["id"])).body
        assert [(x["status"], x["reason"], x["grant"]) for x in event["linkages"]] == [
            ("rejected", "event cancelled", None)]
        grants = (await ops.call("list_grants", params={"status": "active"})).body
        assert grants["total"] == 0  # nothing shared for a cancelled event
        # no package; the police learn their request was rejected (QA 4) and the grant made meanwhile revoked
        assert [r.json["event"] for r in receiver.on("/112")] == ["linkage-rejected", "grant-revoked"]
        assert receiver.on("/112")[0].json["package"] == {
            "linkage": {"id": linkage, "service": "112_VIDEO", "reason": "event cancelled",
                        "decidedBy": "operator:op-kim"},
            "event": {"id": held_event.body["id"], "status": "cancelled"}}
        assert [r.json["event"] for r in receiver.on("/119")] == ["grant-revoked"]
        revoked = await audit(ops, action="revoked")
        assert [(line["actor"], line["reason"]) for line in revoked] == [("system", "event cancelled")] * 2


# -- 112 gate ----------------------------------------------------------------------------------------------
async def test_112_video_outside_the_crime_list_waits_for_an_operator(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        # the 112 room reports a noise complaint and so asks for its video: held
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "noise"),
                                 role="police")
        event_id = created.body["id"]
        [held] = created.body["linkages"]
        assert (held["status"], held["reason"], held["agency"]) == ("held", "crime-type-not-listed", "police-112")
        assert created.body["status"] == "received" and receiver.on("/112") == []
        grants = await ops.call("list_grants", params={"event": event_id})
        assert grants.body["total"] == 0
        # asking again through the API (the documented follow-up) gets the same held linkage back, not a second
        # one (QA 18); and the police cannot approve it themselves
        again = await ops.call("request_linkage", "POST", "/", {}, role="police", eventId=event_id)
        assert again.status == 202 and again.body == held
        assert [link["id"] for link in (await ops.call("get_event", eventId=event_id)).body["linkages"]] == [held["id"]]
        refused = await _call_error(ops, "approve_linkage", "POST", {}, "police", eventId=event_id,
                                    linkageId=held["id"])
        assert refused.status == 403
        # an operator approves: the package goes out with the nearest cameras and their links
        approved = await ops.call("approve_linkage", "POST", "/", {"reason": "주민 안전 확인"}, eventId=event_id,
                                  linkageId=held["id"])
        assert approved.status == 200 and approved.body["status"] == "queued"
        assert approved.body["decidedBy"] == "operator:op-kim" and len(approved.body["cameras"]) == 5
        [delivery] = receiver.on("/112")
        assert delivery.json["package"]["linkage"] == held["id"]
        assert (await open_link(ops, delivery.json["package"]["cameras"][0]["stream"], "police")).status == 307
        event = (await ops.call("get_event", eventId=event_id)).body
        assert event["status"] == "sharing"
        assert [link["status"] for link in event["linkages"]] == ["delivered"]
        # the repeated request is audited, but counted once in the statistics
        lines = [(a["action"], a["outcome"]) for a in await audit(ops, kind="linkage", event=event_id)]
        assert lines == [("requested", "held"), ("requested", "duplicate"), ("approved", "ok"), ("queued", "ok"),
                         ("delivered", "ok")]
        stats = (await ops.call("grant_stats")).body["agencies"]["police-112"]
        assert (stats["requested"], stats["held"], stats["approved"], stats["delivered"]) == (1, 1, 1, 1)
        # once it is no longer held, asking again is a new request
        new = await ops.call("request_linkage", "POST", "/", {}, role="police", eventId=event_id)
        assert new.status == 202 and new.body["id"] != held["id"]


async def test_an_operator_request_approves_the_held_one(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "noise"),
                                 role="police")
        event_id, [held] = created.body["id"], created.body["linkages"]
        shared = await ops.call("request_linkage", "POST", "/", {"agency": "police-112", "purpose": "주민 안전"},
                                eventId=event_id)
        assert shared.status == 201 and shared.body["id"] == held["id"] and shared.body["status"] == "queued"
        assert shared.body["decidedBy"] == "operator:op-kim" and shared.body["purpose"] == "주민 안전"
        event = (await ops.call("get_event", eventId=event_id)).body
        assert [(link["id"], link["status"]) for link in event["linkages"]] == [(held["id"], "delivered")]
        assert len(receiver.on("/112")) == 1
        lines = [(a["action"], a["outcome"], a["actor"]) for a in await audit(ops, kind="linkage", event=event_id)]
        assert lines[:2] == [("requested", "held", "agency:police-terminal"), ("approved", "ok", "operator:op-kim")]


async def test_112_video_for_a_listed_crime_goes_at_once(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "kidnapping"),
                                 role="police")
        [link] = created.body["linkages"]
        assert link["status"] == "queued" and link["decidedBy"] == "agency:police-terminal"
        assert len(receiver.on("/112")) == 1 and created.body["status"] == "sharing"


async def test_operator_request_needs_no_further_approval(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "noise"))
        assert created.body["linkages"] == []  # police has no autoServices
        link = await ops.call("request_linkage", "POST", "/", {"agency": "police-112"}, eventId=created.body["id"])
        assert link.status == 201 and link.body["status"] == "queued" and link.body["reason"] is None


async def test_agency_without_webhook_fetches_its_package(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("DISASTER", "flood"))
        link = await ops.call("request_linkage", "POST", "/", {"agency": "disaster-room"}, eventId=created.body["id"])
        assert link.body["status"] == "ready"
        package = await ops.call("linkage_package", role="disaster", eventId=created.body["id"],
                                 linkageId=link.body["id"])
        assert package.status == 200 and len(package.body["cameras"]) == 5 and "activeAlarms" in package.body
        assert package.body["cameras"] == link.body["package"]["cameras"]  # the same links, rebuilt
        assert (await open_link(ops, package.body["cameras"][0]["stream"], "disaster")).status == 307


async def test_request_statistics_per_agency(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        held = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "noise"), role="police")
        await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "robbery"), role="police")
        fire = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        link = receiver.on("/119")[0].json["package"]["cameras"][0]["stream"]
        await open_link(ops, link, "fire")
        await open_link(ops, link, "police")
        assert held.status == fire.status == 201
        stats = (await ops.call("grant_stats")).body["agencies"]
        assert stats["police-112"] == {"requested": 2, "held": 1, "approved": 0, "rejected": 0, "delivered": 1,
                                       "failed": 0, "grantsIssued": 1, "renewed": 0, "revoked": 0, "narrowed": 0,
                                       "accessAllowed": 0, "accessDenied": 1}
        assert stats["fire-119"]["requested"] == 1 and stats["fire-119"]["accessAllowed"] == 1
        assert stats["fire-119"]["grantsIssued"] == 1 and stats["fire-119"]["delivered"] == 1


async def test_a_webhook_that_stays_down_is_a_failed_linkage_and_a_dead_letter(make_ops: MakeOps,
                                                                               receiver: Receiver) -> None:
    receiver.status["/119"] = 503
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        await ops.advance(2)  # retries back off on the platform clock: 2 s, then 4 s
        await ops.advance(4)
        assert len(receiver.on("/119")) == 3
        event = (await ops.call("get_event", eventId=created.body["id"])).body
        assert event["linkages"][0]["status"] == "failed" and event["linkages"][0]["error"] == "HTTP 503"
        letters = await ops.ucity.alarms.dispatcher.dead_letters("urn:ngsi-ld:tenant:default")
        assert [letter["notifier"] for letter in letters] == ["agency:fire-119"]
        assert letters[0]["notification"]["package"]["event"]["id"] == created.body["id"]
