"""Devices over MQTT through a real Mosquitto broker started by the test on a free loopback port.

Measures are published with `mosquitto_pub` (a client other than ucity's), so the topics, QoS and
payloads are what real devices send. Waiting is for I/O to complete (polling the API with a
deadline), never a sleep standing in for time logic.
"""

from __future__ import annotations

import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from starlette.testclient import TestClient

from tests.conftest import free_port
from tests.ingest.support import ENTITIES, IOT, TEMPORAL, provision
from ucity.core.config import Settings, load_settings
from ucity.server import create_app

pytestmark = [
    pytest.mark.integration,
    # aiomqtt 2.1 builds its paho client with the old callback API (pinned: see pyproject.toml).
    pytest.mark.filterwarnings("ignore:Callback API version 1 is deprecated:DeprecationWarning"),
]
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
TENANT = {"fiware-service": "guro"}
LD = {"NGSILD-Tenant": "guro"}
ENTITY = "urn:ngsi-ld:AirQualityObserved:aq-01"
ATTRS = [
    {"object_id": "t", "name": "temperature", "type": "Number"},
    {"object_id": "pm10", "name": "pm10", "type": "Number"},
    {"object_id": "b", "name": "batteryLevel", "type": "Number"},
    {"object_id": "p", "name": "location", "type": "geo:point"},
]

if MOSQUITTO is None or shutil.which("mosquitto_pub") is None:
    pytest.skip("mosquitto and mosquitto-clients are not installed (scripts/test installs them)", allow_module_level=True)


class Broker:
    """A Mosquitto process on 127.0.0.1:<port>; can be stopped and started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        wait_for(self._accepts, "mosquitto to listen")

    def _accepts(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError("mosquitto exited: " + (self.proc.stderr.read().decode() if self.proc.stderr else ""))
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def publish_lines(self, topic: str, lines: list[str]) -> None:
        """One message per line, from one client connection (mosquitto_pub -l)."""
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-q", "1", "-t", topic, "-l"],
                       input="\n".join(lines).encode() + b"\n", check=True, timeout=30)

    def publish(self, topic: str, payload: bytes | str) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-q", "1", "-t", topic, "-s"],
                       input=data, check=True, timeout=10)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mqtt_settings(tmp_path: Path, broker: Broker) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         mqtt={"url": f"mqtt://127.0.0.1:{broker.port}", "client_id": "ucity-test",
                               "reconnect_min_s": 0.05, "reconnect_max_s": 0.5})


@pytest.fixture
def city(mqtt_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(mqtt_settings), base_url="http://127.0.0.1:8000") as client:
        wait_for(lambda: mqtt_connected(client), "ucity to connect to the broker")
        provision(client, TENANT, apikey="aqk", entity_type="AirQualityObserved",
                  devices=[{"device_id": "aq-01", "attributes": ATTRS, "commands": [{"name": "calibrate"}]}])
        yield client


def mqtt_connected(client: TestClient) -> bool:
    return bool(client.get("/health").json()["components"]["mqtt"]["connected"])


def entity(client: TestClient) -> dict[str, Any]:
    response = client.get(ENTITIES + ENTITY, headers=LD)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def attr_value(client: TestClient, name: str) -> Any:
    return entity(client).get(name, {}).get("value")


def device_stats(client: TestClient, device_id: str, apikey: str = "aqk", headers: dict[str, str] | None = None
                 ) -> dict[str, Any]:
    rows = client.get("/api/v1/ingest/stats", headers=TENANT if headers is None else headers).json()["devices"]
    return next((row for row in rows if (row["apikey"], row["device_id"]) == (apikey, device_id)), {})


def test_measures_over_mqtt_reach_the_entity_and_the_history(city: TestClient, broker: Broker) -> None:
    broker.publish("/aqk/aq-01/attrs", '{"t": 18.5, "pm10": 31, "b": 0.8, "TimeInstant": "2026-04-01T01:00:00Z"}')
    broker.publish("/json/aqk/aq-01/attrs", '[{"pm10": 35, "TimeInstant": "2026-04-01T01:10:00Z"}, '
                                            '{"pm10": 40, "TimeInstant": "2026-04-01T01:20:00Z"}]')
    broker.publish("/aqk/aq-01/attrs/p", "37.4954,126.8874")  # one attribute, raw value
    wait_for(lambda: attr_value(city, "pm10") == 40 and attr_value(city, "location"), "the measures")

    current = entity(city)
    assert current["temperature"] == {"type": "Property", "value": 18.5, "observedAt": "2026-04-01T01:00:00.000000Z"}
    assert current["pm10"]["observedAt"] == "2026-04-01T01:20:00.000000Z"
    assert current["location"]["value"] == {"type": "Point", "coordinates": [126.8874, 37.4954]}
    history = city.get(TEMPORAL + ENTITY, headers=LD, params={"attrs": "pm10"}).json()
    assert [(i["value"], i["observedAt"]) for i in history["pm10"]] == [
        (31, "2026-04-01T01:00:00.000000Z"), (35, "2026-04-01T01:10:00.000000Z"), (40, "2026-04-01T01:20:00.000000Z")]
    health = city.get("/api/v1/devices/health", headers=TENANT).json()["devices"][0]
    assert (health["status"], health["batteryLevel"]) == ("online", 0.8)
    assert device_stats(city, "aq-01")["transports"] == {"mqtt": 6}


def test_garbage_is_counted_and_valid_measures_still_arrive(city: TestClient, broker: Broker) -> None:
    garbage: list[tuple[str, bytes | str]] = [
        ("/aqk/aq-01/attrs", "{not json"),
        ("/aqk/aq-01/attrs", "42"),
        ("/aqk/aq-01/attrs", b"\x00\xff\xfe binary"),
        ("/aqk/aq-01/attrs", '{"t": "warm", "pm10": 12}'),  # one bad field, one good
        ("/aqk/aq-01/attrs/t", b"\xff\xfe"),
        ("/aqk/ghost/attrs", '{"t": 1}'),  # unknown device, autoprovision off
        ("/nokey/aq-01/attrs", '{"t": 1}'),  # unknown apikey
        ("/aqk/aq-01/cmdexe", "[]"),
    ]
    for topic, payload in garbage:
        broker.publish(topic, payload)
    broker.publish("/aqk/aq-01/attrs", '{"t": 21.25}')
    wait_for(lambda: attr_value(city, "temperature") == 21.25, "the valid measure after the garbage")
    assert attr_value(city, "pm10") == 12

    stats = device_stats(city, "aq-01")
    assert stats["reasons"] == {"malformed-json": 3, "not-an-object": 2, "type-mismatch": 1}
    assert (stats["accepted"], stats["rejected"]) == (2, 6)
    assert stats["lastRejection"]["reason"] == "not-an-object"
    assert device_stats(city, "ghost")["reasons"] == {"unknown-device": 1}
    # an apikey no tenant has is the platform's: listed to the default tenant, not to this one
    assert device_stats(city, "aq-01", apikey="nokey") == {}
    assert device_stats(city, "aq-01", apikey="nokey", headers={})["reasons"] == {"unknown-device": 1}
    assert device_stats(city, "aq-01")["measures"] == 2
    totals = city.get("/api/v1/ingest/stats", headers=TENANT).json()["totals"]
    assert totals["reasons"]["unknown-device"] == 1
    assert mqtt_connected(city)


class FakeDevice:
    """The device side of commands: a paho-mqtt client subscribed to its /cmd topic."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: queue.Queue[bytes] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="aq-01-device")
        self.client.on_message = lambda _c, _u, message: self.messages.put(message.payload)
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(10), "the device could not subscribe"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_command_round_trip(city: TestClient, broker: Broker) -> None:
    device = FakeDevice(broker.port, "/aqk/aq-01/cmd")
    try:
        patch = {"calibrate": {"type": "Property", "value": {"zero": 400}}}
        response = city.patch(ENTITIES + ENTITY + "/attrs", json=patch, headers=LD | IOT)
        assert response.status_code == 204, response.text
        assert device.messages.get(timeout=15) == b'{"calibrate":{"zero":400}}'
    finally:
        device.close()
    wait_for(lambda: attr_value(city, "calibrate_status") == "PENDING", "the PENDING status")

    broker.publish("/aqk/aq-01/cmdexe", '{"calibrate": "calibrated at 400 ppm"}')
    wait_for(lambda: attr_value(city, "calibrate_status") == "OK", "the command result")
    assert attr_value(city, "calibrate_info") == "calibrated at 400 ppm"
    assert device.messages.empty()  # exactly one command was sent


def test_a_stream_of_measures_is_acknowledged_and_committed_in_batches(city: TestClient, broker: Broker) -> None:
    # Mosquitto allows 20 unacknowledged QoS 1 messages in flight per client: 300 messages only
    # all arrive if ucity acknowledges each after its commit.
    lines = [f'{{"pm10": {n}, "TimeInstant": "2026-04-02T00:{n // 60:02d}:{n % 60:02d}Z"}}' for n in range(300)]
    broker.publish_lines("/aqk/aq-01/attrs", lines)
    wait_for(lambda: attr_value(city, "pm10") == 299, "the last of 300 measures", timeout=30)
    history = city.get(TEMPORAL + ENTITY, headers=LD, params={"attrs": "pm10", "lastN": "1000"}).json()
    assert [i["value"] for i in history["pm10"]] == list(range(300))
    assert device_stats(city, "aq-01")["measures"] == 300


def test_reconnects_after_the_broker_restarts(city: TestClient, broker: Broker) -> None:
    broker.publish("/aqk/aq-01/attrs", '{"t": 1}')
    wait_for(lambda: attr_value(city, "temperature") == 1, "the first measure")
    broker.stop()
    wait_for(lambda: not mqtt_connected(city), "ucity to notice the broker is gone")
    assert city.get("/health").status_code == 503  # readiness reports the lost broker
    broker.start()
    wait_for(lambda: mqtt_connected(city), "ucity to reconnect")
    broker.publish("/aqk/aq-01/attrs", '{"t": 2}')
    wait_for(lambda: attr_value(city, "temperature") == 2, "a measure after the reconnect")
    assert city.get("/health").json()["components"]["mqtt"]["reconnects"] >= 1
