"""Tenancy of the IoT Agent API (QA6 S1): an apikey belongs to one tenant, because measures (the MQTT topic, the HTTP
`k`) name no tenant; a device of one tenant can never receive another tenant's measures; the ingest statistics of a
tenant show no other tenant's apikeys; single-item provisioning operations stay in their fiware-servicepath."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.ingest.support import ENTITIES, IOT, provision
from ucity.core.config import Settings
from ucity.ingest.registry import GROUP_KIND
from ucity.server import create_app

OWNER = {"fiware-service": "guro"}
OTHER = {"fiware-service": "evil"}
ATTRS = [{"object_id": "t", "name": "temperature", "type": "Number", "metadata": {"unitCode": {"type": "Text",
                                                                                              "value": "CEL"}}}]


def owner_station(client: TestClient, autoprovision: bool = False) -> None:
    provision(client, OWNER, apikey="hk", entity_type="WeatherObserved", autoprovision=autoprovision, attributes=ATTRS,
              devices=[{"device_id": "s1"}])


def test_a_group_with_another_tenants_apikey_is_refused(client: TestClient) -> None:
    owner_station(client)
    stolen = client.post("/iot/services", headers=IOT | OTHER, json={"services": [
        {"apikey": "hk", "resource": "/iot/evil", "entity_type": "Stolen", "autoprovision": True}]})
    assert stolen.status_code == 409 and stolen.headers["content-type"].startswith("application/problem+json")
    assert "another service" in stolen.json()["detail"] and "guro" not in stolen.json()["detail"]
    # the owner may use its apikey at another resource of its own; and two tenants claiming one apikey in one
    # request is refused too
    assert client.post("/iot/services", headers=IOT | OWNER, json={"services": [
        {"apikey": "hk", "resource": "/iot/other", "entity_type": "WeatherObserved"}]}).status_code == 201
    assert client.get("/iot/services", headers=OTHER).json()["count"] == 0


def test_a_device_with_another_tenants_apikey_is_refused_and_the_owners_measures_stay_its_own(
        client: TestClient) -> None:
    owner_station(client)
    stolen = client.post("/iot/devices", headers=IOT | OTHER, json={"devices": [
        {"device_id": "victim1", "apikey": "hk", "entity_type": "Stolen"}]})
    assert stolen.status_code == 409
    # the owner provisions its device after the attempt, and its measures reach its own entity, mapped by its group
    assert client.post("/iot/devices", headers=IOT | OWNER, json={"devices": [{"device_id": "victim1"}]}).status_code == 201
    assert client.post("/iot/json?k=hk&i=victim1", json={"t": 21.5}).status_code == 200
    entity = client.get(ENTITIES + "urn:ngsi-ld:WeatherObserved:victim1", headers={"NGSILD-Tenant": "guro"}).json()
    assert entity["temperature"]["value"] == 21.5 and entity["temperature"]["unitCode"] == "CEL"
    assert client.get(ENTITIES + "urn:ngsi-ld:Stolen:victim1", headers={"NGSILD-Tenant": "evil"}).status_code == 404
    # a device of another tenant cannot take the apikey over by a PUT either
    assert client.post("/iot/devices", headers=IOT | OTHER, json={"devices": [{"device_id": "d9", "apikey": "ek"}]
                                                                     }).status_code == 201
    moved = client.put("/iot/devices/d9", headers=IOT | OTHER, json={"apikey": "hk"})
    assert moved.status_code in (400, 409)


def test_stored_groups_of_two_tenants_with_one_apikey_keep_each_device_in_its_own_tenant(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """Data stored before the rule: the devices keep their own tenant's group; none is autoprovisioned for it."""
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        owner_station(client, autoprovision=True)
        store = client.app.state.ucity.store  # type: ignore[attr-defined]
        # before the rule, another tenant could add a group with the same apikey (now refused by the API); it sorts
        # first when the groups are read at start
        group: dict[str, Any] = {"service": "aaa", "service_path": "/", "apikey": "hk", "resource": "/iot/aaa",
                                 "entity_type": "Stolen", "autoprovision": True, "attributes": []}
        client.portal.call(store.put_doc, GROUP_KIND, "aaa", "/iot/aaa|hk", group)  # type: ignore[union-attr]
    caplog.clear()
    with caplog.at_level(logging.ERROR), TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        assert "apikey *** is used in several services (aaa, guro)" in caplog.text  # masked (QA8 F9)
        assert "apikey hk " not in caplog.text
        assert client.post("/iot/json?k=hk&i=s1", json={"t": 19}).status_code == 200
        entity = client.get(ENTITIES + "urn:ngsi-ld:WeatherObserved:s1", headers={"NGSILD-Tenant": "guro"}).json()
        assert entity["temperature"]["value"] == 19 and entity["temperature"]["unitCode"] == "CEL"
        refused = client.post("/iot/json?k=hk&i=new-one", json={"t": 1})
        assert refused.status_code == 404  # whose device would it be? nobody's
        assert client.get("/iot/devices/new-one", headers=OWNER).status_code == 404
        assert client.get("/iot/devices/new-one", headers={"fiware-service": "aaa"}).status_code == 404


def test_a_tenants_stats_show_no_other_tenants_apikeys(client: TestClient) -> None:
    owner_station(client)
    assert client.post("/iot/json?k=hk&i=unknown-1", json={"t": 1}).status_code == 404
    assert client.post("/iot/json?k=nobodys&i=x", json={"t": 1}).status_code == 404
    owner = client.get("/api/v1/ingest/stats", headers=OWNER).json()
    assert [(r["service"], r["apikey"], r["device_id"]) for r in owner["devices"]] == [("guro", "hk", "unknown-1")]
    other = client.get("/api/v1/ingest/stats", headers=OTHER).json()
    assert other["devices"] == [] and other["totals"]["rejected"] == 0
    platform = client.get("/api/v1/ingest/stats").json()  # the default tenant: the platform's own rows
    assert [(r["service"], r["apikey"]) for r in platform["devices"]] == [(None, "nobodys")]


def test_single_item_operations_stay_in_their_service_path(client: TestClient) -> None:
    legacy = OWNER | {"fiware-servicepath": "/legacy"}
    provision(client, legacy, apikey="lk", entity_type="Device", devices=[{"device_id": "d1"}, {"device_id": "d2"}])
    elsewhere = OWNER | {"fiware-servicepath": "/elsewhere"}
    assert client.get("/iot/devices/d1", headers=elsewhere).status_code == 404
    assert client.put("/iot/devices/d2", headers=IOT | elsewhere, json={"entity_type": "Moved"}).status_code == 404
    assert client.delete("/iot/devices/d2", headers=elsewhere).status_code == 404
    assert client.put("/iot/services?apikey=lk", headers=IOT | elsewhere, json={"entity_type": "X"}).status_code == 404
    assert client.delete("/iot/services?apikey=lk", headers=elsewhere).status_code == 404
    assert client.get("/iot/devices/d2", headers=legacy).json()["entity_type"] == "Device"  # nothing changed
    # in its own path, with `/*`, or with no path header: found
    for headers in (legacy, OWNER | {"fiware-servicepath": "/*"}, OWNER):
        assert client.get("/iot/devices/d1", headers=headers).status_code == 200
    assert client.delete("/iot/devices/d2", headers=legacy).status_code == 204
    assert client.get("/iot/services", headers=legacy).json()["count"] == 1
