"""Each announced change carries the alarm as that change left it.

Changes decided before their save round runs (in one step of the event loop, or while the alarm's first
change waits for its entity to be read) are saved together, the row as the last of them left it (the last
write wins); but the stream and `AlarmChanged` tell each change with the alarm's state after that change:
its status, level, times, count and escalation, not the state the alarm reached by the time it was saved.
An operator's client would otherwise show a cleared alarm as newly raised, or a raise without its level."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from tests.alarms.support import SENSOR, TENANT, City, matched
from tests.alarms.support import cleared as cleared_event
from ucity.alarms import AlarmChanged
from ucity.alarms.alert import alert_doc
from ucity.alarms.service import Signal
from ucity.core.errors import Unavailable
from ucity.core.http import Req

POINT = {"type": "Point", "coordinates": [126.9, 37.5]}
CHAIN = {"id": "tilt-chain", "rule": "tilt", "steps": [{"delay_s": 300, "group": "crew"}]}
FIELDS = ("status", "level", "updated_at", "last_seen", "count", "cleared_at", "cleared_by")


class Told:
    """What the stream and `AlarmChanged` announced: (event, alarm) in order."""

    def __init__(self, city: City) -> None:
        self.city = city
        self.changed: list[tuple[tuple[str, ...], dict[str, Any]]] = []

        async def on_changed(event: AlarmChanged) -> None:
            self.changed.append((event.events, event.alarm))

        city.ucity.platform.bus.subscribe(AlarmChanged, on_changed)

    def streamed(self) -> list[tuple[str, dict[str, Any]]]:
        # as a client reads it: the encoded frame, not the dict the hub keeps
        frames = [orjson.loads(e.encode().split(b"data: ", 1)[1]) for e in self.city.alarms.sse.backlog(TENANT, "0")]
        return [(e.event, frame) for e, frame in zip(self.city.alarms.sse.backlog(TENANT, "0"), frames, strict=True)]


def state(alarm: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(alarm[name] for name in FIELDS)


async def chain(city: City) -> None:
    assert (await city.collection("recipients", "create", {"id": "crew", "members": []})).status == 201
    assert (await city.collection("escalations", "create", CHAIN)).status == 201


def decide(city: City, signal: Any) -> None:
    city.alarms.raise_signal(Signal.of(signal))


async def test_changes_saved_by_one_round_are_each_announced_as_they_left_the_alarm(city: City) -> None:
    told = Told(city)
    service = city.alarms
    # One step of the event loop: raised at warning, escalated to serious a second later, cleared a second after.
    decide(city, matched(level="warning"))
    city.clock.advance(1)
    decide(city, matched(level="serious"))
    city.clock.advance(1)
    alarm = service.clear_by_rule(TENANT, SENSOR, "tilt", {"value": 0})
    assert alarm is not None
    await city.settle()

    raised = ("active-unacknowledged", "warning", "2026-03-02T00:00:00.000000Z", "2026-03-02T00:00:00.000000Z", 1,
              None, None)
    escalated = ("active-unacknowledged", "serious", "2026-03-02T00:00:01.000000Z", "2026-03-02T00:00:01.000000Z", 2,
                 None, None)
    ended = ("cleared-unacknowledged", "serious", "2026-03-02T00:00:02.000000Z", "2026-03-02T00:00:01.000000Z", 2,
             "2026-03-02T00:00:02.000000Z", "system")
    assert [(event, state(data)) for event, data in told.streamed()] == [
        ("alarm.raised", raised), ("alarm.escalated", escalated), ("alarm.cleared", ended)]
    assert [(events, state(data)) for events, data in told.changed] == [
        (("raised",), raised), (("escalated",), escalated), (("cleared",), ended)]
    for _, data in told.streamed():  # the names a dashboard shows follow the state they name
        assert data["status_name"]["en"] == ("Cleared, unacknowledged" if data["status"].startswith("cleared")
                                             else "Active, unacknowledged")
    assert [data["severity"] for _, data in told.streamed()] == ["high", "critical", "critical"]

    # The row is the latest state (one store call, the last write wins); the history has every change.
    stored = await city.ucity.store.get_alarm(TENANT, alarm.id)
    assert stored is not None and state(stored) == ended
    assert [h["action"] for h in await city.history(alarm.id)] == ["raised", "escalated", "cleared"]
    # The Alert projection writes the end state (once).
    assert _same_alert(await city.alert(alarm.id), alarm)


def _same_alert(doc: dict[str, Any] | None, alarm: Any) -> bool:
    def content(attrs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        return {name: [{k: v for k, v in i.items() if k not in ("createdAt", "modifiedAt", "instanceId")}
                       for i in instances] for name, instances in attrs.items()}

    return doc is not None and content(doc["attrs"]) == content(alert_doc(alarm)["attrs"])


async def test_the_alert_of_changes_saved_together_is_the_end_state(city: City) -> None:
    decide(city, matched(level="warning"))
    alarm = city.alarms.clear_by_rule(TENANT, SENSOR, "tilt", {})
    await city.settle()
    assert alarm is not None and _same_alert(await city.alert(alarm.id), alarm)
    assert alarm.status == "cleared-unacknowledged"


async def test_a_raise_announces_the_escalation_it_began(city: City) -> None:
    """The escalation chain begins after the raise is decided; the raise's announcement still carries it (and
    the saved row, so that a restart re-arms it), while the clear decided in the same step stops it."""
    await chain(city)
    told = Told(city)
    decide(city, matched(level="warning"))
    alarm = city.active()
    city.alarms.clear_by_rule(TENANT, SENSOR, "tilt", {})
    decide(city, matched(level="warning"))  # re-opened within the dedupe window: the escalation resumes
    await city.settle()
    events = told.streamed()
    assert [(event, data["status"]) for event, data in events] == [
        ("alarm.raised", "active-unacknowledged"), ("alarm.cleared", "cleared-unacknowledged"),
        ("alarm.reactivated", "active-unacknowledged")]
    for _, data in events:
        assert data["escalation"] is not None and data["escalation"]["chain"] == "tilt-chain"
        assert data["escalation"]["next_step"] == 0
    stored = await city.ucity.store.get_alarm(TENANT, alarm.id)
    assert stored is not None and stored["escalation"] == alarm.escalation and stored["status"] == alarm.status


async def test_a_step_that_fires_later_does_not_change_what_was_announced(city: City) -> None:
    await chain(city)
    told = Told(city)
    await city.publish(matched(level="warning"))
    alarm = city.active()
    await city.advance(300)  # the step fires: the escalation state (a dict the alarm keeps) moves on in place
    assert alarm.escalation["next_step"] == 1 and alarm.notified_groups == ["crew"]
    [(events, raised)] = told.changed  # a step is saved, not announced
    assert events == ("raised",) and raised["escalation"]["next_step"] == 0 and raised["notified_groups"] == []
    assert [(data["escalation"]["next_step"], data["notified_groups"]) for _, data in told.streamed()] == [(0, [])]


async def test_a_change_decided_while_the_first_is_enriched_keeps_its_own_state_and_the_enrichment(
        city: City) -> None:
    body = {"id": SENSOR, "type": "Device", "location": {"type": "GeoProperty", "value": POINT}}
    req = Req("POST", "/ngsi-ld/v1/entities", headers={"content-type": "application/json"}, body=orjson.dumps(body))
    assert (await city.ucity.ngsild.create_entity(req)).status == 201
    told = Told(city)
    service = city.alarms
    decide(city, matched(level="warning", entity_types=()))  # not described: its entity is read first
    alarm = city.active()
    assert service._enriching.get(alarm.id) == []
    city.clock.advance(1)
    decide(city, matched(level="serious", entity_types=()))  # waits behind the raise
    await city.settle()
    assert [(event, data["level"], data["count"], data["entity_type"], data["location"])
            for event, data in told.streamed()] == [("alarm.raised", "warning", 1, "Device", POINT),
                                                    ("alarm.escalated", "serious", 2, "Device", POINT)]
    assert [(events, data["level"], data["location"], data["enriched"]) for events, data in told.changed] == [
        (("raised",), "warning", POINT, True), (("escalated",), "serious", POINT, True)]
    stored = await city.ucity.store.get_alarm(TENANT, alarm.id)
    assert stored is not None and (stored["level"], stored["location"], stored["count"]) == ("serious", POINT, 2)


async def test_a_new_alarm_whose_entity_cannot_be_read_is_saved_and_announced_without_the_entity(
        city: City, caplog: pytest.LogCaptureFixture) -> None:
    """The entity read of a raise the rule event did not describe fails (the store busy or restarting): the
    raise is not dropped. It is saved and announced without the entity's type, location and parent, and the
    change decided while it was read follows it, in order."""
    store = city.ucity.store
    get_entity = store.get_entity
    reads: list[str] = []

    async def failing(tenant: str, entity_id: str) -> Any:
        reads.append(entity_id)
        if reads == [SENSOR]:  # the alarm's read (the operations centre reads it too, later)
            raise Unavailable("the store is not running")
        return await get_entity(tenant, entity_id)

    store.get_entity = failing  # type: ignore[method-assign]
    told = Told(city)
    with caplog.at_level(logging.WARNING, logger="ucity.alarms.service"):
        decide(city, matched(level="warning", entity_types=(), location=POINT))  # not described: read first
        alarm = city.active()
        city.clock.advance(1)
        decide(city, matched(level="serious", entity_types=()))  # waits behind the raise
        await city.settle()
    assert reads[0] == SENSOR
    assert [(event, data["level"], data["count"], data["entity_type"], data["location"], data["enriched"])
            for event, data in told.streamed()] == [("alarm.raised", "warning", 1, "", POINT, False),
                                                    ("alarm.escalated", "serious", 2, "", POINT, False)]
    assert [events for events, _ in told.changed] == [("raised",), ("escalated",)]
    stored = await store.get_alarm(TENANT, alarm.id)
    assert stored is not None and (stored["level"], stored["count"], stored["enriched"]) == ("serious", 2, False)
    assert [h["action"] for h in await city.history(alarm.id)] == ["raised", "escalated"]
    assert await city.alert(alarm.id) is not None  # its Alert entity too
    assert "could not be read" in caplog.text


async def test_a_retried_save_still_announces_each_changes_own_state(city: City,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A save call that fails is retried alarm by alarm, with each alarm's latest row; what is announced is
    still each change's own state."""
    store = city.ucity.store
    save_alarms = store.save_alarms
    calls: list[int] = []

    async def failing_once(saves: list[Any], docs: Any = ()) -> None:
        calls.append(len(saves))
        if len(calls) == 1:
            raise RuntimeError("connection reset")
        await save_alarms(saves, docs)

    store.save_alarms = failing_once  # type: ignore[method-assign]
    told = Told(city)
    with caplog.at_level(logging.ERROR, logger="ucity.alarms.service"):
        decide(city, matched(level="warning"))
        decide(city, matched(entity="urn:ngsi-ld:Device:other", level="caution"))
        alarm = city.alarms.clear_by_rule(TENANT, SENSOR, "tilt", {})
        await city.settle()
    assert alarm is not None and calls[0] == 3
    assert [(event, data["entity_id"], data["status"]) for event, data in told.streamed()] == [
        ("alarm.raised", SENSOR, "active-unacknowledged"),
        ("alarm.raised", "urn:ngsi-ld:Device:other", "active-unacknowledged"),
        ("alarm.cleared", SENSOR, "cleared-unacknowledged")]
    stored = await store.get_alarm(TENANT, alarm.id)
    assert stored is not None and stored["status"] == "cleared-unacknowledged"


async def test_a_resumed_escalation_leaves_what_earlier_changes_announced(city: City) -> None:
    """A step that fires at once and a re-opened alarm's resumed chain change the escalation state in place
    (escalation.py); the changes announced before keep theirs."""
    assert (await city.collection("recipients", "create", {"id": "crew", "members": []})).status == 201
    steps = [{"delay_s": 0, "group": "crew"}, {"delay_s": 300, "group": "crew"}]
    assert (await city.collection("escalations", "create", {**CHAIN, "steps": steps})).status == 201
    told = Told(city)
    await city.publish(matched(level="warning"))  # step 0 fires at once
    await city.advance(100)
    await city.publish(cleared_event())
    await city.advance(50)
    await city.publish(matched(level="warning"))  # re-opened: the next step keeps its spacing from now
    alarm = city.active()
    assert alarm.escalation["started_at"] == "2026-03-02T00:02:30.000000Z" and alarm.escalation["next_step"] == 1
    assert [(events, data["escalation"]["started_at"], data["escalation"]["next_step"], data["notified_groups"])
            for events, data in told.changed] == [
        (("raised",), "2026-03-02T00:00:00.000000Z", 0, []),
        (("cleared",), "2026-03-02T00:00:00.000000Z", 1, ["crew"]),
        (("reactivated",), "2026-03-02T00:02:30.000000Z", 1, ["crew"])]
    assert [(data["escalation"]["started_at"], data["escalation"]["next_step"]) for _, data in told.streamed()] == [
        ("2026-03-02T00:00:00.000000Z", 0), ("2026-03-02T00:00:00.000000Z", 1), ("2026-03-02T00:02:30.000000Z", 1)]
    stored = await city.ucity.store.get_alarm(TENANT, alarm.id)
    assert stored is not None and stored["escalation"] == alarm.escalation
