"""The Alerts of alarms that change together are written together (at most `_ALERT_WRITE` per store write),
each one still whole, in its alarm's order, and a failed write fails each of its Alerts on its own."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.alarms.support import TENANT, City, cleared, matched
from ucity.alarms.alert import alert_doc
from ucity.alarms.service import _ALERT_WRITE
from ucity.core.bus import Context
from ucity.store.base import Mutation, Outcome

ALERT = "urn:ngsi-ld:Alert:"
SENSORS = [f"urn:ngsi-ld:Device:tilt-{n}" for n in range(2 * _ALERT_WRITE + 6)]
SYSTEM_MEMBERS = ("createdAt", "modifiedAt")


def content(attrs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [{k: v for k, v in i.items() if k not in SYSTEM_MEMBERS} for i in instances]
            for name, instances in attrs.items()}


class AlertWrites:
    """Records the Alert writes (entity ids, context) and holds them at a gate until it opens."""

    def __init__(self, city: City, fail: bool = False) -> None:
        self.writes: list[tuple[list[str], Context]] = []
        self.gate = asyncio.Event()
        self.fail = fail
        store = city.ucity.store
        mutate = store.mutate

        async def recorded(tenant: str, mutations: list[Mutation], context: Context) -> list[Outcome | Exception]:
            if any(m.entity_id.startswith(ALERT) for m in mutations):
                self.writes.append(([m.entity_id for m in mutations], context))
                await self.gate.wait()
                if self.fail:
                    return [RuntimeError("disk full")]  # one answer for the whole write
            return await mutate(tenant, mutations, context)

        store.mutate = recorded  # type: ignore[method-assign]


async def announced(city: City, count: int) -> None:
    """Until `count` events are on the stream (each alarm queues its Alert right after its event)."""
    for _ in range(10_000):
        if len(city.alarms.sse.backlog(TENANT, "0")) >= count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{len(city.alarms.sse.backlog(TENANT, '0'))} of {count} events announced")


async def test_alerts_that_queue_together_are_written_together_each_whole(city: City) -> None:
    writes = AlertWrites(city)
    bus = city.ucity.platform.bus
    for sensor in SENSORS:
        await bus.publish(matched(entity=sensor, level="warning"))
    await announced(city, len(SENSORS))  # every alarm saved and announced; the Alert writes are held
    writes.gate.set()
    await city.settle()

    sizes = [len(ids) for ids, _ in writes.writes]
    assert sum(sizes) == len(SENSORS) and max(sizes) <= _ALERT_WRITE
    assert len(sizes) < len(SENSORS)  # the alarms saved by one commit write their Alerts together
    alarms = [city.active(entity=sensor) for sensor in SENSORS]
    for alarm in alarms:
        doc = await city.alert(alarm.id)
        assert doc is not None and content(doc["attrs"]) == content(alert_doc(alarm)["attrs"])
    lone_ids, lone_context = writes.writes[0]
    if len(lone_ids) == 1:  # a lone Alert keeps its change's trace to the rule event
        [first] = [a for a in alarms if a.alert_id == lone_ids[0]]
        assert lone_context.parent_id == first.cause

    writes.writes.clear()
    for sensor in SENSORS:
        await bus.publish(cleared(entity=sensor))
    await city.settle()
    assert sum(len(ids) for ids, _ in writes.writes) == len(SENSORS)
    for alarm in alarms:
        doc = await city.alert(alarm.id)
        assert alarm.status == "cleared-unacknowledged"
        assert doc is not None and content(doc["attrs"]) == content(alert_doc(alarm)["attrs"])


async def test_a_failed_write_fails_each_of_its_alerts_and_their_next_change_writes_them_whole(
        city: City, caplog: pytest.LogCaptureFixture) -> None:
    writes = AlertWrites(city, fail=True)
    bus = city.ucity.platform.bus
    with caplog.at_level(logging.ERROR, logger="ucity.alarms.service"):
        for sensor in SENSORS[:5]:
            await bus.publish(matched(entity=sensor, level="warning"))
        await announced(city, 5)
        writes.gate.set()
        await city.settle()
    alarms = [city.active(entity=sensor) for sensor in SENSORS[:5]]
    for alarm in alarms:
        assert await city.alert(alarm.id) is None and alarm.alert_written is None
        assert f"Alert entity of alarm {alarm.id} not written: disk full" in caplog.text

    writes.fail = False
    for sensor in SENSORS[:5]:
        await bus.publish(matched(entity=sensor, level="serious"))
    await city.settle()
    for alarm in alarms:
        doc = await city.alert(alarm.id)
        assert doc is not None and content(doc["attrs"]) == content(alert_doc(alarm)["attrs"])
        assert alarm.alert_written is not None


async def test_an_alert_that_cannot_be_made_fails_alone_in_a_shared_write(
        city: City, caplog: pytest.LogCaptureFixture) -> None:
    writes = AlertWrites(city)
    bus = city.ucity.platform.bus
    bad = {"type": "Point", "coordinates": "nowhere"}  # not GeoJSON: its Alert is refused, its alarm is not
    with caplog.at_level(logging.ERROR, logger="ucity.alarms.service"):
        for n, sensor in enumerate(SENSORS[:6]):
            await bus.publish(matched(entity=sensor, level="warning", location=bad if n == 3 else None))
        await announced(city, 6)
        writes.gate.set()
        await city.settle()
    alarms = [city.active(entity=sensor) for sensor in SENSORS[:6]]
    assert f"Alert entity of alarm {alarms[3].id} not written" in caplog.text
    assert await city.alert(alarms[3].id) is None
    for alarm in alarms[:3] + alarms[4:]:
        doc = await city.alert(alarm.id)
        assert doc is not None and content(doc["attrs"]) == content(alert_doc(alarm)["attrs"])
    assert sum(len(ids) for ids, _ in writes.writes) == 5 and any(len(ids) > 1 for ids, _ in writes.writes)
