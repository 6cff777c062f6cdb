"""The order of an alarm's consequences: its row is committed before anyone hears of it; the stream,
notifications and parent alarms do not wait for its `Alert` entity (nor for the Alerts of earlier changes),
which follows (or fails) on its own; `AlarmChanged` consumers (the operations centre) see the alarm once its
Alert is written, one alarm's changes in order."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.alarms.support import SENSOR, TENANT, City, gate_alert_writes, matched
from ucity.alarms import AlarmChanged


class Recorder:
    """What happened, in order: `saved` (an alarm row committed), `sse:<event>`, `changed:<event>`."""

    def __init__(self, city: City) -> None:
        self.log: list[str] = []
        self.announced = asyncio.Event()
        hub = city.alarms.sse
        publish = hub.publish

        def record_sse(tenant: str, event: str, data: dict[str, Any]) -> Any:
            self.log.append(f"sse:{event}")
            self.announced.set()
            return publish(tenant, event, data)

        hub.publish = record_sse
        store = city.ucity.store
        save_alarms = store.save_alarms

        async def record_save(saves: list[Any], docs: Any = ()) -> None:
            await save_alarms(saves, docs)
            self.log.extend("saved" for _ in saves)

        store.save_alarms = record_save  # type: ignore[method-assign]

        async def on_changed(event: AlarmChanged) -> None:
            self.log.extend(f"changed:{name}" for name in event.events)

        city.ucity.platform.bus.subscribe(AlarmChanged, on_changed)


async def test_the_stream_does_not_wait_for_the_alert_entity(city: City) -> None:
    recorder = Recorder(city)
    gate = gate_alert_writes(city)
    await city.ucity.platform.bus.publish(matched(level="warning"))
    await asyncio.wait_for(recorder.announced.wait(), 10)  # while the Alert write is held at the gate
    alarm = city.active()
    stored = await city.ucity.store.get_alarm(TENANT, alarm.id)
    assert stored is not None and stored["status"] == "active-unacknowledged"
    assert await city.alert(alarm.id) is None
    assert recorder.log == ["saved", "sse:raised"]
    [streamed] = city.alarms.sse.backlog(TENANT, "0")
    assert (streamed.event, streamed.data["id"], streamed.data["entity_id"]) == ("alarm.raised", alarm.id, SENSOR)

    gate.set()
    await city.settle()
    alert = await city.alert(alarm.id)
    assert alert is not None and alert["id"] == alarm.alert_id
    assert recorder.log == ["saved", "sse:raised", "changed:raised"]  # consumers: after the Alert


async def test_an_alarm_is_announced_even_if_its_alert_entity_cannot_be_written(
        city: City, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(city)
    gate = gate_alert_writes(city, lambda: [RuntimeError("disk full")])
    gate.set()
    with caplog.at_level(logging.ERROR, logger="ucity.alarms.service"):
        await city.publish(matched(level="warning"))
    alarm = city.active()
    assert recorder.log == ["saved", "sse:raised", "changed:raised"]
    assert await city.ucity.store.get_alarm(TENANT, alarm.id) is not None
    assert await city.alert(alarm.id) is None
    assert f"Alert entity of alarm {alarm.id} not written: disk full" in caplog.text

    await city.publish(matched(level="serious"))  # the next change writes the whole Alert again
    assert recorder.log[3:] == ["saved", "sse:escalated", "changed:escalated"]


async def test_nobody_hears_of_an_alarm_before_its_row_is_committed(city: City) -> None:
    recorder = Recorder(city)
    store = city.ucity.store
    save_alarms = store.save_alarms  # the recorder's: it logs "saved" once the real save returned
    gate = asyncio.Event()

    async def slow_save(*args: Any) -> None:
        await gate.wait()
        await save_alarms(*args)

    store.save_alarms = slow_save  # type: ignore[method-assign]
    await city.ucity.platform.bus.publish(matched(level="warning"))
    alarm = city.active()  # decided at once, in memory
    for _ in range(20):  # let every task that could run, run
        await asyncio.sleep(0)
    assert recorder.log == [] and city.alarms.sse.backlog(TENANT, "0") == []
    assert await store.get_alarm(TENANT, alarm.id) is None
    gate.set()
    await city.settle()
    assert recorder.log == ["saved", "sse:raised", "changed:raised"]


async def test_an_alarm_that_cannot_be_saved_is_not_announced(city: City) -> None:
    recorder = Recorder(city)

    async def failing_save(*args: Any) -> None:
        raise RuntimeError("database is locked")

    city.ucity.store.save_alarms = failing_save  # type: ignore[method-assign]
    await city.publish(matched(level="warning"))
    assert recorder.log == [] and city.alarms.sse.backlog(TENANT, "0") == []
    assert await city.alert(city.active().id) is None


async def test_one_alarms_changes_reach_the_stream_in_order_while_its_alert_lags(city: City) -> None:
    recorder = Recorder(city)
    gate = gate_alert_writes(city)
    bus = city.ucity.platform.bus
    await bus.publish(matched(level="caution"))
    await asyncio.wait_for(recorder.announced.wait(), 10)
    await bus.publish(matched(level="serious"))
    for _ in range(10_000):  # the escalation is saved and announced while the first Alert write is held
        if recorder.log[-1:] == ["sse:escalated"]:
            break
        await asyncio.sleep(0.001)
    assert recorder.log == ["saved", "sse:raised", "saved", "sse:escalated"]
    # AlarmChanged follows each Alert, in the alarm's order.
    gate.set()
    await city.settle()
    assert recorder.log == ["saved", "sse:raised", "saved", "sse:escalated", "changed:raised", "changed:escalated"]
    alert = await city.alert(city.active().id)
    assert alert is not None
    assert alert["attrs"]["https://uri.etsi.org/ngsi-ld/default-context/level"][0]["value"] == "serious"
