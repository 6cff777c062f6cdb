"""RuleMatched / RuleCleared / DeviceStatusChanged on a real platform (SQLite, fake clock):
one alarm per (tenant, entity, rule), escalation, dedupe window, kinds, parents, restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.alarms.support import SENSOR, T0, TENANT, City, alarm_settings, cleared, matched
from ucity.alarms import model as m
from ucity.core.http import Req

FACILITY = "urn:ngsi-ld:Building:bridge-7"
DISTRICT = "urn:ngsi-ld:District:guro"
SENSOR_2 = "urn:ngsi-ld:Device:crack-2"
POINT = {"type": "Point", "coordinates": [126.887, 37.495]}


async def test_repeats_update_one_alarm_and_higher_levels_escalate_it(city: City) -> None:
    await city.publish(matched(level="caution", location=POINT, evidence={"value": 0.4}))
    alarm = city.active()
    city.clock.advance(30)
    await city.publish(matched(level="caution", evidence={"value": 0.45}))
    await city.publish(matched(level="serious", evidence={"value": 1.2}))
    await city.publish(matched(level="warning", evidence={"value": 0.9}))  # lower while active: kept at serious
    alarms = await city.all_alarms()
    assert len(alarms) == 1
    (row,) = alarms
    assert (row["id"], row["level"], row["count"], row["status"]) == (alarm.id, "serious", 4, m.ACTIVE_UNACK)
    assert (row["raised_at"], row["last_seen"]) == ("2026-03-02T00:00:00.000000Z", "2026-03-02T00:00:30.000000Z")
    # The peak's evidence stays; the lower match is beside it (QA5 F10).
    assert row["evidence"] == {"value": 1.2, "latest": {"level": "warning", "value": 0.9}}
    assert row["location"] == POINT and row["entity_type"] == "Device"
    assert [(h["action"], h.get("previous"), h.get("level")) for h in await city.history(alarm.id)] == [
        ("raised", None, "caution"), ("escalated", "caution", "serious")]


async def test_lower_level_lowers_only_when_configured(tmp_path: Path) -> None:
    async with City.running(alarm_settings(tmp_path, downgrade_while_active=True), T0) as city:
        await city.publish(matched(level="serious"), matched(level="caution"))
        alarm = city.active()
        assert alarm.level == "caution"
        assert [h["action"] for h in await city.history(alarm.id)] == ["raised", "deescalated"]


async def test_rule_cleared_clears_and_the_dedupe_window_reopens(city: City) -> None:
    await city.publish(matched(level="warning"))
    first = city.active()
    await city.publish(cleared(evidence={"value": 0.1}))
    assert city.active() is None
    assert (first.status, first.cleared_by, first.cleared_at) == (m.CLEARED_UNACK, "system", "2026-03-02T00:00:00.000000Z")
    await city.publish(cleared())  # nothing active: nothing happens

    await city.advance(599)  # within the 10 min window: the same alarm is active again
    await city.publish(matched(level="warning"))
    assert city.active() is first and first.status == m.ACTIVE_UNACK and first.count == 2
    await city.publish(cleared())
    await city.advance(601)  # past the window: a new alarm
    await city.publish(matched(level="interest"))
    second = city.active()
    assert second.id != first.id and second.level == "interest"
    assert [h["action"] for h in await city.history(first.id)] == ["raised", "cleared", "reactivated", "cleared"]
    statuses = {a["id"]: a["status"] for a in await city.all_alarms()}
    assert statuses == {first.id: m.CLEARED_UNACK, second.id: m.ACTIVE_UNACK}


async def test_alarms_are_per_tenant_entity_and_rule(city: City) -> None:
    await city.publish(matched(), matched(rule="crack"), matched(entity=SENSOR_2), matched(tenant="urn:ngsi-ld:tenant:other"))
    assert len(await city.all_alarms()) == 3
    assert city.active(tenant="urn:ngsi-ld:tenant:other") is not None
    await city.publish(matched(level="nonsense"))  # an unknown level is ignored
    assert city.active().count == 1


async def test_faults_never_mix_with_safety_levels(city: City) -> None:
    await city.publish(matched(rule="battery", kind="fault", level="serious"))
    fault = city.active(rule="battery")
    assert (fault.kind, fault.level, fault.severity) == ("fault", None, "informational")
    await city.publish(matched(rule="battery", kind="safety", level="serious"))  # same rule, other kind: ignored
    assert (fault.kind, fault.level, fault.count) == ("fault", None, 1)
    assert [a["kind"] for a in await city.all_alarms(kind="fault")] == ["fault"]
    assert await city.all_alarms(level="serious") == []


async def test_a_device_going_offline_is_a_fault_alarm(city: City) -> None:
    headers = {"content-type": "application/json", "fiware-service": TENANT}
    http = city.ucity.ingest.http

    async def call(handler: Any, path: str, body: Any, **params: str) -> None:
        req = Req("POST", path, params={k: [v] for k, v in params.items()}, headers=headers, body=orjson.dumps(body))
        resp = await handler(req)
        assert resp.status in (200, 201), resp.body

    await call(http.create_groups, "/iot/services", {"services": [{"apikey": "k", "entity_type": "Device",
                                                                    "attributes": [{"object_id": "t", "name": "tilt"}]}]})
    await call(http.create_devices, "/iot/devices", {"devices": [{"device_id": "tilt-1", "entity_name": SENSOR,
                                                                  "expected_interval_s": 60}]})
    await call(http.measure, "/iot/json", {"t": 0.1}, k="k", i="tilt-1")
    await city.settle()
    await city.advance(180)  # 3 silent intervals
    await city.ucity.ingest.monitor.drain()
    await city.settle()
    fault = city.active(rule="device-offline")
    assert fault is not None and (fault.kind, fault.level, fault.entity_id) == ("fault", None, SENSOR)
    assert fault.evidence["device_id"] == "tilt-1" and "tilt-1" in fault.description["en"]
    await call(http.measure, "/iot/json", {"t": 0.1}, k="k", i="tilt-1")
    await city.ucity.ingest.monitor.drain()
    await city.settle()
    assert city.active(rule="device-offline") is None and fault.status == m.CLEARED_UNACK


async def test_parent_from_the_event_gets_a_derived_alarm_that_follows_its_children(city: City) -> None:
    await city.publish(matched(level="caution", parent_id=FACILITY), matched(entity=SENSOR_2, rule="crack", level="serious",
                                                                           parent_id=FACILITY))
    derived = city.active(FACILITY, "derived:safety")
    first, second = city.active(), city.active(SENSOR_2, "crack")
    assert (derived.level, derived.children, derived.derived, derived.depth) == ("serious", [first.id, second.id], True, 1)
    await city.publish(cleared(SENSOR_2, "crack"))
    assert (derived.level, derived.children, derived.status) == ("caution", [first.id], m.ACTIVE_UNACK)
    await city.publish(cleared())
    assert city.active(FACILITY, "derived:safety") is None and derived.status == m.CLEARED_UNACK
    assert [h["action"] for h in await city.history(derived.id)] == ["raised", "deescalated", "cleared"]
    assert [a["entity_id"] for a in await city.all_alarms(derived="true")] == [FACILITY]


async def test_parent_from_relationships_propagates_up_the_asset_tree(city: City) -> None:
    for entity, parent, kind in ((SENSOR, FACILITY, "refParent"), (FACILITY, DISTRICT, "isPartOf")):
        body = {"id": entity, "type": entity.split(":")[2], kind: {"type": "Relationship", "object": parent},
                "location": POINT}
        req = Req("POST", "/ngsi-ld/v1/entities", headers={"content-type": "application/json"}, body=orjson.dumps(body))
        assert (await city.ucity.ngsild.create_entity(req)).status == 201
    await city.publish(matched(level="warning", entity_types=()))
    alarm = city.active()
    assert (alarm.parent_id, alarm.entity_type, alarm.location) == (FACILITY, "Device", POINT)
    facility, district = city.active(FACILITY, "derived:safety"), city.active(DISTRICT, "derived:safety")
    assert (facility.level, facility.parent_id, facility.entity_type) == ("warning", DISTRICT, "Building")
    assert (district.level, district.children, district.depth) == ("warning", [facility.id], 2)
    await city.publish(matched(level="serious"))
    assert (facility.level, district.level) == ("serious", "serious")
    await city.publish(cleared())
    assert city.active(DISTRICT, "derived:safety") is None


async def test_a_restart_neither_loses_nor_duplicates_the_alarm(tmp_path: Path) -> None:
    settings = alarm_settings(tmp_path)
    async with City.running(settings, T0) as city:
        await city.publish(matched(level="warning"))
        alarm_id = city.active().id
    async with City.running(settings, T0) as city:
        assert city.active().id == alarm_id
        await city.publish(matched(level="serious"))
        rows = await city.all_alarms()
        assert [(r["id"], r["level"], r["count"]) for r in rows] == [(alarm_id, "serious", 2)]
        assert [h["seq"] for h in await city.history(alarm_id)] == [1, 2]
