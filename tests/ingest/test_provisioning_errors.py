"""Provisioning errors as FIWARE IoT Agent clients read them (ucity/ingest/errors.py): the RFC 7807 ProblemDetails,
plus the IoT Agent's `name` (DUPLICATE_DEVICE_ID, DEVICE_NOT_FOUND, WRONG_SYNTAX ...) and `message`, on
`/iot/services` and `/iot/devices` only; and a device id created through two processes: the second is a 409."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.ingest.support import IOT, provision
from ucity.core.config import Settings
from ucity.core.errors import NGSI_ERRORS
from ucity.server import create_app

TENANT = {"fiware-service": "guro", "fiware-servicepath": "/parking"}
DEVICE = {"device_id": "spot-001", "apikey": "pk", "entity_type": "ParkingSpot"}


def iota_problem(response: Any, status: int, error_type: str, name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == NGSI_ERRORS + error_type and body["status"] == status and body["title"]
    assert body["name"] == name
    assert body["message"] == body["detail"] and body["detail"]
    return body


def test_provisioning_errors_carry_the_iot_agent_name_and_message(client: TestClient) -> None:
    provision(client, TENANT, apikey="pk", entity_type="ParkingSpot", devices=[{"device_id": "spot-001"}])
    again = client.post("/iot/devices", json={"devices": [{"device_id": "spot-001"}]}, headers=IOT | TENANT)
    assert "spot-001" in iota_problem(again, 409, "AlreadyExists", "DUPLICATE_DEVICE_ID")["detail"]
    group = client.post("/iot/services", json={"services": [{"apikey": "pk", "entity_type": "ParkingSpot"}]},
                        headers=IOT | TENANT)
    iota_problem(group, 409, "AlreadyExists", "DUPLICATE_GROUP")

    iota_problem(client.get("/iot/devices/nope", headers=TENANT), 404, "ResourceNotFound", "DEVICE_NOT_FOUND")
    iota_problem(client.put("/iot/devices/nope", json={}, headers=IOT | TENANT), 404, "ResourceNotFound",
                 "DEVICE_NOT_FOUND")
    iota_problem(client.delete("/iot/devices/nope", headers=TENANT), 404, "ResourceNotFound", "DEVICE_NOT_FOUND")
    iota_problem(client.delete("/iot/services?apikey=nope", headers=TENANT), 404, "ResourceNotFound",
                 "DEVICE_GROUP_NOT_FOUND")
    iota_problem(client.put("/iot/services?apikey=nope", json={}, headers=IOT | TENANT), 404, "ResourceNotFound",
                 "DEVICE_GROUP_NOT_FOUND")

    iota_problem(client.post("/iot/services", json={"services": [{"entity_type": "X"}]}, headers=IOT), 400,
                 "BadRequestData", "WRONG_SYNTAX")
    iota_problem(client.post("/iot/devices", content=b"{not json", headers=IOT), 400, "InvalidRequest",
                 "WRONG_SYNTAX")
    changed = client.put("/iot/devices/spot-001", json={"apikey": "other"}, headers=IOT | TENANT)
    iota_problem(changed, 400, "BadRequestData", "WRONG_SYNTAX")
    iota_problem(client.post("/iot/services", content=b"apikey=x", headers={"content-type": "text/plain"}), 415,
                 "UnsupportedMediaType", "UNSUPPORTED_CONTENT_TYPE")
    iota_problem(client.get("/iot/devices?limit=0", headers=TENANT), 400, "BadRequestData", "WRONG_SYNTAX")


def test_other_routes_keep_plain_problem_details(client: TestClient) -> None:
    measure = client.post("/iot/json?k=nope&i=x", json={"t": 1}, headers=IOT)
    assert measure.status_code == 404 and "name" not in measure.json() and "message" not in measure.json()
    entity = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:X:nope")
    assert entity.status_code == 404 and "name" not in entity.json()


def test_a_device_id_another_process_created_is_a_409(client: TestClient, settings: Settings, store_backend: str) -> None:
    """Two processes on one store, without a bus between them: the second creation is refused by the store's
    insert-if-absent (before: 201, and the last write was kept), and the second process learns the device."""
    if store_backend == "sqlite":
        pytest.skip("one process owns a SQLite file (tests/ingest/test_registry_create_race.py races two stores)")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as other:
        assert client.post("/iot/devices", json={"devices": [DEVICE]}, headers=IOT | TENANT).status_code == 201
        assert other.get("/iot/devices/spot-001", headers=TENANT).status_code == 404  # not told (no bus)
        second = other.post("/iot/devices", json={"devices": [DEVICE | {"entity_type": "Streetlight"}]},
                            headers=IOT | TENANT)
        iota_problem(second, 409, "AlreadyExists", "DUPLICATE_DEVICE_ID")
        learnt = other.get("/iot/devices/spot-001", headers=TENANT)
        assert learnt.status_code == 200 and learnt.json()["entity_type"] == "ParkingSpot"
    assert client.get("/iot/devices/spot-001", headers=TENANT).json()["entity_type"] == "ParkingSpot"
