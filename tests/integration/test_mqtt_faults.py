"""Messages that must not hold or lose their batch, through a real Mosquitto (tests/integration/test_mqtt.py).

* QA finding 2 (/tmp/qa/repro_mqtt_poison.sh): 200 valid QoS 1 measures and, among them, one whose
  TimeInstant is out of range (0001-01-01T00:00:00+09:00 is in year 0 in UTC). Before, decoding it raised
  OverflowError and the worker dropped its whole batch (up to 500 valid messages of any device), counted
  nowhere. Now every valid measure is committed and counted, the bad time is rejected as `invalid-time`
  (its value kept with the receive time, as documented), nothing is left uncommitted.
* A poison message: one that ucity fails on at every commit (not a store that cannot take it now) among
  valid ones. Before, its batch was left unacknowledged and the connection dropped, the broker delivered the
  batch again, it failed again, for ever: the valid messages delivered with it were never committed and QoS 1
  ingest of the session stood still. Now the batch is committed again message by message: the poison alone
  is rejected (`internal-error`, counted) and acknowledged, the rest committed. The failure is injected at
  the seam (the measure writer of the running app raises for the poison's value); the broker, the client,
  the session and the acknowledgements are real.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
POISON = 666


def mqtt(client: TestClient) -> dict[str, int]:
    component: dict[str, int] = client.get("/health").json()["components"]["mqtt"]
    return component


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

    wait_for(lambda: mqtt(city)["processed"] == 201, "all 201 messages processed", timeout=30)
    health = mqtt(city)
    assert (health["received"], health["notCommitted"]) == (201, 0)
    history = city.get(TEMPORAL + ENTITY, params={"attrs": "v", "lastN": "1000", "options": "temporalValues"}).json()
    values = sorted(value for value, _ in history["v"]["values"])
    assert values == sorted([*range(200), 9999])  # QA run: 80, 95, 119, 120 or 137 of 200
    totals = city.get("/api/v1/ingest/stats").json()["totals"]
    assert (totals["measures"], totals["accepted"], totals["rejected"]) == (201, 201, 1)
    assert totals["reasons"] == {"invalid-time": 1}
    assert mqtt_connected(city)


@pytest.fixture
def failing_city(city: TestClient) -> TestClient:
    ingest = city.app.state.ucity.ingest  # type: ignore[attr-defined]
    write = ingest.writer.write

    async def failing(writes: list[Any]) -> list[Any]:  # a bug the poison's value triggers, every time
        if any(o.attrs.get("v", {}).get("value") == POISON for w in writes for o in w.observations):
            raise RuntimeError("the writer fails on this value")
        return await write(writes)

    ingest.writer.write = failing
    return city


def test_a_message_failing_at_every_commit_is_rejected_and_does_not_hold_its_batch(
        failing_city: TestClient, broker: Broker) -> None:
    city = failing_city
    lines = [f'{{"v": {i}, "TimeInstant": "2026-12-01T00:00:{i:02d}Z"}}' for i in range(40)]
    lines.insert(20, f'{{"v": {POISON}, "TimeInstant": "2026-12-01T00:01:00Z"}}')
    broker.publish_lines("/pk/dev-1/attrs", lines)

    wait_for(lambda: mqtt(city)["processed"] >= 41 and mqtt(city)["received"] == mqtt(city)["processed"], "41 messages processed",
             timeout=30)
    health = mqtt(city)
    assert (health["received"], health["notCommitted"], health["reconnects"]) == (41, 0, 0)  # no redelivery
    history = city.get(TEMPORAL + ENTITY, params={"attrs": "v", "lastN": "1000", "options": "temporalValues"}).json()
    assert sorted(value for value, _ in history["v"]["values"]) == list(range(40))
    totals = city.get("/api/v1/ingest/stats").json()["totals"]
    assert (totals["measures"], totals["rejected"], totals["reasons"]) == (40, 1, {"internal-error": 1})
    assert mqtt_connected(city)
