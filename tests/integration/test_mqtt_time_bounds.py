"""QA finding 2 through a real Mosquitto (/tmp/qa/repro_mqtt_poison.sh): 200 valid QoS 1 measures and,
among them, one whose TimeInstant is out of range (0001-01-01T00:00:00+09:00 is in year 0 in UTC).
Before, decoding it raised OverflowError and the worker dropped its whole batch (up to 500 valid
messages of any device), counted nowhere. Now every valid measure is committed and counted, the bad
time is rejected as `invalid-time` (its value kept with the receive time, as documented), nothing is
left uncommitted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.ingest.support import TEMPORAL, provision
from tests.integration.test_mqtt import MOSQUITTO, Broker, broker, mqtt_connected, mqtt_settings, wait_for
from ucity.core.config import Settings
from ucity.server import create_app

__all__ = ["broker", "mqtt_settings"]  # fixtures of test_mqtt, used here
pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Callback API version 1 is deprecated:DeprecationWarning"),
]
assert MOSQUITTO is not None  # test_mqtt skips the module otherwise
ENTITY = "urn:ngsi-ld:QaSensor:dev-1"


@pytest.fixture
def city(mqtt_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(mqtt_settings), base_url="http://127.0.0.1:8000") as client:
        wait_for(lambda: mqtt_connected(client), "ucity to connect to the broker")
        provision(client, {}, "pk", [], entity_type="QaSensor", autoprovision=True,
                  attributes=[{"object_id": "v", "name": "v", "type": "Number"}])
        yield client


def test_one_out_of_range_time_does_not_lose_the_valid_messages_of_its_batch(city: TestClient, broker: Broker) -> None:
    lines = []
    for i in range(200):
        if i == 100:
            lines.append('{"v": 9999, "TimeInstant": "0001-01-01T00:00:00+09:00"}')
        lines.append(f'{{"v": {i}, "TimeInstant": "2026-12-01T00:{i // 60:02d}:{i % 60:02d}Z"}}')
    broker.publish_lines("/pk/dev-1/attrs", lines)

    def mqtt() -> dict[str, int]:
        component: dict[str, int] = city.get("/health").json()["components"]["mqtt"]
        return component

    wait_for(lambda: mqtt()["processed"] == 201, "all 201 messages processed", timeout=30)
    health = mqtt()
    assert (health["received"], health["notCommitted"]) == (201, 0)
    history = city.get(TEMPORAL + ENTITY, params={"attrs": "v", "lastN": "1000", "options": "temporalValues"}).json()
    values = sorted(value for value, _ in history["v"]["values"])
    assert values == sorted([*range(200), 9999])  # QA run: 80, 95, 119, 120 or 137 of 200
    totals = city.get("/api/v1/ingest/stats").json()["totals"]
    assert (totals["measures"], totals["accepted"], totals["rejected"]) == (201, 201, 1)
    assert totals["reasons"] == {"invalid-time": 1}
    assert mqtt_connected(city)
