"""Device health and its device-offline alarm after a crash (a real platform on a fake clock, both backends).

A `deviceState` is committed before its `DeviceStatusChanged` goes out and the alarm it causes is saved. A
process killed in between leaves the state without the alarm's change; the next start took the stored state
as announced, so the alarm was never raised (offline) or never cleared (online). The crash is simulated by
writing the state (and, for the online case, the report) straight to the store while no ucity runs; the next
start reconciles, and a start after it changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.test_health import ENTITY, START, make_settings, measure, provision, settle, state
from ucity.alarms.model import CLOSED
from ucity.app import Ucity
from ucity.core.bus import Context
from ucity.core.clock import FakeClock, to_iso
from ucity.core.errors import Unavailable
from ucity.ingest.model import DeviceProfile
from ucity.ingest.writer import MeasureWriter, attrs_op
from ucity.store.base import AlarmQuery

RULE = "device-offline"
pytestmark = pytest.mark.usefixtures("store_backend")


async def start(tmp_path: Path, clock: FakeClock) -> Ucity:
    app = Ucity(make_settings(tmp_path), clock=clock)
    await app.start()
    await settle(app)
    await app.alarms.drain()
    return app


async def first_run(tmp_path: Path, clock: FakeClock) -> DeviceProfile:
    """p1 provisioned and reporting once at START; returns its profile."""
    app = await start(tmp_path, clock)
    try:
        await provision(app, [{"device_id": "p1"}])
        await measure(app, "p1", {"o": True})
        await settle(app)
        profile = next(p for p in app.ingest.registry.profiles() if p.device_id == "p1")
    finally:
        await app.stop()
    return profile


async def write_behind_ucity(tmp_path: Path, clock: FakeClock, profile: DeviceProfile,
                             attrs: dict[str, dict[str, Any]]) -> None:
    """What the killed process committed, and nothing after it: a write straight to the store."""
    app = Ucity(make_settings(tmp_path), clock=clock)
    await app.store.start()
    try:
        result = await MeasureWriter(app.store, clock).apply(profile, attrs_op(attrs), Context(actor="crash"))
        assert not isinstance(result, Exception), result
    finally:
        await app.store.stop()


async def offline_alarms(app: Ucity) -> list[dict[str, Any]]:
    docs, _ = await app.store.query_alarms("guro", AlarmQuery(rule_ids=(RULE,), limit=100))
    return docs


async def test_an_offline_state_whose_alarm_was_lost_is_alarmed_at_start_once(tmp_path: Path) -> None:
    clock = FakeClock(START)
    profile = await first_run(tmp_path, clock)
    clock.advance(180)  # p1's deadline: it went offline, the state was committed, then the process died
    went_offline = to_iso(clock.now())
    await write_behind_ucity(tmp_path, clock, profile,
                             {"deviceState": {"type": "Property", "value": "offline", "observedAt": went_offline}})
    clock.advance(3600)

    second = await start(tmp_path, clock)
    try:
        alarm = second.alarms.active_alarm("guro", ENTITY, RULE)
        assert alarm is not None and alarm.raised_at == went_offline  # the transition's own time
        assert alarm.evidence["last_reported"] == to_iso(START) and alarm.count == 1
        assert second.ingest.monitor.get("guro", "p1").status == "offline"  # type: ignore[union-attr]
        (stored,) = await offline_alarms(second)
        assert stored["id"] == alarm.id and stored["raised_at"] == went_offline
    finally:
        await second.stop()

    clock.advance(60)
    third = await start(tmp_path, clock)  # idempotent: the same alarm, not repeated
    try:
        again = third.alarms.active_alarm("guro", ENTITY, RULE)
        assert again is not None and again.id == alarm.id and again.count == 1
        assert len(await offline_alarms(third)) == 1
    finally:
        await third.stop()


async def test_an_online_state_whose_clear_was_lost_clears_the_alarm_at_start_once(tmp_path: Path) -> None:
    clock = FakeClock(START)
    app = await start(tmp_path, clock)
    try:
        await provision(app, [{"device_id": "p1"}])
        await measure(app, "p1", {"o": True})
        clock.advance(180)  # offline, alarmed, as usual
        await settle(app)
        await app.alarms.drain()
        alarm = app.alarms.active_alarm("guro", ENTITY, RULE)
        assert alarm is not None
        profile = next(p for p in app.ingest.registry.profiles() if p.device_id == "p1")
    finally:
        await app.stop()
    clock.advance(60)  # p1 reports (state online in the same write), then the process dies before the clear
    back = to_iso(clock.now())
    await write_behind_ucity(tmp_path, clock, profile, {
        "occupied": {"type": "Property", "value": False, "observedAt": back},
        "deviceState": {"type": "Property", "value": "online", "observedAt": back}})
    clock.advance(10)

    second = await start(tmp_path, clock)
    try:
        assert second.ingest.monitor.get("guro", "p1").status == "online"  # type: ignore[union-attr]
        assert second.alarms.active_alarm("guro", ENTITY, RULE) is None
        (stored,) = await offline_alarms(second)
        assert stored["id"] == alarm.id and stored["status"] == "cleared-unacknowledged", stored["status"]
        history = await second.store.alarm_history("guro", alarm.id)
    finally:
        await second.stop()

    third = await start(tmp_path, clock)
    try:
        assert third.alarms.active_alarm("guro", ENTITY, RULE) is None
        (stored,) = await offline_alarms(third)
        assert stored["status"] == "cleared-unacknowledged"
        assert len(await third.store.alarm_history("guro", alarm.id)) == len(history)  # nothing added
        assert (await state(third))[0] == "online"
    finally:
        await third.stop()


@pytest.mark.parametrize("action", ["clear", "close"])
async def test_an_alarm_an_operator_ended_while_the_device_stays_offline_is_not_raised_again(
        tmp_path: Path, action: str) -> None:
    """The offline spell was announced; the operator's clear or close stands across restarts."""
    clock = FakeClock(START)
    app = await start(tmp_path, clock)
    try:
        await provision(app, [{"device_id": "p1"}])
        await measure(app, "p1", {"o": True})
        clock.advance(180)
        await settle(app)
        await app.alarms.drain()
        alarm = app.alarms.active_alarm("guro", ENTITY, RULE)
        assert alarm is not None
        if action == "close":
            await app.alarms.act("guro", alarm.id, "acknowledge", "operator")
            await app.alarms.act("guro", alarm.id, "close", "operator", outcome="false-device")
        else:
            await app.alarms.act("guro", alarm.id, "clear", "operator")
        await app.alarms.drain()
    finally:
        await app.stop()
    for _ in range(2):
        clock.advance(3600)
        again = await start(tmp_path, clock)
        try:
            assert again.ingest.monitor.get("guro", "p1").status == "offline"  # type: ignore[union-attr]
            assert again.alarms.active_alarm("guro", ENTITY, RULE) is None
            assert [d["id"] for d in await offline_alarms(again)] == [alarm.id]
        finally:
            await again.stop()


async def test_a_device_the_restore_sets_offline_is_alarmed_by_its_own_event_only(tmp_path: Path) -> None:
    """Down past p1's deadline with its state online: the restore keeps it online (silence counts only while
    ucity listens, QA12 F3; the reconciliation sees an online device without an alarm) and, silent for 3
    intervals after the start, it is announced offline; the reconciliation does not raise it a second time
    (that would count a repeat)."""
    clock = FakeClock(START)
    await first_run(tmp_path, clock)
    clock.advance(600)
    second = await start(tmp_path, clock)
    try:
        assert second.alarms.active_alarm("guro", ENTITY, RULE) is None
        clock.advance(180)
        await settle(second)
        await second.alarms.drain()
        alarm = second.alarms.active_alarm("guro", ENTITY, RULE)
        assert alarm is not None and alarm.count == 1 and alarm.raised_at == to_iso(clock.now())
        assert len(await offline_alarms(second)) == 1
    finally:
        await second.stop()


async def test_when_closed_alarms_cannot_be_read_the_lost_alarm_is_raised(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A duplicate is better than a lost alarm: the store failing the closed-alarm look-up raises it anyway."""
    clock = FakeClock(START)
    profile = await first_run(tmp_path, clock)
    clock.advance(timedelta(seconds=200))
    await write_behind_ucity(tmp_path, clock, profile,
                             {"deviceState": {"type": "Property", "value": "offline", "observedAt": to_iso(clock.now())}})
    second = Ucity(make_settings(tmp_path), clock=clock)

    reads = second.store.query_alarms

    async def failing(tenant: str, query: AlarmQuery) -> Any:
        if CLOSED in query.statuses:  # the closed-alarm look-up (other start-up reads, e.g. a migration's, succeed)
            raise Unavailable("the database is unreachable")
        return await reads(tenant, query)

    second.store.query_alarms = failing  # type: ignore[method-assign]
    await second.start()
    try:
        await settle(second)
        await second.alarms.drain()
        assert second.alarms.active_alarm("guro", ENTITY, RULE) is not None
        assert "could not be read" in caplog.text
    finally:
        await second.stop()
