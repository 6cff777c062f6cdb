"""The Alert projection waits for quiet: an announced change's `Alert` write (and its `AlarmChanged`) waits
until no alarm change has been decided for `alert_quiet_s`, at most `alert_delay_s` after the oldest change
waiting, then writes what gathered, each alarm's Alert once, as `alert_entity(alarm)`; an operator's action
does not wait; `drain` (shutdown) writes what waits at once.

The wait runs on `AlarmService.alert_clock` (real time in service); these tests give it the city's fake
clock, so that what has or has not been written yet is known exactly, whatever the machine's speed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.alarms.support import SENSOR, T0, City, alarm_settings, cleared, gate_alert_writes, matched
from tests.alarms.test_alert_batch import announced
from ucity.alarms import AlarmChanged
from ucity.alarms.alert import alert_doc
from ucity.alarms.service import _ALERT_WRITE, Signal
from ucity.core.bus import Context
from ucity.ngsild.context import core_context
from ucity.store.base import Mutation, Outcome

ALERT = "urn:ngsi-ld:Alert:"
SYSTEM_MEMBERS = ("createdAt", "modifiedAt", "instanceId")


def iri(name: str) -> str:
    return core_context().expand_term(name)


def content(attrs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [{k: v for k, v in i.items() if k not in SYSTEM_MEMBERS} for i in instances]
            for name, instances in attrs.items()}


class Log:
    """Alert writes (entity ids per store write) and `AlarmChanged` events, in the order they happened; the
    Alert projection waits on the city's fake clock."""

    def __init__(self, city: City) -> None:
        city.alarms.alert_clock = city.clock
        self.entries: list[tuple[str, Any]] = []
        store = city.ucity.store
        mutate = store.mutate

        async def recorded(tenant: str, mutations: list[Mutation], context: Context) -> list[Outcome | Exception]:
            results = await mutate(tenant, mutations, context)
            ids = [m.entity_id for m in mutations if m.entity_id.startswith(ALERT)]
            if ids:
                self.entries.append(("alerts", ids))
            return results

        store.mutate = recorded  # type: ignore[method-assign]

        async def on_changed(event: AlarmChanged) -> None:
            self.entries.append(("changed", (event.alarm["entity_id"], event.events)))

        city.ucity.platform.bus.subscribe(AlarmChanged, on_changed)

    @property
    def writes(self) -> list[list[str]]:
        return [ids for kind, ids in self.entries if kind == "alerts"]


async def until(condition: Any) -> None:
    """Let tasks run until `condition()` holds (no time is measured: the clock is a fake one)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("never happened")


async def idle(city: City) -> None:
    """Let every task that can run, run (store commits included), without moving the clock."""
    await city.ucity.publisher.drain()
    for _ in range(50):
        await asyncio.sleep(0.001)


async def test_the_alert_waits_for_quiet_then_is_written(city: City) -> None:
    log = Log(city)
    await city.ucity.platform.bus.publish(matched(level="warning"))
    await announced(city, 1)
    await idle(city)
    alarm = city.active()
    assert log.entries == [] and await city.alert(alarm.id) is None  # announced; its Alert waits
    assert city.alarms.health()["alertsWaiting"] == 1

    city.clock.advance(city.alarms.alert_quiet_s)  # no alarm change since: quiet
    await until(lambda: log.entries[-1:] == [("changed", (SENSOR, ("raised",)))])
    assert log.entries == [("alerts", [alarm.alert_id]), ("changed", (SENSOR, ("raised",)))]
    doc = await city.alert(alarm.id)
    assert doc is not None and content(doc["attrs"]) == content(alert_doc(alarm)["attrs"])
    assert city.alarms.health()["alertsWaiting"] == 0


async def test_alerts_wait_no_longer_than_the_delay_while_alarms_keep_coming(city: City) -> None:
    log = Log(city)
    bus = city.ucity.platform.bus
    service = city.alarms
    step = service.alert_quiet_s / 2  # never quiet: a new alarm every half quiet time
    sensors = [f"urn:ngsi-ld:Device:tilt-{n}" for n in range(int(service.alert_delay_s / step) + 4)]
    began_at: list[int] = []  # in steps: when the writing task began (on the fake clock, not when its write ended)
    for n, sensor in enumerate(sensors):
        await bus.publish(matched(entity=sensor, level="warning"))
        await announced(city, n + 1)
        await idle(city)
        city.clock.advance(step)
        if service._alert_task is not None and not began_at:
            began_at.append(n + 1)
    # The first alarm's Alert began to be written once it had waited the delay, while alarms still came.
    assert began_at == [round(service.alert_delay_s / step)] and began_at[0] < len(sensors)
    await until(lambda: bool(log.writes))
    assert city.active(entity=sensors[0]).alert_id in log.writes[0]
    await city.settle()
    for sensor in sensors:  # every Alert whole, each written once
        alarm = city.active(entity=sensor)
        doc = await city.alert(alarm.id)
        assert doc is not None and content(doc["attrs"]) == content(alert_doc(alarm)["attrs"])
    assert sorted(i for ids in log.writes for i in ids) == sorted(city.active(entity=s).alert_id for s in sensors)


async def test_an_alarm_raised_and_cleared_while_its_alert_waits_writes_it_once(city: City) -> None:
    log = Log(city)
    bus = city.ucity.platform.bus
    await bus.publish(matched(level="warning"))
    await announced(city, 1)
    alarm = city.active()
    await bus.publish(cleared())
    await announced(city, 2)
    await idle(city)
    assert log.entries == []
    city.clock.advance(city.alarms.alert_quiet_s)
    await until(lambda: len(log.entries) == 3)
    # One write, the Alert as the alarm ends (cleared, with validTo); then each change's event, in order.
    assert log.entries == [("alerts", [alarm.alert_id]), ("changed", (SENSOR, ("raised",))),
                           ("changed", (SENSOR, ("cleared",)))]
    doc = await city.alert(alarm.id)
    assert alarm.status == "cleared-unacknowledged"
    assert doc is not None and content(doc["attrs"]) == content(alert_doc(alarm)["attrs"])


async def test_an_operators_action_does_not_wait_for_quiet(city: City) -> None:
    city.alarms.alert_clock = city.clock
    await city.publish(matched(level="warning"))
    alarm = city.active()
    resp = await city.call("acknowledge", "POST", f"/api/v1/alarms/{alarm.id}/acknowledge", None,
                           {"x-ucity-actor": "operator-kim"}, alarmId=alarm.id)  # no settle, no clock moved
    assert resp.status == 200
    doc = await city.alert(alarm.id)
    assert doc is not None
    assert doc["attrs"][iri("status")][0]["value"] == "active-acknowledged"


async def test_drain_and_shutdown_write_the_alerts_that_wait(tmp_path: Path) -> None:
    settings = alarm_settings(tmp_path)
    async with City.running(settings, T0) as city:
        log = Log(city)
        await city.ucity.platform.bus.publish(matched(level="warning"))
        await announced(city, 1)
        await idle(city)
        assert log.entries == []
        await city.alarms.drain()  # the clock has not moved: drain does not wait for quiet
        alarm = city.active()
        assert log.entries == [("alerts", [alarm.alert_id]), ("changed", (SENSOR, ("raised",)))]

        await city.ucity.platform.bus.publish(cleared())
        await announced(city, 2)
        await idle(city)
        assert len(log.entries) == 2  # the clear's Alert waits ... and the shutdown writes it
    async with City.running(settings, T0) as city:
        doc = await city.alert(alarm.id)
        assert doc is not None
        assert doc["attrs"][iri("status")][0]["value"] == \
            "cleared-unacknowledged"
        assert iri("validTo") in doc["attrs"]


async def test_in_service_the_wait_is_real_time_not_the_platform_clock(city: City) -> None:
    """A fake platform clock that never moves (a test, a simulation) does not hold the Alert back."""
    await city.ucity.platform.bus.publish(matched(level="warning"))
    await announced(city, 1)
    alarm = city.active()
    for _ in range(10_000):  # nothing drains, the fake clock stays where it is
        if alarm.alert_written is not None:
            break
        await asyncio.sleep(0.001)
    doc = await city.alert(alarm.id)
    assert doc is not None and content(doc["attrs"]) == content(alert_doc(alarm)["attrs"])


async def test_a_writing_task_pauses_while_alarms_come_again_and_goes_on_when_quiet(city: City) -> None:
    log = Log(city)
    store = city.ucity.store
    recorded = store.mutate
    gate = asyncio.Event()

    async def gated(tenant: str, mutations: list[Mutation], context: Context) -> list[Outcome | Exception]:
        await gate.wait()
        return await recorded(tenant, mutations, context)

    store.mutate = gated  # type: ignore[method-assign]
    service = city.alarms
    sensors = [f"urn:ngsi-ld:Device:tilt-{n}" for n in range(2 * _ALERT_WRITE + 1)]
    for sensor in sensors:  # one round: three Alert writes
        service.raise_signal(Signal.of(matched(entity=sensor, level="warning")))
    await announced(city, len(sensors))
    city.clock.advance(service.alert_quiet_s)  # quiet: the task starts, its first write waits at the gate
    await until(lambda: service._alert_task is not None)
    await city.ucity.platform.bus.publish(matched(entity="urn:ngsi-ld:Device:late", level="warning"))
    await announced(city, len(sensors) + 1)  # a new round began: the storm goes on
    gate.set()
    await until(lambda: len(log.writes) == 1)
    await idle(city)
    assert [len(ids) for ids in log.writes] == [_ALERT_WRITE]  # paused after its first write

    city.clock.advance(service.alert_quiet_s)  # quiet again: the rest, then the late alarm's
    await until(lambda: len(log.writes) == 4)
    assert [len(ids) for ids in log.writes] == [_ALERT_WRITE, _ALERT_WRITE, 1, 1]
    assert log.writes[3] == [city.active(entity="urn:ngsi-ld:Device:late").alert_id]


async def test_a_pause_ends_at_the_delay_or_when_drained(city: City) -> None:
    log = Log(city)
    service = city.alarms
    bus = city.ucity.platform.bus
    gate = gate_alert_writes(city)
    sensors = [f"urn:ngsi-ld:Device:tilt-{n}" for n in range(3 * _ALERT_WRITE)]
    for sensor in sensors:
        service.raise_signal(Signal.of(matched(entity=sensor, level="warning")))
    await announced(city, len(sensors))
    city.clock.advance(service.alert_quiet_s)  # quiet: the task starts, its first write waits at the gate
    await until(lambda: service._alert_task is not None)
    # Alarms come again before the first write ends (not: before the test's next poll happens to run, which
    # lost to the second write under load), so the task pauses after it, whenever the write ends.
    await bus.publish(matched(entity="urn:ngsi-ld:Device:more-first", level="warning"))
    await announced(city, len(sensors) + 1)
    gate.set()
    await until(lambda: len(log.writes) >= 1)
    step, n = service.alert_quiet_s / 2, 1
    waited = service.alert_quiet_s
    while waited + step < service.alert_delay_s:  # alarms keep coming: never quiet, the task pauses
        await bus.publish(matched(entity=f"urn:ngsi-ld:Device:more-{n}", level="warning"))
        n += 1
        await idle(city)
        city.clock.advance(step)
        waited += step
    assert [len(ids) for ids in log.writes] == [_ALERT_WRITE]  # paused after its first write, till now
    city.clock.advance(service.alert_delay_s)  # the oldest change has waited the delay: no more pausing
    await until(lambda: len(log.writes) >= 3)
    assert sorted(i for ids in log.writes[:3] for i in ids) == sorted(city.active(entity=s).alert_id for s in sensors)
    await service.drain()  # and drain writes the rest at once
    assert sum(len(ids) for ids in log.writes) == len(sensors) + n
