"""QA4 F3: a rule's match whose alarm a crash lost is raised at the next start. The engine publishes the match
before it writes the state, but the alarm is saved by another commit: a state can hold a match (so the next reading
at that level is a repeat and raises nothing) while the alarm was never saved. At start the engine tells the
alarms which matches its states hold; the alarms raise the missing ones, once, and never one an operator cleared
or closed. A real platform (both stores) on a fake clock; NGSI-LD writes through the store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.alarms.support import T0, TENANT, City, alarm_settings
from tests.rules.support import tilt_rule
from ucity.core.bus import Context
from ucity.ngsild.ops import replace_op
from ucity.store.base import AlarmQuery, Mutation

SENSOR = "urn:ngsi-ld:StructuralSensor:s1"
TILT = "https://uri.etsi.org/ngsi-ld/default-context/tiltX"


async def reading(city: City, tilt: float) -> None:
    doc = {"id": SENSOR, "type": ["https://uri.etsi.org/ngsi-ld/default-context/StructuralSensor"],
           "attrs": {TILT: [{"type": "Property", "value": tilt, "observedAt": city.clock.now().isoformat()}]}}
    (result,) = await city.ucity.store.mutate(TENANT, [Mutation(SENSOR, replace_op(doc, True))], Context())
    assert not isinstance(result, Exception), result
    await city.settle()
    await city.ucity.rules.persist()


async def alarms_of_sensor(city: City) -> list[dict[str, Any]]:
    docs, _ = await city.ucity.store.query_alarms(TENANT, AlarmQuery(entity_ids=(SENSOR,), limit=100))
    return docs


async def test_a_match_whose_alarm_was_lost_raises_it_at_the_next_start(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    settings = alarm_settings(tmp_path)
    async with City.running(settings, T0) as city:
        await city.ucity.rules.create(TENANT, tilt_rule(samples=None))

        async def lost(*args: Any, **kwargs: Any) -> None:  # the process dies before the alarm's commit
            raise OSError("killed")

        city.ucity.store.save_alarms = lost  # type: ignore[method-assign]
        city.ucity.store.save_alarm = lost  # type: ignore[method-assign]
        await reading(city, 0.01)  # beyond 1/150: serious
        states = await city.ucity.store.list_docs("rule-state")
        assert [doc["state"]["level"] for _, _, doc in states] == ["serious"]  # the match is in the state
        assert await alarms_of_sensor(city) == []
    with caplog.at_level(logging.WARNING, logger="ucity.alarms.service"):
        async with City.running(settings, T0) as city:
            await city.settle()
            (alarm,) = await alarms_of_sensor(city)
            assert (alarm["rule_id"], alarm["level"], alarm["status"]) == ("shm-tilt-x", "serious",
                                                                           "active-unacknowledged")
            assert "1 rule match(es) without their alarm" in caplog.text
            await reading(city, 0.0101)  # a repeat at the same level: the same alarm, no second one
            assert len(await alarms_of_sensor(city)) == 1
    async with City.running(settings, T0) as city:  # idempotent: the alarm is there now
        await city.settle()
        assert len(await alarms_of_sensor(city)) == 1


async def test_an_alarm_an_operator_closed_while_the_match_holds_is_not_raised_again(tmp_path: Path) -> None:
    settings = alarm_settings(tmp_path)
    async with City.running(settings, T0) as city:
        await city.ucity.rules.create(TENANT, tilt_rule(samples=None))
        await reading(city, 0.01)
        alarm = city.active(SENSOR, "shm-tilt-x")
        assert alarm is not None
        await city.act(alarm.id, "acknowledge")
        closed = await city.act(alarm.id, "close", {"outcome": "false-device", "note": "센서 교체 중"})
        assert closed.status == 200, closed.body
    async with City.running(settings, T0) as city:
        await city.settle()
        (only,) = await alarms_of_sensor(city)
        assert only["status"] == "closed" and city.active(SENSOR, "shm-tilt-x") is None
