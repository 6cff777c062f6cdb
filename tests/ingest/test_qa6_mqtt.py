"""Command results on the IoT Agent JSON manual's topic `/json/<apikey>/<device_id>/cmdexe` (QA6 finding 5):
parsed, subscribed to, and applied, with the fake paho client and through a real Mosquitto."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.ingest.support import ENTITIES, IOT, Message, provision, run, source_for
from ucity.app import Ucity
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.ingest.mqtt import SUBSCRIPTIONS, Topic, parse_topic, topic_filters
from ucity.ingest.schema import parse_device, parse_group

TENANT = "guro"
PING = "urn:ngsi-ld:Sensor:s1"


@pytest.mark.parametrize(("topic", "expected"), [
    ("/json/k1/d1/cmdexe", Topic("k1", "d1", "cmdexe")),
    ("/k1/d1/cmdexe", Topic("k1", "d1", "cmdexe")),
    ("/json/k1/d1/attrs", Topic("k1", "d1", "attrs")),
    ("/json/k1/d1/attrs/t", Topic("k1", "d1", "attrs", "t")),
    ("/json/k1/attrs/cmdexe", Topic("k1", "attrs", "cmdexe")),  # ambiguous: the manual's prefixed form is taken
    ("/json/k1/d1/cmdexe/x", None),
    ("/json/k1/d1/cmd", None),
])
def test_prefixed_topics_parse(topic: str, expected: Topic | None) -> None:
    assert parse_topic(topic) == expected


def test_the_prefixed_command_result_topic_is_subscribed() -> None:
    assert "/json/+/+/cmdexe" in SUBSCRIPTIONS and "/+/+/cmdexe" in SUBSCRIPTIONS
    assert "$share/g//json/+/+/cmdexe" in topic_filters("g")


@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[Ucity]:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0})
    app = Ucity(settings, clock=FakeClock(datetime(2026, 5, 1, tzinfo=UTC)))
    await app.start()
    group = parse_group({"apikey": "k", "entity_type": "Sensor", "autoprovision": False,
                         "commands": [{"name": "ping", "type": "command"}]}, TENANT, "/")
    await app.ingest.add_groups([group])
    await app.ingest.add_devices([parse_device({"device_id": "s1"}, TENANT, "/", group)])
    try:
        yield app
    finally:
        await app.stop()


async def value(app: Ucity, name: str) -> Any:
    doc = await app.store.get_entity(TENANT, PING)
    assert doc is not None
    (instance,) = doc["attrs"]["https://uri.etsi.org/ngsi-ld/default-context/" + name]
    return instance["value"]


async def test_a_command_result_on_the_json_topic_sets_status_and_info(city: Ucity) -> None:
    log: list[tuple[str, Any]] = []
    source = source_for(city, log)
    await run(source, [Message("/json/k/s1/cmdexe", b'{"ping": "pong 22"}', 1)])
    for task in list(source._side_tasks):
        await task
    assert (await value(city, "ping_status"), await value(city, "ping_info")) == ("OK", "pong 22")
    assert ("ack", 1) in log
    # an unknown command on the prefixed topic is counted, not silently dropped
    await run(source, [Message("/json/k/s1/cmdexe", b'{"reboot": 1}', 2)])
    assert city.ingest.stats.snapshot(TENANT)["totals"]["reasons"] == {"unknown-command": 1}


# -- through a real broker ----------------------------------------------------------------------------------
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    if MOSQUITTO is None or shutil.which("mosquitto_pub") is None:
        pytest.skip("mosquitto and mosquitto-clients are not installed (scripts/test installs them)")
    from tests.integration.test_mqtt import Broker, mqtt_connected, wait_for
    from ucity.server import create_app

    broker = Broker(tmp_path)
    broker.start()
    try:
        settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                                 mqtt={"url": f"mqtt://127.0.0.1:{broker.port}", "client_id": "ucity-qa6",
                                       "reconnect_min_s": 0.05, "reconnect_max_s": 0.5})
        with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
            wait_for(lambda: mqtt_connected(client), "ucity to connect to the broker")
            yield client, broker
    finally:
        broker.stop()


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:Callback API version 1 is deprecated:DeprecationWarning")
def test_a_command_result_published_on_the_json_topic_reaches_the_entity(live: tuple[TestClient, Any]) -> None:
    from tests.integration.test_mqtt import wait_for

    client, broker = live
    headers = {"fiware-service": TENANT}
    provision(client, headers, apikey="k", entity_type="Sensor", devices=[{"device_id": "s1", "commands": [{"name": "ping"}]}])

    def attr(name: str) -> Any:
        return client.get(ENTITIES + PING, headers={"NGSILD-Tenant": TENANT} | IOT).json().get(name, {}).get("value")

    broker.publish("/json/k/s1/cmdexe", '{"ping": "pong"}')
    wait_for(lambda: attr("ping_status") == "OK", "the command result on /json/k/s1/cmdexe")
    assert attr("ping_info") == "pong"
