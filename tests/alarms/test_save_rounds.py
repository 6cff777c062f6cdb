"""Alarms decided together are saved together: the changes queued in one turn of the event loop go to the
store in one `save_alarms` call and are announced in decision order; a failed call is retried alarm by alarm,
so one alarm that cannot be saved fails alone (not announced, logged) and the others are announced; a later
round never announces an alarm's change before an earlier round announced the one before it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.alarms.support import TENANT, City, cleared, matched
from ucity.alarms.service import Signal

SENSORS = [f"urn:ngsi-ld:Device:tilt-{n}" for n in range(40)]


class Saves:
    """Records the store's `save_alarms` calls (alarm ids per call); `hold` makes the next call wait."""

    def __init__(self, city: City) -> None:
        self.calls: list[list[str]] = []
        self.singles: list[str] = []
        self.gate: asyncio.Event | None = None
        store = city.ucity.store
        save_alarms, save_alarm = store.save_alarms, store.save_alarm

        async def bulk(saves: list[Any], docs: Any = ()) -> None:
            self.calls.append([row.id for row, _ in saves])
            gate, self.gate = self.gate, None
            if gate is not None:
                await gate.wait()
            await save_alarms(saves, docs)

        async def single(row: Any, history: list[Any]) -> None:
            self.singles.append(row.id)
            await save_alarm(row, history)

        store.save_alarms = bulk  # type: ignore[method-assign]
        store.save_alarm = single  # type: ignore[method-assign]


def streamed(city: City) -> list[tuple[str, str]]:
    return [(e.event, e.data["entity_id"]) for e in city.alarms.sse.backlog(TENANT, "0")]


async def test_alarms_decided_together_are_saved_by_one_call_and_announced_in_order(city: City) -> None:
    saves = Saves(city)
    bus = city.ucity.platform.bus
    for sensor in SENSORS:  # one step of the event loop: no await lets a save run in between
        city.alarms.raise_signal(Signal.of(matched(entity=sensor, level="caution")))
    await city.settle()
    assert len(saves.calls) == 1 and len(saves.calls[0]) == len(SENSORS)
    assert streamed(city) == [("alarm.raised", sensor) for sensor in SENSORS]
    for sensor in SENSORS:
        await bus.publish(cleared(entity=sensor))
    await city.settle()
    assert streamed(city)[len(SENSORS):] == [("alarm.cleared", sensor) for sensor in SENSORS]
    for sensor in SENSORS:
        alarm = await city.ucity.store.get_alarm(TENANT, city.alarms._cleared[(TENANT, sensor, "tilt")].id)
        assert alarm is not None and alarm["status"] == "cleared-unacknowledged"


async def test_an_alarm_that_cannot_be_saved_fails_alone(city: City, caplog: pytest.LogCaptureFixture) -> None:
    saves = Saves(city)
    store = city.ucity.store
    save_alarms, save_alarm = store.save_alarms, store.save_alarm
    bad = SENSORS[3]

    async def bulk(entries: list[Any], docs: Any = ()) -> None:
        if any(row.entity_id == bad for row, _ in entries):
            raise RuntimeError("row too large")
        await save_alarms(entries, docs)

    async def single(row: Any, history: list[Any]) -> None:
        if row.entity_id == bad:
            raise RuntimeError("row too large")
        await save_alarm(row, history)

    store.save_alarms, store.save_alarm = bulk, single  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="ucity.alarms.service"):
        for sensor in SENSORS[:6]:
            city.alarms.raise_signal(Signal.of(matched(entity=sensor, level="caution")))
        await city.settle()
    # the call failed; each alarm was retried alone, in order (the bad one fails before it reaches the store)
    assert saves.singles == [city.active(entity=s).id for s in SENSORS[:6] if s != bad]
    assert streamed(city) == [("alarm.raised", s) for s in SENSORS[:6] if s != bad]
    bad_id = city.active(entity=bad).id
    assert f"alarm {bad_id} could not be saved: row too large" in caplog.text
    assert await store.get_alarm(TENANT, bad_id) is None
    assert await city.alert(bad_id) is None
    for sensor in SENSORS[:6]:
        if sensor != bad:
            assert await store.get_alarm(TENANT, city.active(entity=sensor).id) is not None
            assert await city.alert(city.active(entity=sensor).id) is not None


async def test_a_later_round_waits_for_the_announcement_of_an_earlier_one(city: City) -> None:
    saves = Saves(city)
    saves.gate = gate = asyncio.Event()  # the first round's save is held
    bus = city.ucity.platform.bus
    await bus.publish(matched(level="caution"))
    for _ in range(20):
        await asyncio.sleep(0)
    await bus.publish(matched(level="serious"))  # the next round: saved at once, announced after the first
    for _ in range(200):
        await asyncio.sleep(0)
    assert len(saves.calls) == 2 and streamed(city) == []
    gate.set()
    await city.settle()
    assert [event for event, _ in streamed(city)] == ["alarm.raised", "alarm.escalated"]


def test_stored_times_are_the_general_parsers() -> None:
    """`iso_micros` (alarm rows, history rows) converts the platform's own time form without the general
    parser; any other form (an offset, no fraction, a year below 1000) still converts as `parse_iso` does."""
    from ucity.core.clock import iso_micros, parse_iso, to_micros

    for text in ("2026-01-01T00:00:01.000000Z", "1999-12-31T23:59:59.999999Z", "2026-03-02T08:00:00+09:00",
                 "2026-01-01T00:00:01Z", "0999-01-01T00:00:00.000000Z", "2026-01-01T00:00:01.5Z"):
        assert iso_micros(text) == to_micros(parse_iso(text)), text
