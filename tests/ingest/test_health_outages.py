"""Device health while ucity itself cannot hear devices (FIX-A): a device's silence counts only while ucity could
hear it. A real platform on a fake clock, both store backends.

* MQTT broker outage: while the MQTT source is disconnected, the silence of the devices heard over MQTT does not
  count; after the reconnection each goes offline once silent for its threshold since max(its last report, the
  reconnection). Devices over HTTP are judged as usual.
* Store outage: a valid reading the store refuses (`Unavailable`, a 503) is not a report, but it proves the device
  alive: its silence counts from it. A device that sent nothing is still judged offline on time.

The MQTT source's own part (telling health of each connection and loss) is tested against a real Mosquitto in
tests/ingest/test_health_mqtt_broker.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.test_health import START, call, make_settings, settle
from ucity.app import Ucity
from ucity.core.clock import FakeClock, to_iso
from ucity.core.errors import Unavailable
from ucity.ingest import DeviceStatusChanged
from ucity.ingest.service import Received

pytestmark = pytest.mark.usefixtures("store_backend")


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


async def provision(app: Ucity, devices: list[dict[str, Any]]) -> None:
    groups = {"services": [{"apikey": "pk", "entity_type": "ParkingSpot", "autoprovision": False,
                            "attributes": [{"object_id": "o", "name": "occupied", "type": "Boolean"}]}]}
    assert (await call(app.ingest.http.create_groups, "POST", "/iot/services", groups)).status == 201
    assert (await call(app.ingest.http.create_devices, "POST", "/iot/devices", {"devices": devices})).status == 201


async def send(app: Ucity, device: str, transport: str) -> None:
    """A measure of the device as the source of that transport hands it over (MQTT without a broker)."""
    if transport == "http":
        response = await call(app.ingest.http.measure, "POST", "/iot/json", {"o": True}, k="pk", i=device)
        assert response.status == 200, response.body
    else:
        (result,) = await app.ingest.ingest([Received(app.ingest.resolve("pk", device), {"o": True}, transport)])
        assert result.outcome is not None and not isinstance(result.outcome, Exception)


def status(app: Ucity, *devices: str) -> list[str]:
    return [app.ingest.monitor.get("guro", d).status for d in devices]  # type: ignore[union-attr]


async def test_an_mqtt_outage_does_not_count_for_mqtt_devices_only(
        city: tuple[Ucity, FakeClock, list[DeviceStatusChanged]]) -> None:
    app, clock, events = city
    monitor = app.ingest.monitor
    monitor.mqtt_disconnected()  # as the MQTT source's start
    monitor.mqtt_connected()
    # declared MQTT / HTTP; undeclared, last heard over MQTT / HTTP; undeclared, never heard (possibly MQTT)
    await provision(app, [{"device_id": "dm", "transport": "MQTT"}, {"device_id": "dh", "transport": "HTTP"},
                          {"device_id": "um"}, {"device_id": "uh"}, {"device_id": "never"}])
    await send(app, "dm", "http")  # (its declared transport wins over the one it was heard on)
    await send(app, "dh", "mqtt")
    await send(app, "um", "mqtt")
    await send(app, "uh", "http")
    await settle(app)
    assert status(app, "dm", "dh", "um", "uh", "never") == ["online"] * 4 + ["unknown"]

    clock.advance(10)
    monitor.mqtt_disconnected()  # the broker restarts: nothing over MQTT can be heard
    assert monitor.summary("guro")["mqttDownSince"] == to_iso(clock.now())
    clock.advance(600)  # far beyond 3 intervals of 60 s
    await settle(app)
    assert status(app, "dm", "dh", "um", "uh", "never") == ["online", "offline", "online", "offline", "unknown"]
    assert sorted(e.device_id for e in events if e.status == "offline") == ["dh", "uh"]

    monitor.mqtt_connected()  # reconnected at START + 610: the MQTT devices' silence counts from now
    reconnected = to_iso(clock.now())
    summary = monitor.summary("guro")
    assert (summary["mqttListeningSince"], summary["mqttDownSince"]) == (reconnected, None)
    clock.advance(179)
    await settle(app)
    assert status(app, "dm", "um", "never") == ["online", "online", "unknown"]
    clock.advance(1)  # silent for their threshold since the reconnection: really silent
    await settle(app)
    assert status(app, "dm", "um", "never") == ["offline"] * 3
    assert sorted(e.device_id for e in events if e.status == "offline") == ["dh", "dm", "never", "uh", "um"]


async def test_a_short_mqtt_outage_does_not_bring_deadlines_forward(
        city: tuple[Ucity, FakeClock, list[DeviceStatusChanged]]) -> None:
    app, clock, _ = city
    monitor = app.ingest.monitor
    monitor.mqtt_connected()
    await provision(app, [{"device_id": "m1"}])
    await send(app, "m1", "mqtt")
    clock.advance(150)
    monitor.mqtt_disconnected()
    clock.advance(20)
    monitor.mqtt_connected()  # 170 s after its report, 20 s of them unheard
    clock.advance(30)  # 200 s after its report, 30 s after the reconnection
    await settle(app)
    assert status(app, "m1") == ["online"]
    clock.advance(150)  # 180 s since the reconnection
    await settle(app)
    assert status(app, "m1") == ["offline"]


async def test_without_mqtt_source_nothing_changes(city: tuple[Ucity, FakeClock, list[DeviceStatusChanged]]) -> None:
    app, clock, _ = city
    await provision(app, [{"device_id": "m1"}])
    await send(app, "m1", "mqtt")
    assert app.ingest.monitor.summary("guro")["mqttListeningSince"] is None
    clock.advance(180)
    await settle(app)
    assert status(app, "m1") == ["offline"]


@pytest.mark.parametrize("how", ["raised", "outcome"])
async def test_readings_refused_by_the_store_keep_a_device_from_going_offline(
        city: tuple[Ucity, FakeClock, list[DeviceStatusChanged]], how: str) -> None:
    app, clock, events = city
    await provision(app, [{"device_id": "alive"}, {"device_id": "silent"}])
    await send(app, "alive", "http")
    await send(app, "silent", "http")
    await settle(app)
    reported = app.ingest.monitor.get("guro", "alive").last_reported  # type: ignore[union-attr]

    mutate = app.store.mutate

    async def down(tenant: str, mutations: Any, context: Any = None) -> Any:
        if how == "raised":
            raise Unavailable("the database cannot be reached: OSError")
        return [Unavailable("the store could not commit: connection lost") for _ in mutations]

    app.store.mutate = down  # type: ignore[method-assign]
    for _ in range(6):  # the store is down for 6 minutes; the device keeps sending every minute (503 each)
        clock.advance(60)
        with pytest.raises(Unavailable):
            await call(app.ingest.http.measure, "POST", "/iot/json", {"o": True}, k="pk", i="alive")
    app.store.mutate = mutate  # type: ignore[method-assign]
    await settle(app)
    # the silent one went offline on time (its offline write failed with the store: the event still went out);
    # the one that kept sending is still online: not reported (nothing committed), but heard 6 minutes after
    alive = app.ingest.monitor.get("guro", "alive")
    assert alive is not None and (alive.status, alive.last_reported) == ("online", reported)
    assert [(e.device_id, e.status) for e in events if e.status == "offline"] == [("silent", "offline")]
    clock.advance(179)  # silent since its last refused reading, for less than its threshold
    await settle(app)
    assert status(app, "alive") == ["online"]
    clock.advance(1)  # really silent now
    await settle(app)
    assert status(app, "alive") == ["offline"]


async def test_a_refused_reading_does_not_bring_an_offline_device_online(
        city: tuple[Ucity, FakeClock, list[DeviceStatusChanged]]) -> None:
    app, clock, events = city
    await provision(app, [{"device_id": "p1"}])
    await send(app, "p1", "http")
    clock.advance(180)
    await settle(app)
    assert status(app, "p1") == ["offline"]

    async def down(tenant: str, mutations: Any, context: Any = None) -> Any:
        raise Unavailable("the database cannot be reached: OSError")

    mutate = app.store.mutate
    app.store.mutate = down  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        await call(app.ingest.http.measure, "POST", "/iot/json", {"o": True}, k="pk", i="p1")
    app.store.mutate = mutate  # type: ignore[method-assign]
    await settle(app)
    assert status(app, "p1") == ["offline"]  # online once a reading of it is committed
    await send(app, "p1", "http")
    await settle(app)
    assert status(app, "p1") == ["online"]
    assert [e.status for e in events] == ["online", "offline", "online"]
