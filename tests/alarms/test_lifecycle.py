"""The alarm lifecycle: transitions as pure functions, then through the service and its handlers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.alarms.support import SENSOR, City, matched
from ucity.alarms import model as m
from ucity.alarms.model import Alarm, InvalidTransition
from ucity.core.errors import BadRequest, NotFound

NOW = "2026-03-02T00:00:00.000000Z"
LATER = "2026-03-02T00:05:00.000000Z"


def fresh(level: str | None = "warning") -> Alarm:
    return Alarm(id="a1", tenant="t", entity_id=SENSOR, rule_id="tilt", kind="safety", level=level,
                 status=m.ACTIVE_UNACK, raised_at=NOW, updated_at=NOW, last_seen=NOW)


def test_the_four_states_and_closing() -> None:
    alarm = fresh()
    assert m.acknowledge(alarm, "kim", NOW).action == "acknowledged"
    assert (alarm.status, alarm.acked_by) == (m.ACTIVE_ACK, "kim")
    entry = m.clear(alarm, "lee", LATER, reason="operator")
    assert (alarm.status, alarm.cleared_at, entry.actor, entry.detail) == (m.CLEARED_ACK, LATER, "lee", {"reason": "operator"})
    entry = m.close(alarm, "kim", LATER, "false-device", "sensor loose")
    assert (alarm.status, alarm.outcome, alarm.closed_by) == (m.CLOSED, "false-device", "kim")
    assert entry.to_doc() == {"seq": 3, "at": LATER, "action": "closed", "actor": "kim", "outcome": "false-device",
                              "note": "sensor loose"}

    other = fresh()
    m.clear(other, m.SYSTEM, NOW)
    assert other.status == m.CLEARED_UNACK
    m.acknowledge(other, "kim", LATER)
    assert other.status == m.CLEARED_ACK


def test_invalid_transitions_are_refused() -> None:
    alarm = fresh()
    with pytest.raises(InvalidTransition) as refused:
        m.close(alarm, "kim", NOW, "real")  # not acknowledged yet
    assert refused.value.status == 409 and "acknowledge" in refused.value.detail
    m.acknowledge(alarm, "kim", NOW)
    with pytest.raises(InvalidTransition):
        m.acknowledge(alarm, "kim", NOW)
    with pytest.raises(BadRequest):
        m.close(alarm, "kim", NOW, "maybe")
    m.close(alarm, "kim", NOW, "real")  # closing an active alarm clears it too
    assert (alarm.status, alarm.cleared_at) == (m.CLOSED, NOW)
    actions: list[Callable[[], object]] = [
        lambda: m.clear(alarm, "kim", NOW), lambda: m.acknowledge(alarm, "kim", NOW),
        lambda: m.assign(alarm, "kim", NOW, "park"), lambda: m.close(alarm, "kim", NOW, "real")]
    for action in actions:
        with pytest.raises(InvalidTransition):
            action()
    assert m.comment(alarm, "kim", LATER, "visited, all fine").detail == {"text": "visited, all fine"}


def test_a_higher_level_asks_for_a_new_acknowledgement() -> None:
    alarm = fresh("interest")
    m.acknowledge(alarm, "kim", NOW)
    entry = m.change_level(alarm, "serious", LATER)
    assert (entry.action, entry.detail["previous"], alarm.level, alarm.status, alarm.acked_at) == (
        "escalated", "interest", "serious", m.ACTIVE_UNACK, None)
    m.acknowledge(alarm, "kim", LATER)
    entry = m.change_level(alarm, "caution", LATER)
    assert (entry.action, alarm.status) == ("deescalated", m.ACTIVE_ACK)


def test_stored_form_round_trips() -> None:
    alarm = fresh()
    alarm.location = {"type": "Polygon", "coordinates": [[[127.0, 37.5], [127.2, 37.5], [127.2, 37.6], [127.0, 37.5]]]}
    m.assign(alarm, "kim", NOW, "park")
    again = Alarm.from_doc(alarm.to_doc())
    assert again.to_doc() == alarm.to_doc()
    row = alarm.to_row()
    assert row.bbox == (127.0, 37.5, 127.2, 37.6)
    assert (row.active, row.derived, row.assignee, row.raised_at) == (True, False, "park", 1772409600000000)


async def test_operator_actions_through_the_handlers(city: City) -> None:
    await city.publish(matched(level="caution"))
    alarm_id = city.active().id
    assert (await city.act(alarm_id, "assign", {"assignee": "park"})).body["assignee"] == "park"
    assert (await city.act(alarm_id, "comment", {"text": "연락 중 / calling"})).status == 200
    acked = await city.act(alarm_id, "acknowledge", actor="operator-lee")
    assert (acked.status, acked.body["status"], acked.body["acked_by"]) == (200, m.ACTIVE_ACK, "operator-lee")
    with pytest.raises(InvalidTransition):
        await city.act(alarm_id, "acknowledge")
    assert (await city.act(alarm_id, "clear")).body["status"] == m.CLEARED_ACK
    closed = await city.act(alarm_id, "close", {"outcome": "test", "note": "drill"})
    assert (closed.body["status"], closed.body["outcome"]) == (m.CLOSED, "test")
    assert city.active() is None
    with pytest.raises(InvalidTransition):
        await city.act(alarm_id, "clear")
    await city.act(alarm_id, "comment", {"text": "after the drill"})  # a closed alarm still takes comments

    got = await city.call("get_alarm", path=f"/api/v1/alarms/{alarm_id}", alarmId=alarm_id)
    trail = [(h["seq"], h["action"], h["actor"]) for h in got.body["history"]]
    assert trail == [(1, "raised", "system"), (2, "assigned", "operator-kim"), (3, "commented", "operator-kim"),
                     (4, "acknowledged", "operator-lee"), (5, "cleared", "operator-kim"), (6, "closed", "operator-kim"),
                     (7, "commented", "operator-kim")]
    assert [c["text"] for c in got.body["comments"]] == ["연락 중 / calling", "after the drill"]
    assert all(h["at"] == "2026-03-02T00:00:00.000000Z" for h in got.body["history"])


async def test_missing_actor_unknown_alarm_and_bad_bodies(city: City) -> None:
    await city.publish(matched())
    alarm_id = city.active().id
    with pytest.raises(BadRequest, match="X-Ucity-Actor"):
        await city.call("acknowledge", "POST", alarmId=alarm_id)
    with pytest.raises(NotFound):
        await city.act("0" * 32, "acknowledge")
    with pytest.raises(NotFound):
        await city.call("get_alarm", alarmId="nope")
    with pytest.raises(BadRequest):
        await city.act(alarm_id, "close", {"note": "no outcome"})
    with pytest.raises(BadRequest):
        await city.act(alarm_id, "comment", {"text": "  "})
    with pytest.raises(BadRequest):
        await city.act(alarm_id, "assign", {})
