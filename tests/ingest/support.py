"""Helpers shared by the ingest tests."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

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
