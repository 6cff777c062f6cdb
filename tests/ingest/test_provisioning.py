"""/iot/services and /iot/devices: FIWARE IoT Agent provisioning through HTTP, and the entities it creates."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.ingest.support import ENTITIES, IOT, provision

TENANT = {"fiware-service": "guro", "fiware-servicepath": "/parking"}
LD = {"NGSILD-Tenant": "guro"}


def test_service_group_crud(client: TestClient) -> None:
    group = {"apikey": "pk", "entity_type": "ParkingSpot", "resource": "/iot/json", "autoprovision": False,
             "attributes": [{"object_id": "o", "name": "occupied", "type": "Boolean"}],
             "static_attributes": [{"name": "category", "type": "Text", "value": "onStreet"}],
             "expected_interval_s": 600, "cbroker": "http://ignored:1026"}
    assert client.post("/iot/services", json={"services": [group]}, headers=IOT | TENANT).status_code == 201
    listed = client.get("/iot/services", headers=IOT | TENANT).json()
    assert listed["count"] == 1
    (stored,) = listed["services"]
    assert (stored["apikey"], stored["entity_type"], stored["autoprovision"], stored["service"],
            stored["service_path"]) == ("pk", "ParkingSpot", False, "guro", "/parking")
    assert stored["attributes"] == [{"object_id": "o", "name": "occupied", "type": "Boolean"}]
    assert stored["expected_interval_s"] == 600

    again = client.post("/iot/services", json={"services": [group]}, headers=IOT | TENANT)
    assert again.status_code == 409 and again.json()["status"] == 409

    put = client.put("/iot/services?resource=/iot/json&apikey=pk", json={"autoprovision": True}, headers=IOT | TENANT)
    assert put.status_code == 204
    assert client.get("/iot/services", headers=IOT | TENANT).json()["services"][0]["autoprovision"] is True
    # another tenant sees nothing, and cannot touch it
    assert client.get("/iot/services", headers=IOT | {"fiware-service": "other"}).json()["count"] == 0
    assert client.delete("/iot/services?apikey=pk", headers=IOT | {"fiware-service": "other"}).status_code == 404

    assert client.delete("/iot/services?resource=/iot/json&apikey=pk", headers=IOT | TENANT).status_code == 204
    assert client.get("/iot/services", headers=IOT | TENANT).json() == {"count": 0, "services": []}


def test_invalid_provisioning_is_a_400_problem(client: TestClient) -> None:
    bad = [
        {"services": [{"entity_type": "X"}]},  # no apikey
        {"services": [{"apikey": "a/b"}]},  # not an MQTT topic level
        {"services": [{"apikey": "ok", "static_attributes": [{"name": "loc", "type": "geo:point", "value": "x"}]}]},
    ]
    for body in bad:
        response = client.post("/iot/services", json=body, headers=IOT)
        assert response.status_code == 400, body
        assert set(response.json()) >= {"type", "title", "status", "detail"}
    assert client.post("/iot/services", content=b"apikey=x", headers={"content-type": "text/plain"}).status_code == 415


def test_device_crud_creates_the_entity(client: TestClient) -> None:
    provision(client, TENANT, apikey="pk", entity_type="ParkingSpot", devices=[{
        "device_id": "spot-001",
        "attributes": [{"object_id": "o", "name": "occupied", "type": "Boolean"}],
        "static_attributes": [{"name": "location", "type": "geo:point", "value": "37.4954,126.8874"}],
        "commands": [{"name": "reset", "type": "command"}],
    }])
    device = client.get("/iot/devices/spot-001", headers=IOT | TENANT).json()
    assert (device["apikey"], device["entity_type"], device["entity_name"]) == (
        "pk", "ParkingSpot", "urn:ngsi-ld:ParkingSpot:spot-001")  # apikey and type from the group

    entity = client.get(ENTITIES + "urn:ngsi-ld:ParkingSpot:spot-001", headers=LD).json()
    assert entity["type"] == "ParkingSpot"
    assert entity["location"] == {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.8874, 37.4954]}}
    assert entity["reset"]["value"] == "" and entity["reset_status"]["value"] == "UNKNOWN"

    assert client.post("/iot/devices", json={"devices": [{"device_id": "spot-001"}]}, headers=IOT | TENANT).status_code == 409
    listed = client.get("/iot/devices", headers=IOT | TENANT).json()
    assert listed["count"] == 1 and listed["devices"][0]["device_id"] == "spot-001"

    update = {"static_attributes": [{"name": "location", "type": "geo:point", "value": "37.5,126.9"}]}
    assert client.put("/iot/devices/spot-001", json=update, headers=IOT | TENANT).status_code == 204
    entity = client.get(ENTITIES + "urn:ngsi-ld:ParkingSpot:spot-001", headers=LD).json()
    assert entity["location"]["value"]["coordinates"] == [126.9, 37.5]
    assert client.put("/iot/devices/spot-001", json={"device_id": "x"}, headers=IOT | TENANT).status_code == 400

    assert client.delete("/iot/devices/spot-001", headers=IOT | TENANT).status_code == 204
    assert client.get("/iot/devices/spot-001", headers=IOT | TENANT).status_code == 404
    # the entity (the city's record) stays
    assert client.get(ENTITIES + "urn:ngsi-ld:ParkingSpot:spot-001", headers=LD).status_code == 200


def test_device_entity_name_and_default_tenant(client: TestClient) -> None:
    body: dict[str, Any] = {"devices": [
        {"device_id": "a1", "apikey": "k9", "entity_type": "Streetlight", "entity_name": "light-a1"},
        {"device_id": "a2", "apikey": "k9", "entity_name": "urn:ngsi-ld:Streetlight:custom"},
    ]}
    assert client.post("/iot/devices", json=body, headers=IOT).status_code == 201
    # no fiware-service: the NGSI-LD default tenant, readable without NGSILD-Tenant
    assert client.get(ENTITIES + "urn:ngsi-ld:Streetlight:light-a1").json()["type"] == "Streetlight"
    assert client.get(ENTITIES + "urn:ngsi-ld:Streetlight:custom").json()["type"] == "Device"
    assert client.post("/iot/devices", json={"devices": [{"device_id": "a3"}]}, headers=IOT).status_code == 400  # no apikey


def test_deleting_a_group_with_devices(client: TestClient) -> None:
    provision(client, TENANT, apikey="gk", devices=[{"device_id": "g1"}, {"device_id": "g2"}])
    assert client.delete("/iot/services?apikey=gk&device=true", headers=IOT | TENANT).status_code == 204
    assert client.get("/iot/devices", headers=IOT | TENANT).json()["count"] == 0
