"""FIWARE IoT Agent JSON compatibility found by QA6: the HTTP `t` parameter, refused IoT Agent features
(expression, multi-entity, JEXL explicitAttrs), static attributes with arrays and metadata, timezones,
the legacy group `type` and the apikey of a device that cannot change."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.ingest.support import ENTITIES, IOT, TEMPORAL, provision
from ucity.ingest.schema import device_from_doc, parse_device

TENANT = {"fiware-service": "guro"}
LD = {"NGSILD-Tenant": "guro"}
ENTITY = "urn:ngsi-ld:WeatherObserved:ws-01"
ATTRS = [{"object_id": "t", "name": "temperature", "type": "Number"}]


def station(client: TestClient, **device: Any) -> None:
    provision(client, TENANT, apikey="wk", entity_type="WeatherObserved",
              devices=[{"device_id": "ws-01", "attributes": ATTRS, **device}])


def history(client: TestClient, attr: str = "temperature") -> list[tuple[Any, str]]:
    body = client.get(TEMPORAL + ENTITY, headers=LD, params={"attrs": attr}).json()
    return sorted((i["observedAt"], i["value"]) for i in body.get(attr, []))


def device_row(client: TestClient) -> dict[str, Any]:
    rows = client.get("/api/v1/ingest/stats", headers=TENANT).json()["devices"]
    (row,) = [r for r in rows if r["device_id"] == "ws-01"]
    return row


# -- 6. the `t` query parameter ------------------------------------------------------------------------
def test_t_is_the_time_of_measures_without_their_own(client: TestClient) -> None:
    station(client)
    response = client.post("/iot/json?k=wk&i=ws-01&t=2026-01-01T00:00:00Z",
                           json=[{"t": 1}, {"t": 2}, {"t": 3, "TimeInstant": "2026-02-01T00:00:00Z"}])
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3
    # each measure of the array its own instant (history keeps one instance per observedAt); the own time wins
    assert history(client) == [("2026-01-01T00:00:00.000000Z", 1), ("2026-01-01T00:00:00.000001Z", 2),
                               ("2026-02-01T00:00:00.000000Z", 3)]


def test_t_without_offset_is_in_the_device_timezone(client: TestClient) -> None:
    station(client, timezone="Asia/Seoul")
    assert client.post("/iot/json?k=wk&i=ws-01&t=2026-01-01T09:00:00", json={"t": 5}).status_code == 200
    assert client.get(ENTITIES + ENTITY, headers=LD).json()["temperature"]["observedAt"] == "2026-01-01T00:00:00.000000Z"


@pytest.mark.parametrize("stamp", ["yesterday", "0001-01-01T00:00:00+09:00", "9000-01-01T00:00:00Z"])
def test_an_invalid_t_is_a_400_counted_as_invalid_time(client: TestClient, stamp: str) -> None:
    station(client)
    response = client.post("/iot/json", params={"k": "wk", "i": "ws-01", "t": stamp}, json={"t": 5})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["rejected"][0]["reason"] == "invalid-time" and body["rejected"][0]["attribute"] == "t"
    assert "측정 시각" in body["detail"] and "invalid measure time" in body["detail"]
    assert client.get(ENTITIES + ENTITY, headers=LD).json().get("temperature") is None  # nothing written
    assert device_row(client)["reasons"] == {"invalid-time": 1}


# -- 7. expression and multi-entity are refused ----------------------------------------------------------
@pytest.mark.parametrize(("attribute", "field"), [
    ({"object_id": "raw", "name": "fillingLevel", "type": "Number", "expression": "raw / 100"}, "expression"),
    ({"object_id": "v1", "name": "vol", "type": "Number", "entity_name": "urn:ngsi-ld:WaterMeter:w1"}, "entity_name"),
    ({"object_id": "v1", "name": "vol", "type": "Number", "entity_type": "WaterMeter"}, "entity_type"),
])
def test_expression_and_multi_entity_attributes_are_refused(client: TestClient, attribute: dict[str, Any],
                                                            field: str) -> None:
    for path, body in [("/iot/services", {"services": [{"apikey": "k7", "attributes": [attribute]}]}),
                       ("/iot/devices", {"devices": [{"device_id": "d7", "apikey": "k7x", "attributes": [attribute]}]})]:
        response = client.post(path, json=body, headers=IOT | TENANT)
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert f"{field} is not supported" in detail and "지원하지 않음" in detail
    assert client.get("/iot/services", headers=TENANT).json()["count"] == 0
    assert client.get("/iot/devices", headers=TENANT).json()["count"] == 0


def test_a_command_expression_is_refused(client: TestClient) -> None:
    body = {"services": [{"apikey": "k7", "commands": [{"name": "reset", "type": "command", "expression": "{set: 0}"}]}]}
    response = client.post("/iot/services", json=body, headers=IOT | TENANT)
    assert response.status_code == 400 and "expression is not supported" in response.json()["detail"]


def test_an_empty_expression_is_no_expression(client: TestClient) -> None:
    station(client, attributes=[{"object_id": "t", "name": "temperature", "type": "Number", "expression": ""}])
    assert client.post("/iot/json?k=wk&i=ws-01", json={"t": 85}).json()["accepted"] == 1


# -- 8. static attributes: arrays, objects and metadata ------------------------------------------------
def test_fiware_static_attribute_example_with_arrays_and_metadata(client: TestClient) -> None:
    statics = [
        {"name": "category", "type": "Text", "value": ["actuator", "sensor"]},
        {"name": "controlledProperty", "type": "Text", "value": ["light"],
         "metadata": {"includes": {"type": "Text", "value": ["state", "luminosity"]},
                      "alias": {"type": "Text", "value": "lamp"}}},
        {"name": "mounting", "type": "Text", "value": {"height": 3.5, "pole": "P-17"}},
        {"name": "maxLoad", "type": "Number", "value": 12, "metadata": {"unitCode": {"type": "Text", "value": "KGM"}}},
        {"name": "refParts", "type": "Relationship", "value": ["urn:ngsi-ld:Part:1", "urn:ngsi-ld:Part:2"]},
    ]
    provision(client, TENANT, apikey="lk", entity_type="Lamp", static_attributes=statics,
              devices=[{"device_id": "lamp-1"}])
    entity = client.get(ENTITIES + "urn:ngsi-ld:Lamp:lamp-1", headers=LD).json()
    assert entity["category"] == {"type": "Property", "value": ["actuator", "sensor"]}
    assert entity["controlledProperty"] == {"type": "Property", "value": ["light"],
                                            "includes": {"type": "Property", "value": ["state", "luminosity"]},
                                            "alias": {"type": "Property", "value": "lamp"}}
    assert entity["mounting"]["value"] == {"height": 3.5, "pole": "P-17"}
    assert entity["maxLoad"] == {"type": "Property", "value": 12, "unitCode": "KGM"}
    assert entity["refParts"] == {"type": "Relationship", "object": ["urn:ngsi-ld:Part:1", "urn:ngsi-ld:Part:2"]}
    # the metadata is kept as provisioned
    (group,) = client.get("/iot/services", headers=TENANT).json()["services"]
    assert group["static_attributes"][1]["metadata"] == statics[1]["metadata"]
    # a group change reaches the existing entity, metadata included
    statics[1]["metadata"] = {"alias": {"type": "Text", "value": "street lamp"}}
    response = client.put("/iot/services?apikey=lk", json={"static_attributes": statics}, headers=IOT | TENANT)
    assert response.status_code == 204, response.text
    entity = client.get(ENTITIES + "urn:ngsi-ld:Lamp:lamp-1", headers=LD).json()
    assert entity["controlledProperty"]["alias"] == {"type": "Property", "value": "street lamp"}


@pytest.mark.parametrize("static", [
    {"name": "location", "type": "geo:point", "value": ["37.5", "126.9"]},  # the geo types still need geometry
    {"name": "refParts", "type": "Relationship", "value": ["not a uri"]},
    {"name": "maxLoad", "type": "Number", "value": 1, "metadata": {"unitCode": {"value": 5}}},
    {"name": "maxLoad", "type": "Number", "value": 1, "metadata": {"observedAt": {"value": "2026-01-01T00:00:00Z"}}},
    {"name": "maxLoad", "type": "Number", "value": 1, "metadata": {"alias": {"type": "Text", "value": None}}},
])
def test_invalid_static_attributes_are_still_refused(client: TestClient, static: dict[str, Any]) -> None:
    body = {"services": [{"apikey": "lk", "static_attributes": [static]}]}
    assert client.post("/iot/services", json=body, headers=IOT | TENANT).status_code == 400


# -- 9. timezones --------------------------------------------------------------------------------------
def test_an_unknown_timezone_is_refused(client: TestClient) -> None:
    for path, body in [("/iot/services", {"services": [{"apikey": "k9", "timezone": "Mars/Olympus"}]}),
                       ("/iot/devices", {"devices": [{"device_id": "tz1", "apikey": "k9x", "timezone": "Mars/Olympus"}]}),
                       ("/iot/devices", {"devices": [{"device_id": "tz1", "apikey": "k9x", "timezone": "../etc/passwd"}]})]:
        response = client.post(path, json=body, headers=IOT | TENANT)
        assert response.status_code == 400, response.text
        assert "unknown timezone" in response.json()["detail"] and "알 수 없는 시간대" in response.json()["detail"]
    provision(client, TENANT, apikey="k9", devices=[{"device_id": "tz1", "timezone": "Asia/Seoul"}])
    response = client.put("/iot/devices/tz1", json={"timezone": "Asia/Seul"}, headers=IOT | TENANT)
    assert response.status_code == 400
    assert client.get("/iot/devices/tz1", headers=TENANT).json()["timezone"] == "Asia/Seoul"


def test_a_stored_device_with_an_unknown_timezone_still_loads() -> None:
    # stored before the check: kept (logged), so that the device does not vanish at the next start
    device = device_from_doc("guro", {"device_id": "old", "apikey": "k", "timezone": "Mars/Olympus"})
    assert device.timezone == "Mars/Olympus"
    with pytest.raises(Exception, match="unknown timezone"):
        parse_device({"device_id": "old", "apikey": "k", "timezone": "Mars/Olympus"}, "guro", "/", None)


# -- S3: legacy `type`, explicitAttrs as JEXL, the apikey of a device ------------------------------------
def test_the_legacy_group_type_is_the_entity_type(client: TestClient) -> None:
    response = client.post("/iot/services", json={"services": [{"apikey": "lt", "type": "Light"}]}, headers=IOT | TENANT)
    assert response.status_code == 201, response.text
    assert client.post("/iot/devices", json={"devices": [{"device_id": "l1", "apikey": "lt"}]},
                       headers=IOT | TENANT).status_code == 201
    (group,) = client.get("/iot/services", headers=TENANT).json()["services"]
    assert group["entity_type"] == "Light"
    assert client.get(ENTITIES + "urn:ngsi-ld:Light:l1", headers=LD).status_code == 200
    assert client.put("/iot/services?apikey=lt", json={"type": "Lamp"}, headers=IOT | TENANT).status_code == 204
    assert client.get("/iot/services", headers=TENANT).json()["services"][0]["entity_type"] == "Lamp"
    response = client.post("/iot/services", json={"services": [{"apikey": "l2", "type": "A", "entity_type": "B"}]},
                           headers=IOT | TENANT)
    assert response.status_code == 400 and "differ" in response.json()["detail"]


@pytest.mark.parametrize("value", ["['temperature']", "{object_id:'t'}", ["temperature"]])
def test_explicit_attrs_as_jexl_is_refused_clearly(client: TestClient, value: Any) -> None:
    response = client.post("/iot/services", json={"services": [{"apikey": "ea", "explicitAttrs": value}]},
                           headers=IOT | TENANT)
    assert response.status_code == 400
    assert "explicitAttrs takes true or false" in response.json()["detail"]
    ok = client.post("/iot/services", json={"services": [{"apikey": "eb", "explicitAttrs": "true"}]}, headers=IOT | TENANT)
    assert ok.status_code == 201


def test_the_apikey_of_a_device_cannot_change(client: TestClient) -> None:
    station(client)
    response = client.put("/iot/devices/ws-01", json={"apikey": "zzz"}, headers=IOT | TENANT)
    assert response.status_code == 400 and "apikey cannot be changed" in response.json()["detail"]
    assert client.get("/iot/devices/ws-01", headers=TENANT).json()["apikey"] == "wk"
    assert client.put("/iot/devices/ws-01", json={"apikey": "wk", "timezone": "UTC"},
                      headers=IOT | TENANT).status_code == 204


@pytest.mark.parametrize(("group", "field"), [({"entityNameExp": "'urn:x:' + id"}, "entityNameExp"),
                                              ({"payloadType": "ngsiv2"}, "payloadType")])
def test_other_features_that_would_store_elsewhere_are_refused(client: TestClient, group: dict[str, Any],
                                                               field: str) -> None:
    response = client.post("/iot/services", json={"services": [{"apikey": "kx", **group}]}, headers=IOT | TENANT)
    assert response.status_code == 400 and f"{field} " in response.json()["detail"]
    device = {"devices": [{"device_id": "dx", "apikey": "kx", "payloadType": "ngsild"}]}
    assert client.post("/iot/devices", json=device, headers=IOT | TENANT).status_code == 400
    ok = {"services": [{"apikey": "ky", "payloadType": "iotagent", "entityNameExp": ""}]}
    assert client.post("/iot/services", json=ok, headers=IOT | TENANT).status_code == 201
