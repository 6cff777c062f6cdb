"""NGSI-LD type and attribute discovery over HTTP (ETSI GS CIM 009 §5.7.5–§5.7.10, §6.25–§6.28)."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.api.entity_support import (
    BATCH,
    CORE,
    DEFAULT_VOCAB,
    NGSI,
    ContextServer,
    assert_problem,
    context_server,
    link,
)

__all__ = ["context_server"]

TYPES = f"{NGSI}/types"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"  # a core-context term
ATTRIBUTES = f"{NGSI}/attributes"


def _seed(client: TestClient, headers: dict[str, str] | None = None) -> None:
    entities: list[dict[str, Any]] = [
        {"id": "urn:ngsi-ld:Building:1", "type": "Building", "height": {"type": "Property", "value": 10},
         "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"}},
        {"id": "urn:ngsi-ld:Building:2", "type": ["Building", "Shop"], "height": {"type": "Property", "value": 3},
         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}},
        {"id": "urn:ngsi-ld:Person:1", "type": "Person", "name": {"type": "Property", "value": "Kim"}},
    ]
    response = client.post(f"{BATCH}/create", json=entities, headers=headers)
    assert response.status_code == 201, response.text


def _without_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "id"}


def test_types_lists_the_type_names(client: TestClient) -> None:
    _seed(client)
    response = client.get(TYPES)
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("urn:ngsi-ld:EntityTypeList:")
    assert _without_id(body) == {"type": "EntityTypeList", "typeList": ["Building", "Person", "Shop"]}
    assert response.headers["link"].startswith(f"<{CORE}>")


def test_types_of_an_empty_broker_is_an_empty_list(client: TestClient) -> None:
    assert _without_id(client.get(TYPES).json()) == {"type": "EntityTypeList", "typeList": []}


def test_types_details(client: TestClient) -> None:
    _seed(client)
    response = client.get(TYPES, params={"details": "true"})
    assert response.status_code == 200
    body = [{**t, "attributeNames": sorted(t["attributeNames"])} for t in response.json()]
    assert body == [
        {"id": DEFAULT_VOCAB + "Building", "type": "EntityType", "typeName": "Building",
         "attributeNames": ["height", "location", "owner"]},
        {"id": DEFAULT_VOCAB + "Person", "type": "EntityType", "typeName": "Person", "attributeNames": ["name"]},
        {"id": DEFAULT_VOCAB + "Shop", "type": "EntityType", "typeName": "Shop",
         "attributeNames": ["height", "location"]},
    ]


def test_type_information(client: TestClient) -> None:
    _seed(client)
    response = client.get(f"{TYPES}/Building")
    assert response.status_code == 200
    body = response.json()
    body["attributeDetails"].sort(key=lambda a: a["attributeName"])
    assert body == {
        "id": DEFAULT_VOCAB + "Building", "type": "EntityTypeInfo", "typeName": "Building", "entityCount": 2,
        "attributeDetails": [
            {"id": DEFAULT_VOCAB + "height", "type": "Attribute", "attributeName": "height",
             "attributeTypes": ["Property"]},
            {"id": LOCATION, "type": "Attribute", "attributeName": "location", "attributeTypes": ["GeoProperty"]},
            {"id": DEFAULT_VOCAB + "owner", "type": "Attribute", "attributeName": "owner",
             "attributeTypes": ["Relationship"]},
        ]}


def test_type_information_by_full_iri(client: TestClient) -> None:
    _seed(client)
    response = client.get(f"{TYPES}/{DEFAULT_VOCAB}Person")
    assert response.status_code == 200
    assert response.json()["entityCount"] == 1


def test_unknown_type_is_404(client: TestClient) -> None:
    _seed(client)
    assert_problem(client.get(f"{TYPES}/Nope"), 404, "ResourceNotFound")


def test_attributes_lists_the_attribute_names(client: TestClient) -> None:
    _seed(client)
    body = client.get(ATTRIBUTES).json()
    assert body["id"].startswith("urn:ngsi-ld:AttributeList:")
    assert body["type"] == "AttributeList"
    assert sorted(body["attributeList"]) == ["height", "location", "name", "owner"]


def test_attributes_details(client: TestClient) -> None:
    _seed(client)
    response = client.get(ATTRIBUTES, params={"details": "true"})
    assert sorted(response.json(), key=lambda a: a["attributeName"]) == [
        {"id": DEFAULT_VOCAB + "height", "type": "Attribute", "attributeName": "height",
         "typeNames": ["Building", "Shop"]},
        {"id": LOCATION, "type": "Attribute", "attributeName": "location", "typeNames": ["Building", "Shop"]},
        {"id": DEFAULT_VOCAB + "name", "type": "Attribute", "attributeName": "name", "typeNames": ["Person"]},
        {"id": DEFAULT_VOCAB + "owner", "type": "Attribute", "attributeName": "owner", "typeNames": ["Building"]},
    ]


def test_attribute_information(client: TestClient) -> None:
    _seed(client)
    response = client.get(f"{ATTRIBUTES}/height")
    assert response.status_code == 200
    assert response.json() == {"id": DEFAULT_VOCAB + "height", "type": "Attribute", "attributeName": "height",
                               "attributeCount": 2, "attributeTypes": ["Property"],
                               "typeNames": ["Building", "Shop"]}


def test_unknown_attribute_is_404(client: TestClient) -> None:
    _seed(client)
    body = assert_problem(client.get(f"{ATTRIBUTES}/nope"), 404, "ResourceNotFound")
    assert "nope" in body["detail"]


def test_discovery_follows_deletes(client: TestClient) -> None:
    _seed(client)
    assert client.delete(f"{NGSI}/entities/urn:ngsi-ld:Person:1").status_code == 204
    assert client.get(TYPES).json()["typeList"] == ["Building", "Shop"]
    assert_problem(client.get(f"{ATTRIBUTES}/name"), 404, "ResourceNotFound")


def test_discovery_compacts_with_the_user_context(client: TestClient, context_server: ContextServer) -> None:
    url = context_server.serve("/ctx.jsonld", {"Bldg": DEFAULT_VOCAB + "Building", "h": DEFAULT_VOCAB + "height"})
    _seed(client)
    assert client.get(TYPES, headers=link(url)).json()["typeList"] == ["Bldg", "Person", "Shop"]
    info = client.get(f"{TYPES}/Bldg", headers=link(url)).json()
    assert info["typeName"] == "Bldg"
    assert sorted(a["attributeName"] for a in info["attributeDetails"]) == ["h", "location", "owner"]
    assert client.get(f"{ATTRIBUTES}/h", headers=link(url)).json()["attributeName"] == "h"


def test_discovery_json_ld(client: TestClient) -> None:
    _seed(client)
    response = client.get(f"{TYPES}/Person", headers={"Accept": "application/ld+json"})
    assert response.headers["content-type"] == "application/ld+json"
    assert response.json()["@context"] == CORE


def test_discovery_is_per_tenant(client: TestClient) -> None:
    _seed(client, headers={"NGSILD-Tenant": "t1"})
    tenant = {"NGSILD-Tenant": "t1"}
    assert client.get(TYPES, headers=tenant).json()["typeList"] == ["Building", "Person", "Shop"]
    assert client.get(TYPES).json()["typeList"] == []
    assert_problem(client.get(f"{TYPES}/Building"), 404, "ResourceNotFound")


def test_discovery_rejects_geo_json(client: TestClient) -> None:
    assert_problem(client.get(TYPES, headers={"Accept": "application/geo+json"}), 406, "NotAcceptable")


def test_details_must_be_a_boolean(client: TestClient) -> None:
    assert_problem(client.get(TYPES, params={"details": "yes"}), 400, "BadRequestData")
