"""Device health across a restart (QA12 F3): silence is counted only while ucity listens (a real platform on a
fake clock, both backends).

A short maintenance stop used to judge, at start, every device whose 3 intervals ran out while ucity was down:
all offline at once, before they could report, a storm of false device-offline alarms. Now a device is judged
offline once silent for its threshold since max(its last report, the start); one stored offline stays offline
with its one alarm.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.test_health import ENTITY, START, make_settings, measure, provision, settle, state
from tests.ingest.test_health_reconcile import offline_alarms, write_behind_ucity
from ucity.app import Ucity
from ucity.core.clock import FakeClock, to_iso
from ucity.ingest import DeviceStatusChanged

RULE = "device-offline"
DOWN = 600  # 10 minutes down: more than 3 intervals of 60 s (ParkingSpot)
pytestmark = pytest.mark.usefixtures("store_backend")


def entity(device: str) -> str:
    return f"urn:ngsi-ld:ParkingSpot:{device}"


async def started(tmp_path: Path, clock: FakeClock) -> tuple[Ucity, list[DeviceStatusChanged]]:
    events: list[DeviceStatusChanged] = []

    async def collect(event: DeviceStatusChanged) -> None:
        events.append(event)

    app = Ucity(make_settings(tmp_path), clock=clock)
    app.platform.bus.subscribe(DeviceStatusChanged, collect)
    await app.start()
    await quiet(app)
    return app, events


async def quiet(app: Ucity) -> None:
    await settle(app)
    await app.alarms.drain()


async def first_run(tmp_path: Path, clock: FakeClock, devices: list[dict[str, Any]]) -> None:
    """The devices provisioned, each reporting once now; then ucity stops."""
    app, _ = await started(tmp_path, clock)
    try:
        await provision(app, devices)
        for device in devices:
            await measure(app, device["device_id"], {"o": True})
        await quiet(app)
    finally:
        await app.stop()


def statuses(app: Ucity, *devices: str) -> list[str]:
    return [app.ingest.monitor.get("guro", d).status for d in devices]  # type: ignore[union-attr]


async def test_devices_reporting_after_a_restart_raise_no_offline_alarm(tmp_path: Path) -> None:
    clock = FakeClock(START)
    await first_run(tmp_path, clock, [{"device_id": f"p{k}"} for k in range(1, 4)])
    clock.advance(DOWN)
    app, events = await started(tmp_path, clock)
    try:
        assert events == [] and statuses(app, "p1", "p2", "p3") == ["online"] * 3  # not judged at start
        # the summary says since when silence counts (a device online with an old lastReported is in its grace)
        assert app.ingest.monitor.summary("guro")["listeningSince"] == to_iso(clock.now())
        assert (await offline_alarms(app)) == []
        clock.advance(10)
        await measure(app, "p1", {"o": False})  # soon (it kept retrying while ucity was down)
        clock.advance(50)
        await measure(app, "p2", {"o": False})  # at its next interval
        clock.advance(119)
        await measure(app, "p3", {"o": False})  # the last second of its threshold after the start
        await quiet(app)
        clock.advance(1)  # the start + 3 intervals: all reported since
        await quiet(app)
        assert events == [] and statuses(app, "p1", "p2", "p3") == ["online"] * 3
        assert (await offline_alarms(app)) == []
        assert app.ingest.monitor.summary("guro")["counts"] == {"online": 3, "offline": 0, "unknown": 0}
    finally:
        await app.stop()


async def test_a_device_silent_after_the_restart_is_offline_after_its_threshold_once(tmp_path: Path) -> None:
    clock = FakeClock(START)
    await first_run(tmp_path, clock, [{"device_id": "p1"}, {"device_id": "slow", "expected_interval_s": 600}])
    clock.advance(DOWN)
    restarted = clock.now()
    app, events = await started(tmp_path, clock)
    try:
        clock.advance(179)
        await quiet(app)
        assert events == [] and app.alarms.active_alarm("guro", ENTITY, RULE) is None
        clock.advance(1)  # silent for 3 intervals since the start
        await quiet(app)
        assert [(e.device_id, e.status, e.last_reported) for e in events] == [("p1", "offline", to_iso(START))]
        alarm = app.alarms.active_alarm("guro", ENTITY, RULE)
        assert alarm is not None and alarm.count == 1 and alarm.raised_at == to_iso(clock.now())
        assert alarm.evidence["last_reported"] == to_iso(START)  # its real last report, not the start
        assert await state(app) == ("offline", to_iso(clock.now()))
        # every device its own threshold: "slow" (600 s, offline after 1,800 s) had 1,200 s left at the stop
        # and gets 1,800 s from the start
        assert statuses(app, "slow") == ["online"]
        clock.advance(restarted + timedelta(seconds=1799) - clock.now())
        await quiet(app)
        assert len(events) == 1
        clock.advance(1)
        await quiet(app)
        assert [(e.device_id, e.status) for e in events] == [("p1", "offline"), ("slow", "offline")]
        assert len(await offline_alarms(app)) == 2
    finally:
        await app.stop()

    clock.advance(DOWN)  # a restart after it: still offline, the same one alarm
    again, events = await started(tmp_path, clock)
    try:
        clock.advance(3600)
        await quiet(again)
        assert events == [] and statuses(again, "p1") == ["offline"]
        assert len(await offline_alarms(again)) == 2
        active = again.alarms.active_alarm("guro", ENTITY, RULE)
        assert active is not None and active.id == alarm.id and active.count == 1
    finally:
        await again.stop()


async def test_a_device_offline_before_the_stop_keeps_its_one_alarm(tmp_path: Path) -> None:
    clock = FakeClock(START)
    app, _ = await started(tmp_path, clock)
    try:
        await provision(app, [{"device_id": "p1"}])
        await measure(app, "p1", {"o": True})
        clock.advance(180)
        await quiet(app)
        alarm = app.alarms.active_alarm("guro", ENTITY, RULE)
        assert alarm is not None
        went_offline = await state(app)
        assert went_offline[0] == "offline"
    finally:
        await app.stop()

    clock.advance(DOWN)
    second, events = await started(tmp_path, clock)
    try:
        assert statuses(second, "p1") == ["offline"]  # offline from the start, not online for a grace
        clock.advance(3600)
        await quiet(second)
        assert events == [] and await state(second) == went_offline  # nothing announced, nothing written
        active = second.alarms.active_alarm("guro", ENTITY, RULE)
        assert active is not None and active.id == alarm.id and active.count == 1
        assert [d["id"] for d in await offline_alarms(second)] == [alarm.id]
        await measure(second, "p1", {"o": False})  # back: online, the alarm cleared
        await quiet(second)
        assert [e.status for e in events] == ["online"]
        assert second.alarms.active_alarm("guro", ENTITY, RULE) is None
    finally:
        await second.stop()


async def test_a_stale_report_without_a_stored_state_is_not_announced_online_at_start(tmp_path: Path) -> None:
    """A device with measures but no stored `deviceState` (unknown): online at start only if it really reported
    within its threshold; the grace does not make an old report look recent (online, then offline, two events
    and an alarm cleared and raised)."""
    clock = FakeClock(START)
    app, _ = await started(tmp_path, clock)
    try:
        await provision(app, [{"device_id": "p1"}, {"device_id": "p2"}])
        profiles = {p.device_id: p for p in app.ingest.registry.profiles()}
    finally:
        await app.stop()
    for device, down in (("p1", DOWN - 60), ("p2", 60)):  # written by another tool, not ingest: no deviceState
        await write_behind_ucity(tmp_path, clock, profiles[device],
                                 {"occupied": {"type": "Property", "value": True, "observedAt": to_iso(clock.now())}})
        clock.advance(down)  # at the start, p1's report is 600 s old, p2's 60 s
    second, events = await started(tmp_path, clock)
    try:
        assert [(e.device_id, e.status) for e in events] == [("p2", "online")]
        assert statuses(second, "p1", "p2") == ["unknown", "online"]
        clock.advance(180)  # both silent for 3 intervals since the start
        await quiet(second)
        assert sorted((e.device_id, e.status) for e in events) == [("p1", "offline"), ("p2", "offline"),
                                                                   ("p2", "online")]
    finally:
        await second.stop()
