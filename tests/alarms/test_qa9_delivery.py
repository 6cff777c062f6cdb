"""QA9 F2, F6, F12 and QA10 F2: what the people told learn, what the alarm's history says became of each
notification, /health's dead letters, the text of the messages, and the Alert of an alarm about a person."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.alarms.receiver import Receiver
from tests.alarms.support import TENANT, City, cleared, matched
from ucity.alarms.dispatch import compose
from ucity.alarms.model import Alarm
from ucity.core.config import PrivacySettings
from ucity.core.http import Req
from ucity.store.base import TemporalQuery

PERSON = "urn:ngsi-ld:Person:elder-2"
EXACT = {"type": "Point", "coordinates": [126.887654, 37.495432]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def recording_chain(city: City) -> None:
    """One recording (sends nothing) push notifier, a group on it, and a chain telling it at once."""
    assert (await city.collection("notifiers", "create", {"id": "push", "type": "push"})).status == 201
    group = {"id": "care", "members": [{"name": "김돌봄", "contacts": [{"notifier": "push", "address": "token-kim"}]}]}
    assert (await city.collection("recipients", "create", group)).status == 201
    assert (await city.collection("escalations", "create", {"id": "c", "steps": [{"delay_s": 0, "group": "care"}]})
            ).status == 201


def recorded(city: City) -> list[dict[str, Any]]:
    instance: Any = city.alarms.dispatcher.notifier(TENANT, "push")
    return list(instance.recorded)


# -- F2: a re-activated alarm is told ---------------------------------------------------------------------------
async def test_a_reactivated_alarm_tells_the_groups_that_were_told_it_cleared(city: City) -> None:
    await recording_chain(city)
    await city.publish(matched(level="warning"))  # raised: the chain's step 0 tells `care`
    alarm = city.active()
    await city.advance(30)
    await city.publish(cleared())
    await city.advance(30)
    await city.publish(matched(level="warning"))  # within the dedupe window: the same alarm, active again
    assert city.active() is alarm
    subjects = [r["subject"]["en"] for r in recorded(city)]
    assert subjects == [f"[Warning] Alarm raised: tilt @ {alarm.entity_id}",
                        f"[Warning] Alarm cleared: tilt @ {alarm.entity_id}",
                        f"[Warning] Alarm active again: tilt @ {alarm.entity_id}"]
    assert "재발생 시각: 2026-03-02 09:01:00 KST" in recorded(city)[-1]["text"]["ko"]
    history = await city.history(alarm.id)
    (reactivated,) = [h for h in history if h["action"] == "reactivated"]
    assert reactivated["notified"] == ["care"]
    # Each of the three was recorded as settled (a recording notifier: not sent), after the event it tells.
    settled = [(h["action"], h["event"], h["group"], h["notifier"]) for h in history if h["action"] == "not-sent"]
    assert settled == [("not-sent", e, "care", "push") for e in ("raised", "cleared", "reactivated")]
    assert [h["seq"] for h in history] == list(range(1, len(history) + 1))


async def test_an_acknowledged_alarm_that_clears_and_returns_is_told_too(city: City) -> None:
    await recording_chain(city)
    await city.publish(matched(level="warning"))
    alarm = city.active()
    assert (await city.act(alarm.id, "acknowledge")).status == 200
    await city.publish(cleared())
    await city.publish(matched(level="warning"))  # cleared-acknowledged -> active-acknowledged: no escalation runs
    assert alarm.status == "active-acknowledged"
    assert [r["subject"]["en"].split("]")[1].split(":")[0].strip() for r in recorded(city)] == [
        "Alarm raised", "Alarm acknowledged", "Alarm cleared", "Alarm active again"]


async def test_a_reactivation_before_anyone_was_told_tells_nobody(city: City) -> None:
    await city.publish(matched(level="warning"))  # no chain: nobody told
    await city.publish(cleared())
    await city.publish(matched(level="warning"))
    history = await city.history(city.active().id)
    (reactivated,) = [h for h in history if h["action"] == "reactivated"]
    assert "notified" not in reactivated


# -- F6: delivery outcomes in the alarm's history, dead letters in /health ------------------------------------
async def test_delivered_and_dead_letters_are_in_the_alarm_history_and_health(city: City, receiver: Receiver) -> None:
    receiver.status["/refuse"] = 400  # a retry cannot help: a dead letter at once
    for notifier in ({"id": "ok", "type": "webhook", "url": f"{receiver.url}/ok"},
                     {"id": "refusing", "type": "webhook", "url": f"{receiver.url}/refuse"}):
        assert (await city.collection("notifiers", "create", notifier)).status == 201
    assert (await city.collection("recipients", "create", {"id": "room", "notifiers": ["ok", "refusing"]})).status == 201
    assert (await city.collection("escalations", "create", {"id": "c", "steps": [{"delay_s": 0, "group": "room"}]})
            ).status == 201
    health = city.alarms.health()
    assert (health["ok"], health["status"], health["deadLetters"]["recent"]) == (True, "ok", 0)
    assert "warning" not in health

    await city.publish(matched(level="serious"))
    alarm = city.active()
    history = await city.history(alarm.id)
    outcomes = {h["notifier"]: h for h in history if h["action"] in ("delivered", "delivery-failed")}
    assert (outcomes["ok"]["action"], outcomes["ok"]["event"], outcomes["ok"]["group"]) == ("delivered", "raised", "room")
    failed = outcomes["refusing"]
    (letter,) = (await city.call("dead_letters")).body["deadLetters"]
    assert (failed["action"], failed["deadLetter"], failed["error"], failed["attempts"]) == (
        "delivery-failed", letter["id"], "HTTP 400", 1)
    assert all("address" not in h and "recipient" not in h for h in history)  # no contact data in the history
    # The detail API shows them (the alarm's history).
    detail = await city.call("get_alarm", alarmId=alarm.id)
    assert {h["action"] for h in detail.body["history"]} >= {"notified", "delivered", "delivery-failed"}

    health = city.alarms.health()  # degraded, still ready
    assert (health["ok"], health["status"], health["deadLetters"]["recent"]) == (True, "degraded", 1)
    assert health["deadLetters"]["last"] == "2026-03-02T00:00:00.000000Z" and "dead-letters" in health["warning"]
    await city.advance(city.alarms.settings.dead_letters_recent_s + 1)
    health = city.alarms.health()
    assert (health["status"], health["deadLetters"]["recent"]) == ("ok", 0)


async def test_a_closed_alarms_follow_up_delivery_is_recorded(city: City, receiver: Receiver) -> None:
    assert (await city.collection("notifiers", "create", {"id": "ok", "type": "webhook", "url": f"{receiver.url}/ok"})
            ).status == 201
    assert (await city.collection("recipients", "create", {"id": "room", "notifiers": ["ok"]})).status == 201
    assert (await city.collection("escalations", "create", {"id": "c", "steps": [{"delay_s": 0, "group": "room"}]})
            ).status == 201
    await city.publish(matched(level="serious"))
    alarm = city.active()
    await city.act(alarm.id, "acknowledge")
    assert (await city.act(alarm.id, "close", {"outcome": "real"})).status == 200
    assert city.alarms.get_open(TENANT, alarm.id) is None  # no longer in memory
    history = await city.history(alarm.id)
    assert [(h["action"], h.get("event")) for h in history if h["action"] in ("delivered", "closed")] == [
        ("delivered", "raised"), ("delivered", "acknowledged"), ("closed", None), ("delivered", "closed")]
    assert [h["seq"] for h in history] == list(range(1, len(history) + 1))


async def test_dead_letters_stored_before_a_start_count_as_recent(city: City) -> None:
    await city.ucity.store.put_doc("alarm-dead-letter", TENANT, "n1", {"id": "n1", "failedAt": "2026-03-01T23:00:00Z"})
    await city.ucity.store.put_doc("alarm-dead-letter", TENANT, "n0", {"id": "n0", "failedAt": "2026-02-01T00:00:00Z"})
    await city.alarms.dispatcher.count_dead_letters(86400)
    assert city.alarms.health()["deadLetters"] == {"recent": 1, "windowS": 86400.0, "last": "2026-03-01T23:00:00.000000Z"}


# -- F12: the text of the messages -------------------------------------------------------------------------------
async def test_messages_carry_value_threshold_name_place_and_who_did_what_when(city: City) -> None:
    body = {"id": "urn:ngsi-ld:Device:tilt-1", "type": "Device", "name": {"type": "Property", "value": "구로교 기울기 1"},
            "location": {"type": "GeoProperty", "value": EXACT}}
    req = Req("POST", "/ngsi-ld/v1/entities", headers={"content-type": "application/json"}, body=orjson.dumps(body))
    assert (await city.ucity.ngsild.create_entity(req)).status == 201
    await recording_chain(city)
    evidence = {"attribute": "tilt", "value": 12.5, "observedAt": "2026-03-02T00:00:00Z", "direction": "above",
                "edges": {"caution": 5, "warning": 10}, "ruleName": {"ko": "교량 기울기", "en": "Bridge tilt"}}
    await city.publish(matched(level="warning", entity_types=(), evidence=evidence))  # not described: read
    alarm = city.active()
    assert alarm.entity_name == "구로교 기울기 1"
    raised = recorded(city)[0]["text"]
    for line in ("이름: 구로교 기울기 1", "위치: 위도 37.495432, 경도 126.887654", "규칙: 교량 기울기 (tilt)",
                 "측정값: tilt = 12.5 (2026-03-02 09:00:00 KST)", "기준: ≥ 10"):
        assert line in raised["ko"], (line, raised["ko"])
    for line in ("Name: 구로교 기울기 1", "Location: lat 37.495432, lon 126.887654", "Rule: Bridge tilt (tilt)",
                 "Measured: tilt = 12.5 (2026-03-02 09:00:00 KST)", "Threshold: ≥ 10"):
        assert line in raised["en"], (line, raised["en"])
    await city.advance(90)
    await city.act(alarm.id, "acknowledge", actor="operator:tok-1 (김민수)")
    await city.advance(60)
    await city.act(alarm.id, "clear", actor="operator:tok-2")
    acked, cleared_text = recorded(city)[1]["text"], recorded(city)[2]["text"]
    assert "확인 시각: 2026-03-02 09:01:30 KST" in acked["ko"] and "확인자: operator:tok-1 (김민수)" in acked["ko"]
    assert "Acknowledged at: 2026-03-02 09:01:30 KST" in acked["en"]
    assert "Cleared at: 2026-03-02 09:02:30 KST" in cleared_text["en"] and "Cleared by: operator:tok-2" in cleared_text["en"]


def test_escalated_and_rule_cleared_messages_say_when_and_that_the_system_did_it() -> None:
    alarm = Alarm(id="a1", tenant=TENANT, entity_id="urn:ngsi-ld:Device:d", rule_id="r", kind="safety",
                  level="serious", status="active-unacknowledged", raised_at="2026-03-02T00:00:00Z",
                  updated_at="2026-03-02T00:10:00Z", last_seen="2026-03-02T00:10:00Z",
                  escalation={"chain": "c", "level": "serious", "started_at": "2026-03-02T00:05:00Z", "next_step": 1},
                  evidence={"attribute": "rate", "value": 3, "rate": 0.5, "perSeconds": 60, "direction": "below",
                            "edges": {"serious": -1}})
    _, text = compose(alarm, "escalated")
    assert "격상 시각: 2026-03-02 09:05:00 KST" in text["ko"] and "처리: 시스템(자동)" in text["ko"]
    assert "Rate: 0.5 (per 60 s)" in text["en"] and "Threshold: ≤ -1" in text["en"]
    alarm.status, alarm.cleared_at, alarm.cleared_by = "cleared-unacknowledged", "2026-03-02T00:20:00Z", "system"
    _, text = compose(alarm, "cleared")
    assert "Cleared at: 2026-03-02 09:20:00 KST" in text["en"] and "Cleared by: system (automatic)" in text["en"]


async def test_a_persons_name_never_enters_the_alarm(city: City) -> None:
    body = {"id": PERSON, "type": "Person", "name": {"type": "Property", "value": "홍길동"},
            "location": {"type": "GeoProperty", "value": EXACT}}
    req = Req("POST", "/ngsi-ld/v1/entities", headers={"content-type": "application/json"}, body=orjson.dumps(body))
    assert (await city.ucity.ngsild.create_entity(req)).status == 201
    await city.publish(matched(PERSON, "serious", "sos", entity_types=()))
    alarm = city.active(PERSON, "sos")
    assert (alarm.entity_type, alarm.entity_name) == ("Person", "")


# -- QA10 F2: the Alert of an alarm about a person -----------------------------------------------------------
def short(doc: dict[str, Any] | None) -> dict[str, Any]:
    """A stored entity's attributes by short name: the default instance's value (or object)."""
    assert doc is not None
    return {k.rsplit("/", 1)[-1]: v[0].get("value", v[0].get("object")) for k, v in doc["attrs"].items()}


async def test_the_alert_of_a_persons_alarm_has_no_source_and_a_coarse_location(city: City) -> None:
    await city.publish(matched(PERSON, "serious", "sos", entity_types=("Person",), location=EXACT),
                       matched(level="warning", location=EXACT))
    person, device = city.active(PERSON, "sos"), city.active()
    await city.alarms.drain()
    doc = await city.alert(person.id)
    shown = short(doc)
    assert "alertSource" not in shown and PERSON not in orjson.dumps(doc).decode()
    assert shown["location"] == {"type": "Point", "coordinates": [126.8875, 37.4975]}
    assert shown["locationCellDeg"] == 0.005
    exact = short(await city.alert(device.id))  # a device's Alert keeps its source and exact place
    assert exact["alertSource"] == device.entity_id and exact["location"] == EXACT
    assert person.location == EXACT  # the alarm itself (its API and permissions) keeps the place
    # Its history (temporal API) never held the exact place either.
    entities, _ = await city.ucity.store.temporal_query(TENANT, TemporalQuery(ids=(person.alert_id,),
                                                                             timeproperty="modifiedAt"))
    assert entities and "126.887654" not in str(entities) and "126.8875" in str(entities)


async def test_personal_types_and_cell_are_settings(tmp_path: Any) -> None:
    from tests.alarms.support import T0, alarm_settings

    settings = alarm_settings(tmp_path)
    settings = settings.model_copy(update={"privacy": PrivacySettings(personal_entity_types=["Person", "Household"],
                                                                       location_cell_deg=0.01)})
    async with City.running(settings, T0) as city:
        home = "urn:ngsi-ld:Household:h1"
        await city.publish(matched(home, "warning", "door", entity_types=("Household",), location=EXACT))
        await city.alarms.drain()
        attrs = short(await city.alert(city.active(home, "door").id))
        assert "alertSource" not in attrs and attrs["locationCellDeg"] == 0.01
        assert attrs["location"] == {"type": "Point", "coordinates": [126.885, 37.495]}
