"""FIX-J: events made from alarms about a person before FIX-H (the entity's raw id in `details`, not `about_person`,
a non-sensitive `CityEvent`) are migrated at start, once per tenant: the id masked, the event sensitive, its entity
and history of the sensitive form; audited and logged once; a second start changes nothing
(ucity/ops/alarm_event_privacy.py). On both backends."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import POINT, TENANT, Ops
from tests.ops.test_fixh_person_alarm_events import CARE, SENSOR, alarm_event, city_event
from tests.ops.test_linkage import audit, fire_and_police, nearest_ids
from tests.ops.test_privacy_migration import history
from ucity.core.bus import Context
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import replace_op
from ucity.ops import center
from ucity.ops.alarm_event_privacy import ALARM_SOURCE, KIND, raw_entity
from ucity.ops.events import Event, event_entity
from ucity.store.base import Mutation

MASKED = "urn:ngsi-ld:CareDevice:k**-y*******-h***"


async def make_old(ops: Ops, event_id: str, entity_id: str) -> str:
    """The event as the code before FIX-H stored it: the raw id in `details`, not `about_person`, and its
    `CityEvent` of the non-sensitive form (written as that code's `_save` did, history recorded)."""
    doc = await ops.ucity.store.get_ops_event(TENANT, event_id)
    assert doc is not None
    event = Event.from_doc(doc)
    event.details = event.details.replace(MASKED, entity_id)
    event.about_person = False
    await ops.ucity.store.save_ops_event(event.to_row(), [])
    entity = normalize_entity(event_entity(event, ops.center.events.settings.video_crime_types), core_context())
    (result,) = await ops.ucity.store.mutate(TENANT, [Mutation(event.entity_id, replace_op(entity, True))],
                                             Context(actor="ucity-ops"))
    assert not isinstance(result, Exception)
    await ops.ucity.store.delete_doc(KIND, TENANT, "done")  # as before this version
    return event.details


async def record(ops: Ops, event_id: str) -> dict[str, Any]:
    doc = await ops.ucity.store.get_ops_event(TENANT, event_id)
    assert doc is not None
    return dict(doc)


def test_the_source_is_the_centres() -> None:
    assert ALARM_SOURCE == center.ALARM_SOURCE


async def test_old_events_of_person_alarms_are_masked_and_made_sensitive_at_start(
        make_ops: MakeOps, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    settings = fire_and_police(receiver)
    async with make_ops(**settings) as ops:
        care = await alarm_event(ops, CARE, "CareDevice", "qa-care-inactive")
        thing = await alarm_event(ops, SENSOR, "Device", "tilt-ladder")
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": care["id"], "cameras": (await nearest_ids(ops))[:1]})
        assert grant.status == 201
        old_details = await make_old(ops, care["id"], CARE)
        assert old_details.endswith(f"{CARE})") and raw_entity(Event.from_doc(await record(ops, care["id"]))) == CARE
        entity = await city_event(ops, care["entityId"])
        assert "address" in entity and entity["location"][0]["value"]["coordinates"] == list(POINT)  # the old form
        thing_before = await record(ops, thing["id"])
        thing_entity = await ops.ucity.store.get_entity(TENANT, thing["entityId"])

    caplog.set_level(logging.WARNING, logger="ucity.ops.alarm_event_privacy")
    async with make_ops(cameras=False, **settings) as ops:  # the next start, on the same store
        stored = await record(ops, care["id"])
        assert stored["about_person"] is True and "younghee" not in stored["details"]
        assert stored["details"] == old_details.replace(CARE, MASKED)
        # readers (`CityEvent`): the sensitive form, and its history holds neither the address nor the exact place
        entity = await city_event(ops, care["entityId"])
        assert "address" not in entity and "sourceRef" not in entity and "locationCellDeg" in entity
        assert entity["location"][0]["value"]["coordinates"] != list(POINT)
        past = await history(ops, care["entityId"])
        assert "address" not in past and "sourceRef" not in past
        assert all(i["value"]["coordinates"] != list(POINT) for i in past.get("location", []))
        # the agency it is shared with reads no id either
        police = (await ops.call("get_event", role="police", eventId=care["id"])).body
        assert "younghee" not in json.dumps(police, ensure_ascii=False)
        # an alarm about a thing is left as it was
        assert await record(ops, thing["id"]) == thing_before
        assert await ops.ucity.store.get_entity(TENANT, thing["entityId"]) == thing_entity
        (line,) = await audit(ops, kind="retention", action="privacy-migration")
        assert line["data"] == "OpsEvent" and line["alarmEventsMasked"] == 1 and line["historySeriesDeleted"] >= 1
        assert "younghee" not in json.dumps(line, ensure_ascii=False)
        logged = [r for r in caplog.records if r.name == "ucity.ops.alarm_event_privacy"]
        assert len(logged) == 1 and "alarmEventsMasked" in logged[0].getMessage()
        after = await record(ops, care["id"]), await ops.ucity.store.get_entity(TENANT, care["entityId"])
        # idempotent even without the mark: run again over the same data it changes nothing
        assert await ops.center.alarm_privacy.migrate(TENANT) == {
            "alarmEventsMasked": 0, "historySeriesDeleted": 0, "historyInstancesDeleted": 0}

    async with make_ops(cameras=False, **settings) as ops:  # a second start: the mark, nothing done
        assert (await record(ops, care["id"]), await ops.ucity.store.get_entity(TENANT, care["entityId"])) == after
        assert len(await audit(ops, kind="retention", action="privacy-migration")) == 1
        assert len([r for r in caplog.records if r.name == "ucity.ops.alarm_event_privacy"]) == 1
