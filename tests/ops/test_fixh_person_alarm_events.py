"""FIX-H: operations events of alarms about a person, the names of rule-made event types, and typed texts in the
audit lines of linkages.

1. An event an alarm about a person's entity made (its type personal: `privacy.personal_entity_types` and those the
   domains declare) has the entity id masked in its `details` (`urn:ngsi-ld:CareDevice:k**-y*******-h***`) for
   everybody, and is sensitive (readers get no address and a coarse place); the alarm id stays, and an operator with
   `personal:read` follows it to the entity. With the token guard on (`server.require_auth`).
2. A rule-made type code is named with the rule's name (ko/en), for operators, agencies and readers.
3. A linkage's audit line keeps the length of a typed purpose or reason (`purposeChars`, `reasonChars`), never the
   text: the audit log is append-only, so a data subject's redaction could not reach it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import POINT, TENANT, TOKENS, Ops
from tests.ops.test_linkage import audit, event_body, fire_and_police, nearest_ids
from ucity.core.bus import Context
from ucity.core.http import Req
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import replace_op
from ucity.ops.events import TYPE_NAMES, mask_entity_id, type_name
from ucity.rules.events import RuleMatched
from ucity.store.base import Mutation

CARE = "urn:ngsi-ld:CareDevice:kim-younghee-home"
SENSOR = "urn:ngsi-ld:Device:guro-tilt-17"
LOCATION = {"type": "Point", "coordinates": list(POINT)}
RULE_NAME = {"ko": "돌봄 무활동", "en": "Care inactivity"}


@pytest.fixture
def guard_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("UCITY_SERVER__REQUIRE_AUTH", "true")
    yield


def matched(entity: str, entity_type: str, rule: str) -> RuleMatched:
    return RuleMatched(Context(), TENANT, rule, entity, "warning", category="care", location=LOCATION,
                       entity_types=(entity_type,), evidence={"ruleName": RULE_NAME},
                       description={"ko": "활동 없음", "en": "No activity"})


async def add_with_address(ops: Ops, entity_id: str, entity_type: str) -> None:
    entity = {"id": entity_id, "type": entity_type, "location": {"type": "GeoProperty", "value": LOCATION},
              "address": {"type": "Property", "value": {"addressLocality": "구로구", "district": "구로동",
                                                        "streetAddress": "디지털로 300"}}}
    await ops.ucity.store.mutate(TENANT, [Mutation(entity_id, replace_op(normalize_entity(entity, core_context()),
                                                                          True))], Context())


async def alarm_event(ops: Ops, entity: str, entity_type: str, rule: str) -> dict[str, Any]:
    await add_with_address(ops, entity, entity_type)
    await ops.ucity.platform.bus.publish(matched(entity, entity_type, rule))
    await ops.settle()
    events = (await ops.call("list_events", params={"service": "IOT"})).body["events"]
    (event,) = [e for e in events if e["typeCode"] == rule.replace("-", "_")]
    return dict(event)


async def get_alarm(ops: Ops, alarm_id: str, role: str) -> dict[str, Any]:
    req = Req("GET", f"/api/v1/alarms/{alarm_id}", headers={"authorization": f"Bearer {TOKENS[role]}"},
              path_params={"alarmId": alarm_id})
    resp = await ops.ucity.alarms_api.get_alarm(req)
    assert resp.status == 200
    body: dict[str, Any] = resp.body
    return body


async def city_event(ops: Ops, entity_id: str) -> dict[str, Any]:
    doc = await ops.ucity.store.get_entity(TENANT, entity_id)
    assert doc is not None
    ctx = core_context()
    return {ctx.compact_iri(k): v for k, v in doc["attrs"].items()}


def test_helpers_mask_ids_and_name_rule_types() -> None:
    assert mask_entity_id(CARE) == "urn:ngsi-ld:CareDevice:k**-y*******-h***"
    assert mask_entity_id("kim younghee") == "k** y*******"
    assert type_name("qa_care_inactive", RULE_NAME) == RULE_NAME
    assert type_name("qa_care_inactive", {"en": "Care inactivity"}) == {"ko": "Care inactivity", "en": "Care inactivity"}
    assert type_name("qa_care_inactive") == {"ko": "qa_care_inactive", "en": "qa_care_inactive"}
    assert type_name("theft", RULE_NAME) == TYPE_NAMES["theft"]  # ucity's own names first


async def test_an_alarm_about_a_person_makes_an_event_without_the_persons_id(
        make_ops: MakeOps, receiver: Receiver, guard_on: None) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        assert ops.ucity.platform.settings.auth_required  # the guard is on
        event = await alarm_event(ops, CARE, "CareDevice", "qa-care-inactive")
        alarm_id = event["alarm"]
        masked = "urn:ngsi-ld:CareDevice:k**-y*******-h***"
        assert event["details"] == f"활동 없음 / No activity (경보 alarm {alarm_id}, {masked})"
        assert event["typeName"] == RULE_NAME  # the rule's name, not `qa_care_inactive`

        # the operator's single (unmasked, audited) read: the id is not there either, the alarm id is
        shown = (await ops.call("get_event", eventId=event["id"])).body
        assert "younghee" not in json.dumps(shown, ensure_ascii=False) and alarm_id in shown["details"]
        # ... and the operator (personal:read) follows the alarm to the entity; an agency's token does not
        assert (await get_alarm(ops, alarm_id, "operator"))["entity_id"] == CARE
        assert "younghee" not in json.dumps(await get_alarm(ops, alarm_id, "police"), ensure_ascii=False)

        # an agency the operator shares footage with: its read and its package hold no id either
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event["id"], "cameras": (await nearest_ids(ops))[:1]})
        assert grant.status == 201
        police = (await ops.call("get_event", role="police", eventId=event["id"])).body
        assert "younghee" not in json.dumps(police, ensure_ascii=False) and police["typeName"] == RULE_NAME
        await ops.settle()
        for sent in receiver.on("/112"):
            assert "younghee" not in json.dumps(sent.json, ensure_ascii=False)

        # readers (`CityEvent`, data:read): a sensitive event, without the home's address and with a coarse place
        entity = await city_event(ops, shown["entityId"])
        assert "address" not in entity and "locationCellDeg" in entity
        assert entity["location"][0]["value"]["coordinates"] != list(POINT)
        assert entity["description"][0]["languageMap"]["en"] == "IoT service alarm: Care inactivity"


async def test_an_alarm_about_a_thing_keeps_its_id_and_place(make_ops: MakeOps, guard_on: None) -> None:
    async with make_ops(cameras=False) as ops:
        event = await alarm_event(ops, SENSOR, "Device", "tilt-ladder")
        assert event["details"].endswith(f"{SENSOR})") and event["address"] == "구로구 구로동 디지털로 300"
        entity = await city_event(ops, event["entityId"])
        assert "address" in entity and "locationCellDeg" not in entity


async def test_linkage_audit_lines_keep_the_length_of_typed_reasons(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(cameras=False, **fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/", event_body("112_VIDEO", "noise"), role="police")
        path = {"eventId": event.body["id"]}
        (held,) = event.body["linkages"]
        reason = "김영희 보호자 요청으로 취소 010-2222-3333"
        resp = await ops.call("reject_linkage", "POST", "/", {"reason": reason}, linkageId=held["id"], **path)
        assert resp.status == 200
        (line,) = await audit(ops, kind="linkage", action="rejected")
        assert (line["reasonChars"], line["reasonMasked"]) == (len(reason), True) and "reason" not in line
        assert "김영희" not in json.dumps(await audit(ops), ensure_ascii=False)
        # the reason stays on the linkage (retention and a data subject's redaction reach it there)
        assert (await ops.call("get_event", **path)).body["linkages"][0]["reason"] == reason
