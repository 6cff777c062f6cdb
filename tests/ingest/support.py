"""Helpers shared by the ingest tests."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from starlette.testclient import TestClient

from ucity.core.config import MqttSettings
from ucity.ingest.mqtt import MqttSource

ENTITIES = "/ngsi-ld/v1/entities/"
TEMPORAL = "/ngsi-ld/v1/temporal/entities/"
IOT = {"content-type": "application/json"}


def provision(client: TestClient, headers: dict[str, str], apikey: str, devices: list[dict[str, Any]],
              entity_type: str = "Device", autoprovision: bool = False, **group: Any) -> None:
    """A service group and its devices, asserting that both are created."""
    body = {"services": [{"apikey": apikey, "entity_type": entity_type, "autoprovision": autoprovision, **group}]}
    response = client.post("/iot/services", json=body, headers=IOT | headers)
    assert response.status_code == 201, response.text
    if devices:
        response = client.post("/iot/devices", json={"devices": devices}, headers=IOT | headers)
        assert response.status_code == 201, response.text


# -- MQTT without a broker: a source whose paho client records acknowledgements ------------------------
@dataclass
class Message:
    """What paho hands the source: a PUBLISH's topic, payload, packet id and QoS."""

    topic: str
    payload: bytes
    mid: int
    qos: int = 1


class FakePaho:
    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log
        self.disconnects = 0

    def ack(self, mid: int, qos: int) -> None:
        self.log.append(("ack", mid))

    def disconnect(self) -> None:
        self.disconnects += 1


class FakeClient:
    fast = False  # acknowledgements through paho's public ack()

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self._client = FakePaho(log)


def source_for(app: Any, log: list[tuple[str, Any]], max_batch: int = 500) -> MqttSource:
    source = MqttSource(app.ingest, MqttSettings(url="mqtt://127.0.0.1:1883"), max_batch=max_batch)
    source._client = source._ack_client = FakeClient(log)  # type: ignore[assignment]
    return source


async def run(source: MqttSource, messages: list[Message]) -> None:
    """Hand the messages to the source as paho would, and let its worker (no broker connection) take them."""
    for message in messages:
        source._on_paho_message(message)  # type: ignore[arg-type]
    worker = asyncio.create_task(source._worker())
    try:
        await source.drain()
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
