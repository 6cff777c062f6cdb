"""A data subject's NGSI-LD entity (QA10 F4/F5 leftovers): the subject search with `entityId` reports where else the
person's entity is (its state and history, alarms, their Alerts, pending notifications, dead letters; ids and
counts, never values), and `POST /api/v1/privacy/subject-erase` deletes a personal entity with its whole history in
one audited call (`privacy:admin`). A real platform on the test's store backend (both backends).
"""

from __future__ import annotations

from typing import Any

from tests.alarms.support import matched
from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, Ops
from ucity.alarms.journal import ALARM
from ucity.alarms.notifiers.base import Notification
from ucity.core.bus import Context
from ucity.core.errors import UcityError
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import create_op
from ucity.store.base import AlarmQuery, Mutation

PERSON = "urn:ngsi-ld:Person:elder-7"
OTHER = "urn:ngsi-ld:Person:elder-8"
PHONE = "010-2222-3333"
PLACE = {"type": "Point", "coordinates": [126.8874, 37.4954]}


def person(entity_id: str) -> dict[str, Any]:
    return {"id": entity_id, "type": "Person", "telephone": {"type": "Property", "value": PHONE},
            "heartRate": {"type": "Property", "value": 71, "observedAt": "2026-03-01T00:00:00Z"}}


async def _city(ops: Ops) -> list[str]:
    """Two Persons with history, an alarm about each (their Alerts), a pending notification and a dead letter of the
    first one's alarm; the ids of that one's alarms."""
    ucity = ops.ucity
    docs = [normalize_entity(person(i), core_context()) for i in (PERSON, OTHER)]
    results = await ucity.store.mutate(TENANT, [Mutation(d["id"], create_op(d)) for d in docs], Context())
    assert not [r for r in results if isinstance(r, Exception)]
    for entity in (PERSON, OTHER):
        await ucity.platform.bus.publish(matched(entity, "serious", "geofence-exit", entity_types=("Person",),
                                                 location=PLACE))
    await ops.settle()
    alarms, _ = await ucity.store.query_alarms(TENANT, AlarmQuery(entity_ids=(PERSON,), limit=10))
    assert len(alarms) == 1
    dispatcher = ucity.alarms.dispatcher
    wire = {"id": alarms[0]["id"], "entity_id": PERSON, "tenant": TENANT}
    notification = Notification("urn:ucity:notification:pending-1", TENANT, "raised", "2026-03-02T00:00:00Z", wire,
                                {"ko": "경보", "en": "alarm"}, {"ko": PHONE, "en": PHONE})
    await dispatcher.journal.add([dispatcher.journal.entry(ALARM, "sms-1", PERSON, notification)])
    dead = Notification("urn:ucity:notification:dead-1", TENANT, "raised", "2026-03-02T00:00:00Z", wire,
                        {"ko": "경보", "en": "alarm"}, {"ko": PHONE, "en": PHONE})
    await dispatcher.dead_letter(dead, "sms-1", 3, "timeout")
    return [str(alarms[0]["id"])]


class Answer:
    """A handler's answer or its error, as a status and a body."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body


async def _call(ops: Ops, handler: str, path: str, body: dict[str, Any], role: str = "admin") -> Answer:
    try:
        resp = await ops.call(handler, "POST", path, body, role=role)
    except UcityError as exc:
        return Answer(exc.status, exc.to_problem())
    return Answer(resp.status, resp.body)


async def test_search_by_entity_id_reports_where_else_the_person_is(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        alarm_ids = await _city(ops)
        resp = await _call(ops, "subject_search", "/api/v1/privacy/subject-search", {"entityId": PERSON})
        assert resp.status == 200, resp.body
        where = resp.body["elsewhere"]
        assert where["entityId"] == PERSON and where["current"] is True and where["history"] is True
        assert where["types"] == ["Person"]
        assert where["alarms"] == {"count": 1, "ids": alarm_ids}
        assert where["alerts"] == {"count": 1, "ids": [f"urn:ngsi-ld:Alert:{alarm_ids[0]}"]}
        assert where["notifications"] == {"count": 1, "ids": ["urn:ucity:notification:pending-1"]}
        assert where["deadLetters"] == {"count": 1, "ids": ["urn:ucity:notification:dead-1"]}
        assert resp.body["scanned"] == 0 and resp.body["count"] == 0  # an entity id alone: no event scan
        assert PHONE not in str(resp.body)
        line = (await _audit(ops, "subject-search"))[-1]
        assert line["searchedFields"] == ["entityId"] and line["elsewhere"] == {
            "current": True, "history": True, "alarms": 1, "alerts": 1, "notifications": 1, "deadLetters": 1,
            "ngsildNotifications": 0}
        assert PERSON not in str(line) and PHONE not in str(line)
        # Another person's entity: only its own alarm, no notification.
        other = await _call(ops, "subject_search", "/api/v1/privacy/subject-search", {"entityId": OTHER})
        assert other.body["elsewhere"]["alarms"]["count"] == 1
        assert other.body["elsewhere"]["notifications"]["count"] == other.body["elsewhere"]["deadLetters"][
            "count"] == 0
        # Operators are refused (privacy:admin).
        refused = await _call(ops, "subject_search", "/api/v1/privacy/subject-search", {"entityId": PERSON},
                              role="operator")
        assert refused.status == 403


async def _audit(ops: Ops, action: str) -> list[dict[str, Any]]:
    resp = await ops.call("list_audit", "GET", "/api/v1/audit", role="admin",
                          params={"kind": "privacy", "limit": "100"})
    assert resp.status == 200
    return [line for line in resp.body["entries"] if line["action"] == action]


async def test_erase_deletes_a_person_and_its_history_in_one_audited_call(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        await _city(ops)
        store = ops.ucity.store
        assert await store.temporal_entity_exists(TENANT, PERSON)
        refused = await _call(ops, "subject_erase", "/api/v1/privacy/subject-erase",
                              {"entityId": PERSON, "reason": "본인 요청"}, role="operator")
        assert refused.status == 403
        resp = await _call(ops, "subject_erase", "/api/v1/privacy/subject-erase",
                           {"entityId": PERSON, "reason": "본인 삭제 요청 제123호"})
        assert resp.status == 200, resp.body
        assert resp.body["entityDeleted"] is True and resp.body["historyDeleted"] > 0
        assert await store.get_entity(TENANT, PERSON) is None
        assert not await store.temporal_entity_exists(TENANT, PERSON)
        assert await store.get_entity(TENANT, OTHER) is not None  # the other person stays
        left = resp.body["elsewhere"]
        assert left["current"] is False and left["history"] is False
        assert left["alarms"]["count"] == 1 and left["notifications"]["count"] == 1  # said, not touched
        lines = await _audit(ops, "erased")
        assert len(lines) == 1
        line = lines[0]
        assert line["entityId"] == PERSON and line["entityDeleted"] is True and line["types"] == ["Person"]
        assert line["reasonChars"] == len("본인 삭제 요청 제123호") and "제123호" not in str(line)
        assert line["left"]["alarms"] == 1 and PHONE not in str(line)
        # Again: nothing left of it (404); a non-personal entity is refused (400): the NGSI-LD API deletes those.
        again = await _call(ops, "subject_erase", "/api/v1/privacy/subject-erase",
                            {"entityId": PERSON, "reason": "재시도"})
        assert again.status == 404
        camera = (await store.entity_ids(TENANT, _camera_query()))[0]
        other_type = await _call(ops, "subject_erase", "/api/v1/privacy/subject-erase",
                                 {"entityId": camera, "reason": "잘못된 요청"})
        assert other_type.status == 400
        assert await store.get_entity(TENANT, camera) is not None
        invalid = await _call(ops, "subject_erase", "/api/v1/privacy/subject-erase",
                              {"entityId": "not an id", "reason": "x"})
        assert invalid.status == 400


def _camera_query() -> Any:
    from ucity.store.base import EntityQuery, TypeExpr

    return EntityQuery(types=TypeExpr(((core_context().expand_type("Camera"),),)), limit=1)
