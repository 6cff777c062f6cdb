"""Ingest on a real platform with a fake clock: device health (online, offline after N silent
intervals, back online) and measures published on the bus like any other write."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from ucity.app import Ucity
from ucity.core.bus import EntitiesChanged, EntityChange
from ucity.core.clock import FakeClock, to_iso
from ucity.core.config import Settings, load_settings
from ucity.core.errors import BadRequest, Unavailable
from ucity.core.http import Req, Resp
from ucity.ingest import DeviceStatusChanged

START = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)
ENTITY = "urn:ngsi-ld:ParkingSpot:p1"
OCCUPIED = "https://uri.etsi.org/ngsi-ld/default-context/occupied"
H = {"content-type": "application/json", "fiware-service": "guro"}


def make_settings(tmp_path: Path) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         ingest={"intervals_by_type": {"ParkingSpot": 60.0}, "offline_after_intervals": 3})


@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[tuple[Ucity, FakeClock, list[DeviceStatusChanged]]]:
    clock = FakeClock(START)
    app = Ucity(make_settings(tmp_path), clock=clock)
    events: list[DeviceStatusChanged] = []

    async def collect(event: DeviceStatusChanged) -> None:
        events.append(event)

    app.platform.bus.subscribe(DeviceStatusChanged, collect)
    await app.start()
    try:
        yield app, clock, events
    finally:
        await app.stop()


async def call(handler: Callable[[Req], Awaitable[Resp]], method: str, path: str, body: Any = None, **params: str) -> Resp:
    req = Req(method, path, params={k: [v] for k, v in params.items()}, headers=dict(H),
              body=orjson.dumps(body) if body is not None else b"")
    return await handler(req)


async def provision(app: Ucity, devices: list[dict[str, Any]]) -> None:
    groups = {"services": [{"apikey": "pk", "entity_type": "ParkingSpot", "autoprovision": False,
                            "attributes": [{"object_id": "o", "name": "occupied", "type": "Boolean"},
                                           {"object_id": "b", "name": "batteryLevel", "type": "Number"},
                                           {"object_id": "r", "name": "rssi", "type": "Integer"}]}]}
    assert (await call(app.ingest.http.create_groups, "POST", "/iot/services", groups)).status == 201
    assert (await call(app.ingest.http.create_devices, "POST", "/iot/devices", {"devices": devices})).status == 201


async def measure(app: Ucity, device: str, body: Any) -> None:
    response = await call(app.ingest.http.measure, "POST", "/iot/json", body, k="pk", i=device)
    assert response.status == 200, response.body


async def started_collecting(tmp_path: Path, clock: FakeClock) -> tuple[Ucity, list[DeviceStatusChanged]]:
    """A started platform on the data dir (a restart) and the device status events it publishes."""
    events: list[DeviceStatusChanged] = []

    async def collect(event: DeviceStatusChanged) -> None:
        events.append(event)

    app = Ucity(make_settings(tmp_path), clock=clock)
    app.platform.bus.subscribe(DeviceStatusChanged, collect)
    await app.start()
    return app, events


async def state(app: Ucity, entity_id: str = ENTITY, tenant: str = "guro") -> Any:
    doc = await app.store.get_entity(tenant, entity_id)
    assert doc is not None
    (instance,) = doc["attrs"]["https://uri.etsi.org/ngsi-ld/default-context/deviceState"]
    return instance["value"], instance["observedAt"]


async def settle(app: Ucity) -> None:
    await app.ingest.monitor.drain()
    await app.publisher.drain()


async def test_silent_device_goes_offline_and_comes_back(city: tuple[Ucity, FakeClock, list[DeviceStatusChanged]]) -> None:
    app, clock, events = city
    await provision(app, [{"device_id": "p1"}])
    await measure(app, "p1", {"o": True, "b": 0.93, "r": -80})
    await settle(app)
    assert [(e.device_id, e.status) for e in events] == [("p1", "online")]
    assert (await state(app))[0] == "online"

    clock.advance(100)
    await measure(app, "p1", {"o": True})  # the same value again still counts as a report
    clock.advance(179)  # 179 s after the last report: 3 intervals of 60 s not yet over
    await settle(app)
    assert len(events) == 1
    assert app.ingest.monitor.summary("guro")["counts"]["online"] == 1

    clock.advance(1)  # 180 s of silence
    await settle(app)
    assert [(e.status, e.last_reported) for e in events[1:]] == [("offline", "2026-05-01T00:01:40.000000Z")]
    assert events[1].entity_id == ENTITY and events[1].tenant == "guro"
    assert await state(app) == ("offline", "2026-05-01T00:04:40.000000Z")
    summary = (await call(app.ingest.http.devices_health, "GET", "/api/v1/devices/health")).body
    (row,) = summary["devices"]
    assert (row["status"], row["lastReported"], row["batteryLevel"], row["rssi"], row["expectedIntervalSeconds"]) == (
        "offline", "2026-05-01T00:01:40.000000Z", 0.93, -80, 60.0)
    assert summary["counts"] == {"online": 0, "offline": 1, "unknown": 0}

    clock.advance(3600)  # no repeated offline events while it stays silent
    await settle(app)
    assert len(events) == 2

    await measure(app, "p1", {"o": False})
    await settle(app)
    assert [e.status for e in events] == ["online", "offline", "online"]
    assert (await state(app))[0] == "online"


async def test_device_interval_and_unknown_devices(city: tuple[Ucity, FakeClock, list[DeviceStatusChanged]]) -> None:
    app, clock, events = city
    await provision(app, [{"device_id": "p1", "expected_interval_s": 10}, {"device_id": "p2"}])
    summary = app.ingest.monitor.summary("guro")
    assert summary["counts"] == {"online": 0, "offline": 0, "unknown": 2}
    clock.advance(30)  # p1: 3 x 10 s without a single report since provisioning
    await settle(app)
    assert [(e.device_id, e.status, e.last_reported) for e in events] == [("p1", "offline", None)]
    clock.advance(150)  # p2: 3 x 60 s (its type's interval)
    await settle(app)
    assert [(e.device_id, e.status) for e in events] == [("p1", "offline"), ("p2", "offline")]
    only_offline = (await call(app.ingest.http.devices_health, "GET", "/api/v1/devices/health", status="offline")).body
    assert [d["device_id"] for d in only_offline["devices"]] == ["p1", "p2"]


async def test_garbage_does_not_keep_a_device_online(city: tuple[Ucity, FakeClock, list[DeviceStatusChanged]]) -> None:
    app, clock, events = city
    await provision(app, [{"device_id": "p1"}])
    await measure(app, "p1", {"o": True})
    for _ in range(4):
        clock.advance(50)
        with pytest.raises(BadRequest):  # the handler raises; the server turns it into a 400 problem
            await call(app.ingest.http.measure, "POST", "/iot/json", {"o": "maybe"}, k="pk", i="p1")
    await settle(app)
    assert [e.status for e in events] == ["online", "offline"]


async def test_state_is_restored_from_the_store_at_start(tmp_path: Path) -> None:
    clock = FakeClock(START)
    first = Ucity(make_settings(tmp_path), clock=clock)
    await first.start()
    await provision(first, [{"device_id": "p1"}, {"device_id": "p2"}])
    await measure(first, "p1", {"o": True, "TimeInstant": "2026-05-01T00:00:00Z"})
    clock.advance(100)
    await measure(first, "p2", {"o": True})
    await settle(first)
    await first.stop()

    clock.advance(120)  # down for 2 minutes: p1 silent 220 s (past its deadline), p2 silent 120 s
    second, events = await started_collecting(tmp_path, clock)
    try:
        await settle(second)
        # Silence counts only while ucity listens (QA12 F3): neither is judged at start, both get 180 s from it.
        assert events == []
        for device, reported in (("p1", START), ("p2", START + timedelta(seconds=100))):
            record = second.ingest.monitor.get("guro", device)
            assert record is not None and (record.status, record.last_reported) == ("online", reported)
        clock.advance(timedelta(seconds=179))
        await settle(second)
        assert events == []
        clock.advance(1)
        await settle(second)
        assert sorted((e.device_id, e.status, e.last_reported) for e in events) == [
            ("p1", "offline", "2026-05-01T00:00:00.000000Z"), ("p2", "offline", "2026-05-01T00:01:40.000000Z")]
    finally:
        await second.stop()


async def test_measures_are_committed_changes_on_the_bus(city: tuple[Ucity, FakeClock, list[DeviceStatusChanged]]) -> None:
    """Subscriptions, rules and history consume `EntitiesChanged`: a measure is one, with its observedAt."""
    app, _, _ = city
    await provision(app, [{"device_id": "p1"}])
    changes: list[EntityChange] = []

    async def collect(event: EntitiesChanged) -> None:
        changes.extend(event.changes)

    app.platform.bus.subscribe(EntitiesChanged, collect)
    await measure(app, "p1", [{"o": True, "TimeInstant": "2026-04-30T23:50:00Z"}, {"o": False, "b": 0.5}])
    await settle(app)
    (change,) = [c for c in changes if c.entity_id == ENTITY and OCCUPIED in c.attrs]
    occupied = [(i["value"], i["observedAt"]) for iri, i in change.instances if iri == OCCUPIED]
    # the second measure has no time of its own: received now, plus its position in the array (1 µs)
    assert occupied == [(True, "2026-04-30T23:50:00.000000Z"), (False, "2026-05-01T00:00:00.000001Z")]
    assert change.operation == "update" and change.tenant == "guro"


async def test_status_event_goes_out_when_the_store_refuses_the_state_write(
        city: tuple[Ucity, FakeClock, list[DeviceStatusChanged]], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A store pushing back (the writer raising) is logged; the offline event is still published."""
    app, clock, events = city
    await provision(app, [{"device_id": "p1"}])
    await measure(app, "p1", {"o": True})
    await settle(app)

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("store is pushing back")

    monkeypatch.setattr(app.ingest.monitor.writer, "apply", refuse)
    clock.advance(180)
    await settle(app)
    assert [e.status for e in events] == ["online", "offline"]
    assert "could not set deviceState" in caplog.text and "pushing back" in caplog.text
    assert (await state(app))[0] == "online"  # the refused write changed nothing


async def test_the_measure_that_brings_a_device_online_writes_its_state(
        city: tuple[Ucity, FakeClock, list[DeviceStatusChanged]], monkeypatch: pytest.MonkeyPatch) -> None:
    """First report (and a report after being offline): `deviceState` online is written by the measure's own
    write, one commit and one change, not by a second write after it; the status event still goes out."""
    app, clock, events = city
    await provision(app, [{"device_id": "p1"}])
    changes: list[EntityChange] = []

    async def collect(event: EntitiesChanged) -> None:
        changes.extend(c for c in event.changes if c.entity_id == ENTITY)

    app.platform.bus.subscribe(EntitiesChanged, collect)
    separate: list[object] = []
    apply = app.ingest.monitor.writer.apply

    async def counted(*args: Any, **kwargs: Any) -> Any:
        separate.append(args)
        return await apply(*args, **kwargs)

    monkeypatch.setattr(app.ingest.monitor.writer, "apply", counted)
    state_iri = "https://uri.etsi.org/ngsi-ld/default-context/deviceState"
    for _ in range(2):  # online from unknown, then (after going offline) online again
        changes.clear()
        await measure(app, "p1", {"o": True})
        await settle(app)
        assert events[-1].status == "online"
        (change,) = changes
        assert {OCCUPIED, state_iri} <= change.attrs
        assert await state(app) == ("online", to_iso(clock.now()))
        assert separate == []
        clock.advance(180)  # silent: offline, which is written on its own (no measure to carry it)
        await settle(app)
        assert events[-1].status == "offline" and len(separate) == 1
        separate.clear()
    await measure(app, "p1", {"o": False})  # already online: no deviceState in the write
    await measure(app, "p1", {"o": True})
    await settle(app)
    assert state_iri not in changes[-1].attrs and [e.status for e in events] == ["online", "offline"] * 2 + ["online"]


async def test_a_start_interrupted_while_device_states_load_loses_no_offline_alarm(tmp_path: Path) -> None:
    """The store fails while the device states of the second tenant are read at start (the start fails). The
    first tenant's silent device must not have gone offline meanwhile: its `deviceState` offline written and
    its event published to an alarm service being stopped, the next start would take the stored offline state
    as announced already, and its device-offline alarm would never be raised. Both devices are announced
    offline, and alarmed, by the next start that succeeds."""
    clock = FakeClock(START)
    first = Ucity(make_settings(tmp_path), clock=clock)
    await first.start()
    try:
        await provision(first, [{"device_id": "p1"}])
        other = {**H, "fiware-service": "mapo"}
        groups = {"services": [{"apikey": "mk", "entity_type": "ParkingSpot", "autoprovision": False}]}
        for handler, path, body in ((first.ingest.http.create_groups, "/iot/services", groups),
                                    (first.ingest.http.create_devices, "/iot/devices", {"devices": [{"device_id": "m1"}]})):
            req = Req("POST", path, headers=other, body=orjson.dumps(body))
            assert (await handler(req)).status == 201
        await measure(first, "p1", {"o": True})
        req = Req("POST", "/iot/json", params={"k": ["mk"], "i": ["m1"]}, headers=other, body=b'{"o": true}')
        assert (await first.ingest.http.measure(req)).status == 200
        await settle(first)
    finally:
        await first.stop()

    clock.advance(600)  # down for 10 minutes: both devices silent for longer than 3 intervals
    second = Ucity(make_settings(tmp_path), clock=clock)
    query = second.store.query_entities
    reads: list[str] = []

    async def failing(tenant: str, q: Any) -> Any:
        if q.ids:  # the device states (health), one read per tenant: the second one fails
            reads.append(tenant)
            if len(reads) == 2:
                raise Unavailable("the database is unreachable")
        return await query(tenant, q)

    second.store.query_entities = failing  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        await second.start()
    assert len(reads) == 2
    await second.ingest.monitor.drain()  # whatever the failed start left running (it must have left nothing)

    clock.advance(1)
    third = Ucity(make_settings(tmp_path), clock=clock)
    await third.start()
    try:
        await settle(third)
        clock.advance(180)  # silent for 3 intervals since this start (QA12 F3: not judged at start)
        await settle(third)
        await third.alarms.drain()
        for tenant, entity in (("guro", ENTITY), ("mapo", "urn:ngsi-ld:ParkingSpot:m1")):
            assert (await state(third, entity, tenant))[0] == "offline"
            assert third.alarms.active_alarm(tenant, entity, "device-offline") is not None, entity
    finally:
        await third.stop()
    assert not second.ingest.monitor.summary("guro")["devices"]  # the failed start had judged no device


async def test_a_device_whose_clock_runs_behind_stays_online_across_a_restart(tmp_path: Path) -> None:
    """QA4 F4: what is restored is when ucity received the last report (its write time), not the device's own
    observedAt: a device whose clock is 10 minutes behind reported a second before the restart, not 10 minutes."""
    clock = FakeClock(START)
    first = Ucity(make_settings(tmp_path), clock=clock)  # ParkingSpot: every 60 s, offline after 3 intervals
    await first.start()
    await provision(first, [{"device_id": "lag"}, {"device_id": "ahead"}])
    await measure(first, "lag", {"o": True, "TimeInstant": "2026-04-30T23:50:00Z"})  # its clock: 10 min behind
    await measure(first, "ahead", {"o": True, "TimeInstant": "2026-05-01T00:02:00Z"})  # 2 min ahead (allowed)
    await settle(first)
    assert first.ingest.monitor.get("guro", "lag").status == "online"  # type: ignore[union-attr]
    await first.stop()

    clock.advance(1)
    second, events = await started_collecting(tmp_path, clock)
    try:
        await settle(second)
        assert events == []
        record = second.ingest.monitor.get("guro", "lag")
        assert record is not None and record.status == "online"
        assert record.last_reported == START  # received then
        clock.advance(178)  # (restarted 1 s after the reports; silence counts from the start, QA12 F3) 180 s after
        # it both go offline together; by the devices' clocks "lag" would have been silent for 10 min already and
        # "ahead" would go later
        await settle(second)
        assert events == []
        clock.advance(1)
        await settle(second)
        assert events == []
        clock.advance(1)
        await settle(second)
        assert sorted((e.device_id, e.status) for e in events) == [("ahead", "offline"), ("lag", "offline")]
    finally:
        await second.stop()
