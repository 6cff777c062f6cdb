"""The Alert entity is written by what changed, yet always ends as the whole entity of its alarm; a rule
event that describes its entity spares the alarm a store read; the stream sends what is queued at once,
in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.alarms.support import T0, TENANT, City, alarm_settings, cleared, matched
from ucity.alarms.alert import alert_doc
from ucity.alarms.notifiers.sse import SseHub
from ucity.core.bus import Context
from ucity.ngsild.context import core_context
from ucity.ngsild.ops import merge_op
from ucity.store.base import Mutation, Outcome

POINT = {"type": "Point", "coordinates": [126.887, 37.495]}
SYSTEM_MEMBERS = ("createdAt", "modifiedAt")


def iri(name: str) -> str:
    return str(core_context().expand_term(name))


def content(attrs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [{k: v for k, v in i.items() if k not in SYSTEM_MEMBERS} for i in instances]
            for name, instances in attrs.items()}


async def assert_whole(city: City, alarm_id: str) -> dict[str, Any]:
    """The stored Alert has exactly the attributes (and values) that writing the whole entity would give."""
    alarm = city.alarms.get_open(TENANT, alarm_id)
    doc = await city.alert(alarm_id)
    assert doc is not None and alarm is not None
    assert content(doc["attrs"]) == content(alert_doc(alarm)["attrs"])
    return doc


async def test_delta_writes_leave_the_whole_alert_and_touch_only_what_changed(city: City) -> None:
    await city.publish(matched(level="caution", location=POINT, description={"ko": "기울기", "en": "Tilt"}))
    alarm = city.active()
    raised = await assert_whole(city, alarm.id)
    created = raised["attrs"][iri("rule")][0]["modifiedAt"]

    await city.advance(60)
    await city.publish(cleared())
    doc = await assert_whole(city, alarm.id)
    assert doc["attrs"][iri("validTo")][0]["value"]["@value"] == alarm.cleared_at
    changed = {name for name, (instance,) in doc["attrs"].items() if instance["modifiedAt"] != created}
    assert changed == {iri("status"), iri("validTo")}  # a clear writes status and validTo, nothing else
    assert doc["modifiedAt"] == alarm.cleared_at

    await city.advance(60)
    await city.publish(matched(level="serious", location=POINT, description={"ko": "기울기", "en": "Tilt"}))
    assert city.active() is alarm and alarm.status == "active-unacknowledged"  # re-activated, escalated
    doc = await assert_whole(city, alarm.id)
    assert iri("validTo") not in doc["attrs"]  # removed: the alarm is active again
    changed = {name for name, (instance,) in doc["attrs"].items() if instance["modifiedAt"] != created}
    assert changed == {iri("status"), iri("level"), iri("severity")}
    assert doc["attrs"][iri("status")][0]["createdAt"] == created  # an updated attribute keeps its createdAt

    await city.act(alarm.id, "acknowledge")
    await city.act(alarm.id, "close", {"outcome": "real"})
    assert (await city.alert(alarm.id) or {})["attrs"][iri("outcome")][0]["value"] == "real"
    doc = await city.alert(alarm.id)
    assert doc is not None and content(doc["attrs"]) == content(alert_doc(alarm)["attrs"])


async def test_without_a_remembered_alert_the_stored_one_is_compared_whole(city: City) -> None:
    """After a restart (or a failed write) the alarm does not know what the store has: the whole entity is
    compared with the stored one, what differs is written and what the alarm lacks is removed."""
    await city.publish(matched(level="warning"))
    alarm = city.active()
    stray = {"id": alarm.alert_id, "type": "Alert", "attrs": {iri("stray"): [{"type": "Property", "value": 1}]}}
    await city.ucity.store.mutate(TENANT, [Mutation(alarm.alert_id, merge_op(stray))], Context())
    before = await city.alert(alarm.id)
    assert before is not None and iri("stray") in before["attrs"]
    alarm.alert_written = None
    await city.advance(60)
    await city.act(alarm.id, "acknowledge")
    doc = await assert_whole(city, alarm.id)
    assert iri("stray") not in doc["attrs"]
    changed = {name for name, (instance,) in doc["attrs"].items()
               if instance["modifiedAt"] != before["attrs"][name][0]["modifiedAt"]}
    assert changed == {iri("status")}
    assert alarm.alert_written is not None


async def test_a_failed_alert_write_is_followed_by_a_whole_one(city: City) -> None:
    store = city.ucity.store
    mutate = store.mutate
    failing = [True]

    async def flaky(tenant: str, mutations: list[Mutation], context: Context) -> list[Outcome | Exception]:
        if failing[0] and any(m.entity_id.startswith("urn:ngsi-ld:Alert:") for m in mutations):
            return [RuntimeError("disk full")]
        return await mutate(tenant, mutations, context)

    store.mutate = flaky  # type: ignore[method-assign]
    await city.publish(matched(level="warning"))
    alarm = city.active()
    assert await city.alert(alarm.id) is None and alarm.alert_written is None
    failing[0] = False
    await city.act(alarm.id, "acknowledge")
    await assert_whole(city, alarm.id)


async def test_a_rule_event_that_describes_its_entity_is_not_read_again(tmp_path: Path) -> None:
    async with City.running(alarm_settings(tmp_path), T0) as city:
        reads = count_reads(city)
        await city.publish(matched(level="caution", location=POINT))  # the rules engine's description
        alarm = city.active()
        assert reads == [] and alarm.enriched and (alarm.entity_type, alarm.location) == ("Device", POINT)
        await city.publish(matched(entity="urn:ngsi-ld:Device:tilt-2", level="caution", entity_types=()))
        assert reads == ["urn:ngsi-ld:Device:tilt-2"]  # no description: the entity is read


async def test_a_relationship_only_the_alarms_look_for_still_reads_the_entity(tmp_path: Path) -> None:
    async with City.running(alarm_settings(tmp_path, parent_relationships=["feeds"]), T0) as city:
        reads = count_reads(city)
        await city.publish(matched(level="caution", parent_id="urn:ngsi-ld:Building:b1"))
        assert reads == ["urn:ngsi-ld:Building:b1"]  # the parent's derived alarm is read; the sensor's event named it
        await city.publish(matched(entity="urn:ngsi-ld:Device:tilt-2", level="caution"))
        assert reads[1:] == ["urn:ngsi-ld:Device:tilt-2"]  # no parent by the rules' relationships; `feeds` may be set


def count_reads(city: City) -> list[str]:
    reads: list[str] = []
    store = city.ucity.store
    get_entity = store.get_entity

    async def counted(tenant: str, entity_id: str) -> Any:
        if not entity_id.startswith("urn:ngsi-ld:Alert:"):
            reads.append(entity_id)
        return await get_entity(tenant, entity_id)

    store.get_entity = counted  # type: ignore[method-assign]
    return reads


async def test_what_is_queued_for_a_client_goes_out_in_one_write_in_order() -> None:
    hub = SseHub(buffer=10, client_queue=10, heartbeat_s=10.0)
    stream = hub.stream(TENANT)
    assert (await anext(stream)).startswith(b"retry:")
    for n in range(3):
        hub.publish(TENANT, "raised", {"n": n})
    hub.publish("urn:ngsi-ld:tenant:other", "raised", {"n": 9})
    chunk = await anext(stream)
    assert chunk == b"".join(b'id: %d\nevent: alarm.raised\ndata: {"n":%d}\n\n' % (n + 1, n) for n in range(3))
    hub.publish(TENANT, "cleared", {"n": 0})
    assert await anext(stream) == b'id: 5\nevent: alarm.cleared\ndata: {"n":0}\n\n'
    await stream.aclose()


async def test_a_burst_reaches_the_stream_in_decision_order(city: City) -> None:
    sensors = [f"urn:ngsi-ld:Device:tilt-{n}" for n in range(30)]
    bus = city.ucity.platform.bus
    for sensor in sensors:
        await bus.publish(matched(entity=sensor, level="warning"))
    for sensor in reversed(sensors):
        await bus.publish(cleared(entity=sensor))
    await city.settle()
    events = [(e.event, e.data["entity_id"]) for e in city.alarms.sse.backlog(TENANT, "0")]
    expected = [("alarm.raised", s) for s in sensors] + [("alarm.cleared", s) for s in reversed(sensors)]
    assert sorted(events) == sorted(expected)
    assert [e for e in events if e[0] == "alarm.raised"] == expected[:30]
    for sensor in sensors:  # one alarm's changes in its order
        assert events.index(("alarm.raised", sensor)) < events.index(("alarm.cleared", sensor))
