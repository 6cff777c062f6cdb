"""Device health across a real MQTT broker outage (FIX-A): a Mosquitto started by the test is stopped for longer
than the devices' threshold and started again; ucity runs on a fake clock (its reconnection backoff is real time).

Before, every MQTT device went offline during the outage (a device-offline alarm each, a storm once the broker
restarted); now their silence counts only from the reconnection, while a device over HTTP is judged as usual.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.test_health import START, call, settle
from ucity.app import Ucity
from ucity.core.clock import FakeClock, to_iso
from ucity.core.config import load_settings

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:Callback API version 1 is deprecated:DeprecationWarning")]


async def until(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Ucity, FakeClock, Any]]:
    if MOSQUITTO is None or shutil.which("mosquitto_pub") is None:
        pytest.skip("mosquitto and mosquitto-clients are not installed (scripts/test installs them)")
    from tests.integration.test_mqtt import Broker

    broker = Broker(tmp_path)
    broker.start()
    clock = FakeClock(START)
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             ingest={"intervals_by_type": {"ParkingSpot": 60.0}, "offline_after_intervals": 3},
                             mqtt={"url": f"mqtt://127.0.0.1:{broker.port}", "client_id": "ucity-fixa",
                                   "reconnect_min_s": 0.05, "reconnect_max_s": 0.3})
    app = Ucity(settings, clock=clock)
    await app.start()
    try:
        assert app.mqtt is not None
        await until(app.mqtt.connected.is_set, "ucity to connect to the broker")
        yield app, clock, broker
    finally:
        await app.stop()
        broker.stop()


def status(app: Ucity, *devices: str) -> list[str]:
    return [app.ingest.monitor.get("guro", d).status for d in devices]  # type: ignore[union-attr]


async def test_a_broker_outage_raises_no_offline_alarm_for_mqtt_devices(live: tuple[Ucity, FakeClock, Any]) -> None:
    app, clock, broker = live
    assert app.mqtt is not None
    assert app.mqtt.health()["listeningSince"] == to_iso(clock.now())
    groups = {"services": [{"apikey": "pk", "entity_type": "ParkingSpot", "autoprovision": False,
                            "attributes": [{"object_id": "o", "name": "occupied", "type": "Boolean"}]}]}
    assert (await call(app.ingest.http.create_groups, "POST", "/iot/services", groups)).status == 201
    devices = {"devices": [{"device_id": "m1"}, {"device_id": "h1"}]}  # no declared transport: as heard
    assert (await call(app.ingest.http.create_devices, "POST", "/iot/devices", devices)).status == 201

    await asyncio.to_thread(broker.publish, "/pk/m1/attrs", '{"o": true}')
    await until(lambda: app.mqtt is not None and app.mqtt.processed >= 1, "the MQTT measure")
    assert (await call(app.ingest.http.measure, "POST", "/iot/json", {"o": True}, k="pk", i="h1")).status == 200
    await settle(app)
    assert status(app, "m1", "h1") == ["online", "online"]

    await asyncio.to_thread(broker.stop)
    await until(lambda: app.mqtt is not None and not app.mqtt.connected.is_set(), "ucity to see the broker gone")
    assert app.mqtt.health()["downSince"] == to_iso(clock.now())
    clock.advance(600)  # the broker is down for 10 minutes: more than 3 intervals of 60 s
    await settle(app)
    assert status(app, "m1", "h1") == ["online", "offline"]  # the HTTP device is judged as usual

    await asyncio.to_thread(broker.start)
    await until(app.mqtt.connected.is_set, "ucity to reconnect")
    reconnected = to_iso(clock.now())
    assert app.ingest.monitor.summary("guro")["mqttListeningSince"] == reconnected
    assert app.mqtt.health()["listeningSince"] == reconnected
    clock.advance(179)
    await settle(app)
    assert status(app, "m1") == ["online"]
    clock.advance(1)  # silent for its threshold since the reconnection: really silent
    await settle(app)
    assert status(app, "m1") == ["offline"]
