"""QA15: operations events between the centre and the 112/119 rooms.

F4 an occurredAt without a UTC offset is refused (not read as UTC), and one absurdly old or ahead too;
F7 a repeat of the event's status is idempotent, a backwards move says who set the status and when;
F6 an agency reports back (acknowledged ... completed) on an event shared with it, and is told of `dispatched`;
F9b a share is labelled by the event's service and type names; F9c a package without cameras says so;
F9h a linkage decision's 409 has its own type.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import Ops
from tests.ops.test_linkage import event_body, fire_and_police
from ucity.core.errors import UcityError


async def attempt(ops: Ops, name: str, method: str = "POST", body: Any = None, role: str = "operator",
                  **path: str) -> Any:
    try:
        return await ops.call(name, method, "/", body, role=role, **path)
    except UcityError as exc:
        return exc


async def trail(ops: Ops, event_id: str, role: str = "operator") -> list[dict[str, Any]]:
    return list((await ops.call("get_event", role=role, eventId=event_id)).body["history"])


# -- F4 ---------------------------------------------------------------------------------------------------
async def test_occurred_at_needs_an_offset_and_a_sensible_time(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:  # the clock is 2026-03-02T00:00Z (09:00 KST)
        for naive in ("2026-03-01T10:00:00", "2026-03-01 10:00"):
            refused = await attempt(ops, "create_event", body=event_body("DISASTER", "flood", occurredAt=naive))
            assert refused.status == 400
            assert "UTC 오프셋" in refused.detail and "needs a UTC offset" in refused.detail
        korea = await ops.call("create_event", "POST", "/", event_body("DISASTER", "flood",
                                                                      occurredAt="2026-03-01T10:00:00+09:00"))
        assert korea.status == 201 and korea.body["occurredAt"] == "2026-03-01T01:00:00.000000Z"
        old = await attempt(ops, "create_event", body=event_body("DISASTER", "flood",
                                                                 occurredAt="1990-01-01T00:00:00Z"))
        assert old.status == 400 and old.extra["reason"] == "occurred-too-old" and "30일" in old.detail
        ahead = await attempt(ops, "create_event", body=event_body("DISASTER", "flood",
                                                                   occurredAt="2026-03-02T00:06:00Z"))
        assert ahead.status == 400 and ahead.extra["reason"] == "occurred-in-future"
        month = await ops.call("create_event", "POST", "/", event_body("DISASTER", "flood",
                                                                      occurredAt="2026-02-01T00:00:00Z"))
        assert month.status == 201  # 29 days old: inside the default 30
        # the events list's time bounds too
        try:
            await ops.call("list_events", params={"from": "2026-03-01T09:00:00"})
            raise AssertionError("a naive bound was taken")
        except UcityError as exc:
            assert exc.status == 400 and "UTC 오프셋" in exc.detail
        listed = await ops.call("list_events", params={"from": "2026-03-02T09:00:00+09:00"})
        assert listed.body["total"] == 2  # the two accepted above, reported at 09:00 KST


async def test_the_bounds_are_settings(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, event_max_age_days=1, event_max_ahead_minutes=0) as ops:
        old = await attempt(ops, "create_event", body=event_body("DISASTER", "flood",
                                                                 occurredAt="2026-02-28T23:00:00Z"))
        assert old.status == 400 and old.extra["reason"] == "occurred-too-old"
        ahead = await attempt(ops, "create_event", body=event_body("DISASTER", "flood",
                                                                   occurredAt="2026-03-02T00:00:01Z"))
        assert ahead.status == 400 and ahead.extra["reason"] == "occurred-in-future"


# -- F7 ---------------------------------------------------------------------------------------------------
async def test_a_repeated_status_is_idempotent_and_a_backwards_move_says_who(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        event_id = (await ops.call("create_event", "POST", "/", event_body("DISASTER", "flood"))).body["id"]
        first = await ops.call("event_status", "POST", "/", {"status": "acknowledged"}, eventId=event_id)
        assert first.status == 200
        await ops.advance(30)
        second = await ops.call("event_status", "POST", "/", {"status": "acknowledged"}, role="admin", eventId=event_id)
        assert second.status == 200 and second.body["status"] == "acknowledged"
        assert second.body["updatedAt"] == first.body["updatedAt"]  # nothing written
        lines = [line for line in await trail(ops, event_id) if line["action"] == "status"]
        assert [(line["actor"], line["to"]) for line in lines] == [("operator:op-kim", "acknowledged")]
        await ops.call("event_status", "POST", "/", {"status": "dispatched"}, eventId=event_id)
        back = await attempt(ops, "event_status", body={"status": "acknowledged"}, role="admin", eventId=event_id)
        assert back.status == 409 and back.type_uri == "urn:ucity:errors:InvalidEventTransition"
        assert "operator:op-kim" in back.detail and "2026-03-02 09:00:30 KST" in back.detail
        assert back.extra["statusSetBy"] == "operator:op-kim" and back.extra["currentStatus"] == "dispatched"
        closed = await ops.call("event_status", "POST", "/", {"status": "closed"}, eventId=event_id)
        again = await ops.call("event_status", "POST", "/", {"status": "closed"}, role="admin", eventId=event_id)
        assert again.status == 200 and again.body["updatedAt"] == closed.body["updatedAt"]
        late = await attempt(ops, "event_status", body={"status": "cancelled"}, eventId=event_id)
        assert late.status == 409 and "already closed" in late.detail and "operator:op-kim" in late.detail


# -- F6 ---------------------------------------------------------------------------------------------------
async def shared_with_police(ops: Ops) -> str:
    event_id = str((await ops.call("create_event", "POST", "/", event_body("112_DISPATCH", "robbery"))).body["id"])
    linked = await ops.call("request_linkage", "POST", "/", {"agency": "police-112"}, eventId=event_id)
    assert linked.status == 201
    return event_id


async def test_an_agency_reports_back_on_a_shared_event(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(cameras=False, **fire_and_police(receiver)) as ops:
        event_id = await shared_with_police(ops)
        made = await ops.call("agency_report", "POST", "/", {"status": "dispatched", "note": "순찰차 2대 010-1234-5678"},
                              role="police", eventId=event_id)
        assert made.status == 201 and made.body["status"] == "received"  # the centre's status is its own
        assert made.body["agencyStatus"]["police-112"]["status"] == "dispatched"
        again = await ops.call("agency_report", "POST", "/", {"status": "dispatched"}, role="police", eventId=event_id)
        assert again.status == 200 and len(again.body["agencyReports"]) == 1
        await ops.advance(60)
        arrived = await ops.call("agency_report", "POST", "/", {"status": "arrived"}, role="police", eventId=event_id)
        assert arrived.status == 201
        back = await attempt(ops, "agency_report", body={"status": "dispatched"}, role="police", eventId=event_id)
        assert back.status == 409 and back.type_uri == "urn:ucity:errors:InvalidAgencyReport"
        assert "2026-03-02 09:01:00 KST" in back.detail
        # the operators see it: the event, its list, its trail (audited with the agency, the note's length only)
        seen = (await ops.call("get_event", eventId=event_id)).body
        assert [r["status"] for r in seen["agencyReports"]] == ["dispatched", "arrived"]
        assert seen["agencyReports"][0]["note"] == "순찰차 2대 010-1234-5678"
        listed = (await ops.call("list_events")).body["events"][0]
        assert listed["agencyStatus"]["police-112"]["status"] == "arrived"
        assert listed["agencyReports"][0]["note"] == "순찰차 2대 010-****-5678"
        lines = [line for line in seen["history"] if line["action"] == "agency-report"]
        assert [(line["agency"], line["status"], line["actor"]) for line in lines] == [
            ("police-112", "dispatched", "agency:police-terminal"), ("police-112", "arrived", "agency:police-terminal")]
        assert "note" not in lines[0] and lines[0]["noteChars"] == len("순찰차 2대 010-1234-5678")
        assert lines[0]["noteMasked"] is True
        assert [line["status"] for line in await trail(ops, event_id, "police") if line["action"] == "agency-report"] \
            == ["dispatched", "arrived"]
        # not shared with the fire room: 404; an operator moves the status instead: 403; a bad status: 400
        other = await attempt(ops, "agency_report", body={"status": "arrived"}, role="fire", eventId=event_id)
        assert other.status == 404
        operator = await attempt(ops, "agency_report", body={"status": "arrived"}, eventId=event_id)
        assert operator.status == 403 and operator.extra["reason"] == "agency-only"
        bad = await attempt(ops, "agency_report", body={"status": "closed"}, role="police", eventId=event_id)
        assert bad.status == 400
        await ops.call("event_status", "POST", "/", {"status": "cancelled"}, eventId=event_id)
        ended = await attempt(ops, "agency_report", body={"status": "completed"}, role="police", eventId=event_id)
        assert ended.status == 409


async def test_an_agency_sees_only_its_own_reports(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(cameras=False, **fire_and_police(receiver)) as ops:
        event_id = await shared_with_police(ops)
        await ops.call("request_linkage", "POST", "/", {"agency": "fire-119", "service": "119_DISPATCH"},
                       eventId=event_id)
        await ops.call("agency_report", "POST", "/", {"status": "on-scene"}, role="police", eventId=event_id)
        await ops.call("agency_report", "POST", "/", {"status": "acknowledged"}, role="fire", eventId=event_id)
        fire = (await ops.call("get_event", role="fire", eventId=event_id)).body
        assert [r["agency"] for r in fire["agencyReports"]] == ["fire-119"] and list(fire["agencyStatus"]) == ["fire-119"]
        assert {line["agency"] for line in fire["history"] if line["action"] == "agency-report"} == {"fire-119"}
        operator = (await ops.call("get_event", eventId=event_id)).body
        assert operator["agencyStatus"].keys() == {"police-112", "fire-119"}


async def test_the_agency_is_told_of_dispatched_once(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(cameras=False, **fire_and_police(receiver)) as ops:
        event_id = await shared_with_police(ops)
        for role in ("operator", "admin"):  # two operators, or a retry
            assert (await ops.call("event_status", "POST", "/", {"status": "dispatched"}, role=role,
                                   eventId=event_id)).status == 200
        await ops.settle()
        notices = [r.json for r in receiver.on("/112") if r.json["event"] == "event-dispatched"]
        assert len(notices) == 1
        assert notices[0]["package"]["event"]["id"] == event_id and notices[0]["package"]["event"]["status"] == \
            "dispatched"
        assert "KST" in notices[0]["text"]["ko"] and notices[0]["subject"]["ko"].endswith("강도: 출동")
        assert receiver.on("/119") == []  # not shared with the fire room: told nothing


# -- F9 ---------------------------------------------------------------------------------------------------
async def test_a_direct_share_is_labelled_by_the_event_and_its_type_name(make_ops: MakeOps,
                                                                          receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/", event_body("VULNERABLE", "dementia_missing"))
        assert event.body["typeName"] == {"ko": "치매 노인 실종", "en": "Missing person with dementia"}
        cameras = await ops.call("event_cameras", eventId=event.body["id"])
        await ops.call("create_grant", "POST", "/", {"agency": "fire-119", "event": event.body["id"],
                                                     "cameras": [cameras.body["cameras"][0]["id"]]})
        (package,) = [r.json for r in receiver.on("/119") if r.json["event"] == "linkage"]
        assert package["subject"]["ko"].startswith("[사회적 약자 지원] 치매 노인 실종")
        assert package["text"]["en"].startswith("Support for vulnerable people: Missing person with dementia")
        assert "119" not in package["subject"]["ko"] and "dementia_missing" not in package["text"]["ko"]


async def test_a_package_without_cameras_says_so(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(cameras=False, **fire_and_police(receiver)) as ops:
        nowhere = event_body("119_DISPATCH", "fire")
        del nowhere["location"]
        await ops.call("create_event", "POST", "/", nowhere)
        far = await ops.call("create_event", "POST", "/", event_body("119_DISPATCH", "fire"))  # no camera loaded
        packages = [r.json for r in receiver.on("/119") if r.json["event"] == "linkage"]
        assert [p["package"]["noCameras"]["en"] for p in packages] == ["no location: no CCTV searched",
                                                                         "no CCTV nearby"]
        assert packages[1]["text"]["ko"].endswith("주변 CCTV 없음.") and "no CCTV nearby" in packages[1]["text"]["en"]
        link = far.body["linkages"][0]["id"]
        fetched = await ops.call("linkage_package", role="fire", eventId=far.body["id"], linkageId=link)
        assert fetched.body["noCameras"] == {"ko": "주변 CCTV 없음", "en": "no CCTV nearby"}


async def test_a_linkage_decision_conflict_has_its_own_type(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(cameras=False, **fire_and_police(receiver)) as ops:
        reported = await ops.call("create_event", "POST", "/", event_body("112_VIDEO", "noise"), role="police")
        held = next(link for link in reported.body["linkages"] if link["status"] == "held")
        path = {"eventId": reported.body["id"], "linkageId": held["id"]}
        assert (await ops.call("reject_linkage", "POST", "/", {"reason": "경미"}, **path)).status == 200
        twice = await attempt(ops, "approve_linkage", body={}, **path)
        assert twice.status == 409 and twice.type_uri == "urn:ucity:errors:InvalidLinkageDecision"
        assert twice.to_problem()["title"] == "Invalid linkage decision"


@pytest.fixture
def receiver() -> Any:
    with Receiver() as running:
        yield running
