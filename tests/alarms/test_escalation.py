"""Escalation chains in fake time: steps fire at their delays, stop on acknowledgement or clearing,
and survive a restart. Recipients, endpoints and chains are API data."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.alarms.support import T0, City, alarm_settings, cleared, matched
from ucity.alarms.contacts import ReadOnly
from ucity.alarms.escalation import Escalator
from ucity.alarms.model import Alarm
from ucity.core.errors import BadRequest

CHAIN = {"id": "elderly-serious", "rule": "inactivity", "level": "serious",
         "steps": [{"delay_s": 0, "group": "care-workers"}, {"delay_s": 300, "group": "guardians"},
                   {"delay_s": 900, "group": "emergency-119"}]}


async def contacts(city: City) -> None:
    assert (await city.collection("notifiers", "create", {"id": "sms", "type": "sms"})).status == 201
    assert (await city.collection("notifiers", "create", {"id": "push", "type": "push"})).status == 201
    groups = [
        {"id": "care-workers", "name": {"ko": "생활지원사", "en": "Care workers"},
         "members": [{"name": "김돌봄", "contacts": [{"notifier": "push", "address": "token-kim"}]}]},
        {"id": "guardians", "members": [{"name": "이보호", "language": "en",
                                         "contacts": [{"notifier": "sms", "address": "010-1234-5678"}]}]},
        {"id": "emergency-119", "members": [{"name": "119", "contacts": [{"notifier": "sms", "address": "119"}]}]},
    ]
    for group in groups:
        assert (await city.collection("recipients", "create", group)).status == 201
    assert (await city.collection("escalations", "create", CHAIN)).status == 201


def recorded(city: City, notifier: str) -> list[tuple[str, str]]:
    """(address, Korean subject) of what a recording notifier got."""
    instance: Any = city.alarms.dispatcher.notifier("urn:ngsi-ld:tenant:default", notifier)
    return [(r["to"], r["subject"]["ko"]) for r in instance.recorded]


async def test_steps_fire_at_their_delays_and_stop_on_acknowledge(city: City) -> None:
    await contacts(city)
    await city.publish(matched("urn:ngsi-ld:Person:p1", "serious", "inactivity"))
    alarm = city.active("urn:ngsi-ld:Person:p1", "inactivity")
    assert recorded(city, "push") == [("token-kim", "[심각] 경보 발생: inactivity @ urn:ngsi-ld:Person:p1")]
    assert recorded(city, "sms") == []
    await city.advance(299)
    assert recorded(city, "sms") == []
    await city.advance(1)
    assert recorded(city, "sms") == [("010-1234-5678", "[심각] 경보 통보: inactivity @ urn:ngsi-ld:Person:p1")]
    await city.advance(100)
    await city.act(alarm.id, "acknowledge")
    await city.advance(3600)  # the 119 step (at 900 s) never comes
    assert [to for to, _ in recorded(city, "sms")] == ["010-1234-5678", "010-1234-5678"]  # + "acknowledged" follow-up
    assert "확인" in recorded(city, "sms")[1][1]
    steps = [(h["at"], h["group"]) for h in await city.history(alarm.id) if h["action"] == "notified"]
    assert steps == [("2026-03-02T00:00:00.000000Z", "care-workers"), ("2026-03-02T00:05:00.000000Z", "guardians")]
    assert alarm.notified_groups == ["care-workers", "guardians"] and city.alarms.escalator.pending == 0


async def test_clearing_stops_the_chain_and_a_reopen_resumes_it(city: City) -> None:
    await contacts(city)
    await city.publish(matched("urn:ngsi-ld:Person:p1", "serious", "inactivity"))
    await city.advance(60)
    await city.publish(cleared("urn:ngsi-ld:Person:p1", "inactivity"))
    await city.advance(600)
    assert recorded(city, "sms") == []  # the guardians' step at 300 s did not fire
    await city.publish(matched("urn:ngsi-ld:Person:p1", "serious", "inactivity"))  # within the dedupe window
    await city.advance(299)
    assert recorded(city, "sms") == []
    await city.advance(1)  # step 2 keeps its 300 s spacing after step 1, from the reopening
    assert [to for to, _ in recorded(city, "sms")] == ["010-1234-5678"]


async def test_a_higher_level_starts_that_levels_chain(city: City) -> None:
    await contacts(city)
    await city.publish(matched("urn:ngsi-ld:Person:p1", "caution", "inactivity"))  # no chain for caution
    assert recorded(city, "push") == []
    await city.publish(matched("urn:ngsi-ld:Person:p1", "serious", "inactivity"))
    assert recorded(city, "push") == [("token-kim", "[심각] 경보 격상: inactivity @ urn:ngsi-ld:Person:p1")]


async def test_escalation_timers_survive_a_restart(tmp_path: Path) -> None:
    settings = alarm_settings(tmp_path)
    async with City.running(settings, T0) as city:
        await contacts(city)
        await city.publish(matched("urn:ngsi-ld:Person:p1", "serious", "inactivity"))
        await city.advance(100)
    async with City.running(settings, T0 + timedelta(seconds=200)) as city:
        alarm = city.active("urn:ngsi-ld:Person:p1", "inactivity")
        assert city.alarms.escalator.pending == 1
        await city.advance(99)
        assert recorded(city, "sms") == []
        await city.advance(1)
        assert [to for to, _ in recorded(city, "sms")] == ["010-1234-5678"]
        assert alarm.escalation["next_step"] == 2
    async with City.running(settings, T0 + timedelta(hours=1)) as city:  # down past the last step: it fires on start
        await city.settle()
        assert [to for to, _ in recorded(city, "sms")] == ["119"]
        assert city.alarms.escalator.pending == 0


async def test_contact_data_is_validated_persisted_and_config_is_read_only(tmp_path: Path) -> None:
    configured = {"notifiers": [{"id": "ops-sms", "type": "sms"}]}
    settings = alarm_settings(tmp_path, **configured)
    async with City.running(settings, T0) as city:
        with pytest.raises(BadRequest, match="unknown references: nobody"):
            await city.collection("escalations", "create", {**CHAIN, "steps": [{"delay_s": 0, "group": "nobody"}]})
        with pytest.raises(BadRequest, match="must not decrease"):
            await city.collection("escalations", "create", {**CHAIN, "steps": [{"delay_s": 9, "group": "g"},
                                                                              {"delay_s": 1, "group": "g"}]})
        with pytest.raises(BadRequest, match="webhook needs"):
            await city.collection("notifiers", "create", {"id": "w", "type": "webhook"})
        with pytest.raises(BadRequest, match="provider"):
            await city.collection("notifiers", "create", {"id": "s", "type": "sms", "provider": "acme"})
        with pytest.raises(ReadOnly):
            await city.collection("notifiers", "put", {"type": "sms"}, "ops-sms")
        assert (await city.collection("recipients", "put", {"members": []}, "duty")).status == 201
        assert (await city.collection("recipients", "put", {"members": [], "name": {"en": "Duty"}}, "duty")).status == 200
        listed = (await city.collection("notifiers", "list")).body
        assert [(n["id"], n["source"], n["sends"]) for n in listed] == [("ops-sms", "configuration", False)]
        assert "nothing is sent" in listed[0]["notice"]["en"]
    async with City.running(settings, T0) as city:
        (group,) = (await city.collection("recipients", "list")).body
        assert (group["id"], group["name"], group["source"]) == ("duty", {"en": "Duty"}, "api")
        assert (await city.collection("recipients", "delete", item_id="duty")).status == 204
        assert (await city.collection("recipients", "list")).body == []


async def test_derived_alarms_escalate_only_with_a_chain_of_their_own(city: City) -> None:
    await contacts(city)
    catch_all = {"id": "any", "steps": [{"delay_s": 0, "group": "care-workers"}]}
    assert (await city.collection("escalations", "create", catch_all)).status == 201
    await city.publish(matched("urn:ngsi-ld:Device:s1", "warning", parent_id="urn:ngsi-ld:Building:b1"))
    assert city.active("urn:ngsi-ld:Building:b1", "derived:safety") is not None
    assert len(recorded(city, "push")) == 1  # the sensor's alarm, not its summary on the building
    own = {"id": "buildings", "rule": "derived:safety", "steps": [{"delay_s": 0, "group": "guardians"}]}
    assert (await city.collection("escalations", "create", own)).status == 201
    await city.publish(matched("urn:ngsi-ld:Device:s2", "serious", parent_id="urn:ngsi-ld:Building:b1"))
    assert [subject for _, subject in recorded(city, "sms")] == [
        "[심각] 경보 격상: derived:safety @ urn:ngsi-ld:Building:b1"]


async def test_the_escalator_never_changes_an_escalation_state_in_place(city: City) -> None:
    """Each change of the state is a new dict (a step moving on, a re-opened alarm resuming): a state that an
    announced change or anyone else holds stays as it was."""
    await contacts(city)
    await city.publish(matched("urn:ngsi-ld:Person:p1", "serious", "inactivity"))  # step 0 fires at once
    alarm = city.active("urn:ngsi-ld:Person:p1", "inactivity")
    first = alarm.escalation
    kept = dict(first)
    await city.advance(300)  # step 1
    assert alarm.escalation is not first and first == kept and alarm.escalation["next_step"] == 2
    second, kept = alarm.escalation, dict(alarm.escalation)
    await city.publish(cleared("urn:ngsi-ld:Person:p1", "inactivity"))
    await city.advance(60)
    await city.publish(matched("urn:ngsi-ld:Person:p1", "serious", "inactivity"))  # re-opened: resumes
    assert alarm.escalation is not second and second == kept
    assert alarm.escalation["started_at"] == "2026-03-02T00:01:00.000000Z"  # step 2 keeps its 600 s from step 1
    assert alarm.escalation["next_step"] == 2

    # The escalator alone (no alarm service copying around it): a step and a resume give the alarm new dicts.
    other = Alarm.from_doc({**alarm.to_doc(), "id": "other", "escalation": None})
    steps: list[int] = []
    escalator = Escalator(city.clock, city.alarms.contacts, lambda _alarm, _chain, index, _step: steps.append(index))
    escalator.begin(other, "raised")  # step 0 is due at once
    begun = other.escalation
    assert steps == [0] and begun is not None and begun["next_step"] == 1
    kept = dict(begun)
    await city.advance(300)
    assert steps == [0, 1] and other.escalation is not begun and begun == kept
    stepped, kept = other.escalation, dict(other.escalation)
    escalator.resume(other)
    assert other.escalation is not stepped and stepped == kept
    escalator.stop_all()
