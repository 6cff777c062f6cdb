"""Events (PLAT-R1, R2): the status machine with its audit trail and actors, the NGSI-LD entity without
personal data, the pseudonymised subject, attachments, listing and what each agency sees."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ops.conftest import MakeOps
from tests.ops.support import POINT, TENANT, Ops, agency
from ucity.core.errors import UcityError
from ucity.ngsild.context import core_context
from ucity.ops.events import (
    ACKNOWLEDGED,
    CANCELLED,
    CLOSED,
    DISPATCHED,
    RECEIVED,
    SHARING,
    InvalidEventTransition,
    check_transition,
)

AGENCIES = {"agencies": [agency("police-112", "police", ["112_VIDEO", "112_DISPATCH", "VULNERABLE"]),
                         agency("fire-119", "fire", ["119_DISPATCH"])]}


def report(**extra: Any) -> dict[str, Any]:
    return {"service": "VULNERABLE", "typeCode": "missing_person", "level": "serious",
            "occurredAt": "2026-03-01T23:40:00+09:00", "location": {"type": "Point", "coordinates": list(POINT)},
            "address": "서울특별시 구로구 구로동 1", "details": "파란 점퍼, 지팡이", "sourceSystem": "safe-return-app",
            "sourceRef": "SR-2026-0042",
            "subject": {"name": "김영희", "phone": "010-2345-6789", "category": "missingPerson", "ageBand": "80s"},
            "reporter": {"name": "박보호", "phone": "010-9876-5432", "category": "guardian"}, **extra}


async def expect_error(ops: Ops, status: int, *args: Any, **kwargs: Any) -> UcityError:
    with pytest.raises(UcityError) as caught:
        await ops.call(*args, **kwargs)
    assert caught.value.status == status, caught.value.detail
    return caught.value


@pytest.mark.parametrize(("current", "target", "allowed"), [
    (RECEIVED, ACKNOWLEDGED, True), (RECEIVED, SHARING, True), (RECEIVED, CLOSED, False),
    (RECEIVED, CANCELLED, True), (ACKNOWLEDGED, RECEIVED, False), (ACKNOWLEDGED, DISPATCHED, True),
    (SHARING, ACKNOWLEDGED, False), (SHARING, CLOSED, True), (DISPATCHED, CLOSED, True),
    (DISPATCHED, CANCELLED, True), (CLOSED, CANCELLED, False), (CANCELLED, RECEIVED, False),
    (DISPATCHED, DISPATCHED, False),
])
def test_status_machine(current: str, target: str, allowed: bool) -> None:
    if allowed:
        check_transition(current, target)
    else:
        with pytest.raises(InvalidEventTransition):
            check_transition(current, target)


async def test_event_lifecycle_with_its_audit_trail(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", report())
        assert created.status == 201
        event = created.body
        event_id = event["id"]
        assert (event["status"], event["level"], event["service"]) == ("received", "serious", "VULNERABLE")
        assert event["occurredAt"] == "2026-03-01T14:40:00.000000Z" and event["reportedAt"] == "2026-03-02T00:00:00.000000Z"
        assert event["serviceName"] == {"ko": "사회적 약자 지원", "en": "Support for vulnerable people"}
        assert event["statusName"] == {"ko": "접수", "en": "Received"}
        assert event["source"] == {"system": "safe-return-app", "ref": "SR-2026-0042"}
        await ops.advance(60)
        await ops.call("event_status", "POST", "/", {"status": "acknowledged", "note": "확인"}, eventId=event_id)
        await expect_error(ops, 409, "event_status", "POST", "/", {"status": "received"}, eventId=event_id)
        await ops.advance(60)
        await ops.call("event_status", "POST", "/", {"status": "dispatched"}, eventId=event_id, role="admin")
        added = await ops.call("add_attachment", "POST", "/", {"kind": "image", "name": "photo.jpg",
                                                               "mediaType": "image/jpeg", "sizeBytes": 48213},
                               eventId=event_id)
        assert added.status == 201 and added.body["addedBy"] == "operator:op-kim"
        closed = await ops.call("event_status", "POST", "/", {"status": "closed"}, eventId=event_id)
        assert closed.body["status"] == "closed"
        await expect_error(ops, 409, "event_status", "POST", "/", {"status": "cancelled"}, eventId=event_id)
        await expect_error(ops, 409, "add_attachment", "POST", "/", {"name": "late.jpg"}, eventId=event_id)

        full = (await ops.call("get_event", eventId=event_id)).body
        trail = [(h["action"], h.get("from"), h.get("to"), h["actor"], h["at"]) for h in full["history"]]
        assert trail == [
            ("created", None, None, "operator:op-kim", "2026-03-02T00:00:00.000000Z"),
            ("status", "received", "acknowledged", "operator:op-kim", "2026-03-02T00:01:00.000000Z"),
            ("status", "acknowledged", "dispatched", "admin:admin", "2026-03-02T00:02:00.000000Z"),
            ("attachment-added", None, None, "operator:op-kim", "2026-03-02T00:02:00.000000Z"),
            ("status", "dispatched", "closed", "operator:op-kim", "2026-03-02T00:02:00.000000Z"),
        ]
        # the note stays with the event; its audit line only says how long it was (QA10 F3)
        assert (full["history"][1]["noteChars"], full["history"][1]["noteMasked"]) == (2, False)
        assert "note" not in full["history"][1]
        assert [(n["text"], n["status"], n["by"]) for n in full["notes"]] == [("확인", "acknowledged", "operator:op-kim")]
        assert full["attachments"][0]["name"] == "photo.jpg"


async def test_the_ngsi_ld_entity_has_no_personal_data(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        event = (await ops.call("create_event", "POST", "/api/v1/events", report())).body
        doc = await ops.ucity.store.get_entity(TENANT, event["entityId"])
        assert doc is not None and doc["type"] == ["https://uri.etsi.org/ngsi-ld/default-context/CityEvent"]
        text = str(doc)
        for personal in ("김영희", "010-2345-6789", "박보호", "010-9876-5432", "파란 점퍼"):
            assert personal not in text
        values = {k.rsplit("/", 1)[-1]: v[0] for k, v in doc["attrs"].items()}
        # no pseudonym, and a vulnerable person's event is only in a coarse cell, without address (QA7 F3)
        assert "subjectRef" not in values and "address" not in values and event["subject"]["ref"] not in text
        assert values["location"]["value"] == {"type": "Point", "coordinates": [126.8875, 37.4975]}
        assert values["severity"]["value"] == "critical" and values["status"]["value"] == "received"
        assert values["description"]["languageMap"] == {"ko": "사회적 약자 지원: 실종", "en": "Support for vulnerable people: "
                                                                                          "Missing person"}
        await ops.call("event_status", "POST", "/", {"status": "acknowledged"}, eventId=event["id"])
        doc = await ops.ucity.store.get_entity(TENANT, event["entityId"])
        assert doc is not None
        assert doc["attrs"][core_context().expand_term("status")][0]["value"] == "acknowledged"


async def test_the_subject_pseudonym_links_one_persons_events(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        first = (await ops.call("create_event", "POST", "/api/v1/events", report())).body
        second = (await ops.call("create_event", "POST", "/api/v1/events", report(typeCode="geofence_exit",
                                                                                 sourceRef="SR-2026-0043"))).body
        other = (await ops.call("create_event", "POST", "/api/v1/events", report(
            subject={"name": "이철수", "phone": "010-1111-2222"}, sourceRef="SR-2026-0044"))).body
        assert first["subject"]["ref"] == second["subject"]["ref"] != other["subject"]["ref"]
        assert first["subject"]["ref"].startswith("psn-") and len(first["subject"]["ref"]) == 24


async def test_personal_data_is_masked_for_agencies(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        event = (await ops.call("create_event", "POST", "/api/v1/events", report(), role="police")).body
        seen_by_operator = (await ops.call("get_event", eventId=event["id"])).body["personal"]
        assert seen_by_operator["subject"] == {"name": "김영희", "phone": "010-2345-6789", "ageBand": "80s"}
        assert seen_by_operator["reporter"]["phone"] == "010-9876-5432"
        seen_by_police = (await ops.call("get_event", role="police", eventId=event["id"])).body
        assert seen_by_police["personal"]["subject"] == {"name": "김**", "phone": "010-****-6789", "ageBand": "80s",
                                                         "masked": True}
        assert seen_by_police["personal"]["reporter"] == {"name": "박**", "phone": "010-****-5432",
                                                          "category": "guardian", "masked": True}
        assert seen_by_police["reporterAgency"] == "police-112" and seen_by_police["source"]["system"] == "agency:police-112"


async def test_each_agency_sees_only_its_events(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        police_event = (await ops.call("create_event", "POST", "/api/v1/events", report(), role="police")).body
        operator_event = (await ops.call("create_event", "POST", "/api/v1/events", report(service="119_DISPATCH",
                                                                                          typeCode="fire"))).body
        listed = (await ops.call("list_events", role="police")).body
        assert [e["id"] for e in listed["events"]] == [police_event["id"]] and listed["total"] == 1
        assert (await ops.call("list_events", role="fire")).body["total"] == 0
        await expect_error(ops, 404, "get_event", role="fire", eventId=police_event["id"])
        everything = (await ops.call("list_events")).body
        assert everything["total"] == 2
        only_fire = (await ops.call("list_events", params={"service": "119_DISPATCH"})).body
        assert [e["id"] for e in only_fire["events"]] == [operator_event["id"]]
        # agencies do not move events along the status machine
        await expect_error(ops, 403, "event_status", "POST", "/", {"status": "acknowledged"}, role="police",
                           eventId=police_event["id"])


async def test_invalid_events_are_refused(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        for bad in ({"service": "911", "typeCode": "fire"}, {"service": "119_DISPATCH", "typeCode": "Fire!"},
                    {"service": "119_DISPATCH", "typeCode": "fire", "location": {"lon": 200, "lat": 37}},
                    {"service": "119_DISPATCH", "typeCode": "fire", "level": "red"},
                    {"service": "119_DISPATCH", "typeCode": "fire", "occurredAt": "2026-03-03T00:00:00Z"},
                    {"service": "119_DISPATCH", "typeCode": "fire", "unknown": 1}):
            await expect_error(ops, 400, "create_event", "POST", "/api/v1/events", bad)


async def test_an_event_without_location_has_no_nearest_cameras(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        event = (await ops.call("create_event", "POST", "/api/v1/events",
                                {"service": "DISASTER", "typeCode": "flood"})).body
        assert event["location"] is None and event["level"] == "warning"  # ops.default_level
        await expect_error(ops, 400, "event_cameras", eventId=event["id"])
