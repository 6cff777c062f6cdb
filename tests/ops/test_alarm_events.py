"""PLAT-R9: alarms of the IoT services at `warning` or above become operations events, with their location,
address and nearest cameras; lower levels, faults and derived (parent) alarms do not."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.ops.conftest import MakeOps
from tests.ops.support import POINT, TENANT, Ops
from ucity.core.bus import Context
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import replace_op
from ucity.rules.events import RuleCleared, RuleMatched
from ucity.store.base import Mutation

SENSOR = "urn:ngsi-ld:Device:guro-tilt-17"
FACILITY = "urn:ngsi-ld:Building:guro-footbridge-3"
LOCATION = {"type": "Point", "coordinates": list(POINT)}


def matched(level: str, rule: str = "tilt-ladder", entity: str = SENSOR, **extra: Any) -> RuleMatched:
    extra.setdefault("entity_types", ("Device",))
    return RuleMatched(Context(), TENANT, rule, entity, level, category="structural", location=LOCATION,
                       description={"ko": "기울기 경계", "en": "Tilt warning"}, **extra)


async def publish(ops: Ops, *events: Any) -> None:
    for event in events:
        await ops.ucity.platform.bus.publish(event)
    await ops.settle()


async def iot_events(ops: Ops) -> list[dict[str, Any]]:
    resp = await ops.call("list_events", params={"service": "IOT"})
    events: list[dict[str, Any]] = resp.body["events"]
    return events


async def add_sensor_with_address(ops: Ops) -> None:
    entity = {"id": SENSOR, "type": "Device", "location": {"type": "GeoProperty", "value": LOCATION},
              "address": {"type": "Property", "value": {"addressLocality": "구로구", "district": "구로동",
                                                        "streetAddress": "디지털로 300"}}}
    doc = normalize_entity(entity, core_context())
    await ops.ucity.store.mutate(TENANT, [Mutation(SENSOR, replace_op(doc, True))], Context())


async def test_a_warning_alarm_becomes_an_event(ops: Ops) -> None:
    await add_sensor_with_address(ops)
    await publish(ops, matched("caution"))
    assert await iot_events(ops) == []  # below warning: an alarm, not an event
    await publish(ops, matched("warning"))
    [event] = await iot_events(ops)
    alarm = ops.ucity.alarms.active_alarm(TENANT, SENSOR, "tilt-ladder")
    assert alarm is not None
    assert (event["service"], event["typeCode"], event["level"], event["status"]) == ("IOT", "tilt_ladder", "warning",
                                                                                      "received")
    assert event["source"] == {"system": "ucity-alarms", "ref": alarm.id} and event["alarm"] == alarm.id
    assert event["location"] == LOCATION and event["address"] == "구로구 구로동 디지털로 300"
    assert event["details"].startswith("기울기 경계 / Tilt warning") and event["reportedBy"] == "system"
    cameras = await ops.call("event_cameras", eventId=event["id"])
    assert len(cameras.body["cameras"]) == 5  # the operator sees the alarm with its nearby CCTV (Guro model)
    doc = await ops.ucity.store.get_entity(TENANT, event["entityId"])
    assert doc is not None
    ref = doc["attrs"][core_context().expand_term("refAlert")][0]["object"]
    assert ref == f"urn:ngsi-ld:Alert:{alarm.id}"

    # escalation raises the same event's level; a repeat changes nothing
    await publish(ops, matched("serious"), matched("serious"))
    [event] = await iot_events(ops)
    assert event["level"] == "serious"
    trail = [(h["action"], h.get("previous"), h.get("level")) for h in
             (await ops.call("get_event", eventId=event["id"])).body["history"]]
    assert trail == [("created", None, "warning"), ("level", "warning", "serious")]


async def test_faults_and_derived_alarms_make_no_events(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        await publish(ops, RuleMatched(Context(), TENANT, "battery", SENSOR, "warning", kind="fault",
                                       entity_types=("Device",)))
        assert await iot_events(ops) == []
        # a sensor alarm with a parent: the parent's derived alarm does not make a second event
        await publish(ops, matched("serious", parent_id=FACILITY))
        events = await iot_events(ops)
        sensor_alarm = ops.ucity.alarms.active_alarm(TENANT, SENSOR, "tilt-ladder")
        assert sensor_alarm is not None and [e["source"]["ref"] for e in events] == [sensor_alarm.id]
        assert ops.ucity.alarms.active_alarm(TENANT, FACILITY, "derived:safety") is not None


async def test_the_threshold_level_is_configurable(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, alarm_event_min_level="serious") as ops:
        await publish(ops, matched("warning"))
        assert await iot_events(ops) == []
        await publish(ops, matched("serious"))
        assert [e["level"] for e in await iot_events(ops)] == ["serious"]


async def test_making_the_event_does_not_hold_up_the_alarm(make_ops: MakeOps) -> None:
    """The event (several commits, nearest cameras, linkages) is made beside the alarm's own work: the alarm's
    next change reaches the stream while the event of the previous one is still being made."""
    async with make_ops(cameras=False) as ops:
        center, alarms = ops.center, ops.ucity.alarms
        create_event, gate, started = center.create_event, asyncio.Event(), asyncio.Event()

        async def held_create_event(*args: Any, **kwargs: Any) -> Any:
            started.set()
            await gate.wait()
            return await create_event(*args, **kwargs)

        center.create_event = held_create_event
        publish_sse, cleared = alarms.sse.publish, asyncio.Event()

        def record(tenant: str, name: str, data: dict[str, Any]) -> Any:
            if name == "cleared":
                cleared.set()
            return publish_sse(tenant, name, data)

        alarms.sse.publish = record
        bus = ops.ucity.platform.bus
        try:
            publishing = asyncio.ensure_future(bus.publish(matched("warning")))
            await asyncio.wait_for(started.wait(), 10)
            await bus.publish(RuleCleared(Context(), TENANT, "tilt-ladder", SENSOR))
            await asyncio.wait_for(cleared.wait(), 10)  # while the raise's event is still being made
            assert [e.event for e in alarms.sse.backlog(TENANT, "0")] == ["alarm.raised", "alarm.cleared"]
        finally:
            gate.set()
        await publishing
        await ops.settle()
        [event] = await iot_events(ops)
        assert event["level"] == "warning"


async def test_a_reactivated_alarm_at_its_events_level_changes_nothing_and_reads_it_once(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        await publish(ops, matched("warning"), RuleCleared(Context(), TENANT, "tilt-ladder", SENSOR))
        loads: list[str] = []
        load = ops.center.events.load

        async def counted(tenant: str, event_id: str) -> Any:
            loads.append(event_id)
            return await load(tenant, event_id)

        ops.center.events.load = counted  # type: ignore[method-assign]
        await publish(ops, matched("warning"))  # re-activated within the dedupe window, at the same level
        alarm = ops.ucity.alarms.active_alarm(TENANT, SENSOR, "tilt-ladder")
        assert alarm is not None and [h["action"] for h in await ops.ucity.store.alarm_history(TENANT, alarm.id)] == [
            "raised", "cleared", "reactivated"]
        [event] = await iot_events(ops)
        assert loads == []  # found by its source, nothing to change: not read a second time
        await publish(ops, matched("serious"))  # a higher level still changes the event, under its lock
        [event] = await iot_events(ops)
        assert event["level"] == "serious" and loads == [event["id"]]
        trail = [h["action"] for h in (await ops.call("get_event", eventId=event["id"])).body["history"]]
        assert trail == ["created", "level"]


async def test_a_raised_alarm_makes_its_event_without_looking_for_one(make_ops: MakeOps) -> None:
    """A raised alarm is new: no event can name it yet, so its event is made without a search by source; an
    escalation looks for the event and changes it."""
    async with make_ops(cameras=False) as ops:
        searches: list[str] = []
        by_source = ops.center.events.by_source

        async def counted(tenant: str, system: str, ref: str) -> Any:
            searches.append(ref)
            return await by_source(tenant, system, ref)

        ops.center.events.by_source = counted  # type: ignore[method-assign]
        await publish(ops, matched("warning"))
        alarm = ops.ucity.alarms.active_alarm(TENANT, SENSOR, "tilt-ladder")
        assert alarm is not None
        [event] = await iot_events(ops)
        assert event["alarm"] == alarm.id and searches == []
        await publish(ops, matched("serious"))
        [event] = await iot_events(ops)
        assert event["level"] == "serious" and searches == [alarm.id]
