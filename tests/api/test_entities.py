"""The NGSI-LD entity API over HTTP (ETSI GS CIM 009 §5.6, §5.7, §6.4–§6.7): create, retrieve,
the update family, attribute operations, representations, content negotiation, user @contexts,
queries, tenants and durability. Every test goes through a real app on a fresh SQLite data dir.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import (
    BATCH,
    CORE,
    CORE_LINK,
    DEFAULT_VOCAB,
    ENTITIES,
    NGSI,
    ContextServer,
    assert_problem,
    context_server,
    create,
    entity_url,
    link,
    query_ids,
    retrieve,
)
from ucity.core.config import Settings
from ucity.server import create_app

__all__ = ["context_server"]  # the fixture, imported for pytest

B1 = "urn:ngsi-ld:Building:b1"
GPS = "urn:ngsi-ld:Dataset:gps"
NULL = "urn:ngsi-ld:null"


def building(entity_id: str = B1, **attrs: Any) -> dict[str, Any]:
    return {"id": entity_id, "type": "Building", **attrs}


def prop(value: Any, **members: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **members}


def rel(target: str, **members: Any) -> dict[str, Any]:
    return {"type": "Relationship", "object": target, **members}


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


RICH = building(
    name=prop("Main hall"),
    temperature=prop(21.5, unitCode="CEL", observedAt="2024-01-01T00:00:00Z",
                     accuracy=prop(0.5, method=prop("calibrated"))),
    owner=rel("urn:ngsi-ld:Person:p1"),
    location=point(127.0, 37.5),
    label={"type": "LanguageProperty", "languageMap": {"ko": "본관", "en": "main hall"}},
    config={"type": "JsonProperty", "json": {"modes": [1, 2], "spare": None}},
    floors={"type": "ListProperty", "valueList": [1, 2, 3]},
    address=prop({"city": "Seoul", "zip": "08000", "lines": ["a", "b"]}),
)


# -- create ------------------------------------------------------------------------------------
def test_create_is_201_with_location_and_empty_body(client: TestClient) -> None:
    response = client.post(ENTITIES, json=building(name=prop("A")))
    assert response.status_code == 201
    assert response.headers["location"] == f"{ENTITIES}/{B1}"
    assert response.content == b""


def test_create_then_retrieve_round_trips_every_attribute_kind(client: TestClient) -> None:
    create(client, RICH)
    expected = {**RICH, "temperature": {**RICH["temperature"], "observedAt": "2024-01-01T00:00:00.000000Z"}}
    assert retrieve(client, B1) == expected


def test_create_existing_entity_is_409_already_exists(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    assert_problem(client.post(ENTITIES, json=building(name=prop("B"))), 409, "AlreadyExists")
    assert retrieve(client, B1)["name"] == prop("A")


def test_create_accepts_concise_attributes(client: TestClient) -> None:
    create(client, building(name="A", height={"value": 12, "unitCode": "MTR"},
                            owner={"object": "urn:ngsi-ld:Person:p1"},
                            location={"type": "Point", "coordinates": [127.0, 37.5]},
                            label={"languageMap": {"en": "x"}}))
    assert retrieve(client, B1) == building(
        name=prop("A"), height=prop(12, unitCode="MTR"), owner=rel("urn:ngsi-ld:Person:p1"),
        location=point(127.0, 37.5), label={"type": "LanguageProperty", "languageMap": {"en": "x"}})


def test_create_with_several_types_and_scope(client: TestClient) -> None:
    create(client, {"id": B1, "type": ["Building", "Shop"], "scope": ["/Seoul/Guro", "/Seoul"]})
    assert retrieve(client, B1) == {"id": B1, "type": ["Building", "Shop"], "scope": ["/Seoul/Guro", "/Seoul"]}


INVALID_ENTITIES = {
    "id not a URI": {"id": "b1", "type": "Building"},
    "id missing": {"type": "Building"},
    "id not a string": {"id": 7, "type": "Building"},
    "type missing": {"id": B1},
    "type empty": {"id": B1, "type": ""},
    "type not a string": {"id": B1, "type": 3},
    "attribute name with a space": building(**{"bad name": prop(1)}),
    "attribute name with =": building(**{"a=b": prop(1)}),
    "JSON null attribute": building(name=None),
    "JSON null value": building(name=prop(None)),
    "observedAt not a date-time": building(t=prop(1, observedAt="yesterday")),
    "observedAt not a string": building(t=prop(1, observedAt=1700000000)),
    "Relationship object not a URI": building(owner=rel("not a uri")),
    "Relationship without object": building(owner={"type": "Relationship", "value": "urn:ngsi-ld:P:1"}),
    "unknown attribute type": building(a={"type": "Attribute", "value": 1}),
    "GeoJSON point with one coordinate": building(location={"type": "GeoProperty",
                                                            "value": {"type": "Point", "coordinates": [1]}}),
    "GeoJSON polygon not closed": building(location={"type": "GeoProperty", "value": {
        "type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 2]]]}}),
    "GeoJSON unknown geometry": building(location={"type": "GeoProperty",
                                                   "value": {"type": "Circle", "coordinates": [1, 2]}}),
    "GeoJSON latitude out of range": building(location={"type": "GeoProperty",
                                                        "value": {"type": "Point", "coordinates": [1, 95]}}),
    "languageMap value not a string": building(label={"type": "LanguageProperty", "languageMap": {"en": 5}}),
    "ListProperty without an array": building(floors={"type": "ListProperty", "valueList": 3}),
    "datasetId not a URI": building(speed=prop(1, datasetId="gps")),
    "two default instances": building(speed=[prop(1), prop(2)]),
    "scope not starting with /": {"id": B1, "type": "Building", "scope": "Seoul"},
    "NGSI-LD Null value": building(name=prop(NULL)),
    "NGSI-LD Null object": building(owner=rel(NULL)),
    "NGSI-LD Null languageMap": building(label={"type": "LanguageProperty", "languageMap": {"@none": NULL}}),
    "invalid sub-property": building(t=prop(1, accuracy=prop(None))),
}


@pytest.mark.parametrize("body", INVALID_ENTITIES.values(), ids=INVALID_ENTITIES.keys())
def test_create_invalid_entity_is_400_bad_request_data(client: TestClient, body: dict[str, Any]) -> None:
    assert_problem(client.post(ENTITIES, json=body), 400, "BadRequestData")
    assert client.get(entity_url(B1)).status_code == 404


def test_create_with_a_json_array_body_is_400(client: TestClient) -> None:
    assert_problem(client.post(ENTITIES, json=[building()]), 400, "BadRequestData")


# -- retrieve ----------------------------------------------------------------------------------
def test_retrieve_unknown_entity_is_404_resource_not_found(client: TestClient) -> None:
    body = assert_problem(client.get(entity_url("urn:ngsi-ld:Building:none")), 404, "ResourceNotFound")
    assert "urn:ngsi-ld:Building:none" in body["detail"]


def test_retrieve_with_an_id_that_is_not_a_uri_is_400(client: TestClient) -> None:
    assert_problem(client.get(entity_url("b1")), 400, "BadRequestData")


def test_retrieve_attrs_projects_attributes(client: TestClient) -> None:
    create(client, RICH)
    assert retrieve(client, B1, attrs="name,owner") == building(name=RICH["name"], owner=RICH["owner"])


def test_retrieve_attrs_naming_no_attribute_of_the_entity_keeps_id_and_type(client: TestClient) -> None:
    create(client, RICH)
    assert retrieve(client, B1, attrs="nothing") == building()


def test_retrieve_pick_selects_id_and_attributes(client: TestClient) -> None:
    create(client, RICH)
    assert retrieve(client, B1, pick="id,name") == {"id": B1, "name": RICH["name"]}


def test_retrieve_pick_and_omit_apply_to_scope(client: TestClient) -> None:
    create(client, building(name=prop("A"), scope="/Seoul"))
    assert retrieve(client, B1, pick="scope,name") == {"scope": "/Seoul", "name": prop("A")}
    assert retrieve(client, B1, omit="scope") == building(name=prop("A"))
    assert retrieve(client, B1, attrs="name") == building(name=prop("A"), scope="/Seoul")


def test_retrieve_omit_drops_type_and_attributes(client: TestClient) -> None:
    create(client, building(name=prop("A"), height=prop(3)))
    assert retrieve(client, B1, omit="type,name") == {"id": B1, "height": prop(3)}


def test_retrieve_pick_and_omit_together_is_400(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    assert_problem(client.get(entity_url(B1), params={"pick": "name", "omit": "type"}), 400, "BadRequestData")


def test_retrieve_key_values(client: TestClient) -> None:
    create(client, RICH)
    # §4.5.4: bare value / object / valueList; LanguageProperty and JsonProperty stay wrapped in a
    # single-member object so that a client can tell them apart (as Stellio does).
    assert retrieve(client, B1, options="keyValues") == building(
        name="Main hall", temperature=21.5, owner="urn:ngsi-ld:Person:p1",
        location={"type": "Point", "coordinates": [127.0, 37.5]},
        label={"languageMap": {"ko": "본관", "en": "main hall"}},
        config={"json": {"modes": [1, 2], "spare": None}}, floors=[1, 2, 3],
        address={"city": "Seoul", "zip": "08000", "lines": ["a", "b"]})


def test_format_key_values_is_the_same_as_options_key_values(client: TestClient) -> None:
    create(client, RICH)
    assert retrieve(client, B1, format="keyValues") == retrieve(client, B1, options="keyValues")


def test_retrieve_concise(client: TestClient) -> None:
    create(client, RICH)
    body = retrieve(client, B1, options="concise")
    assert body["name"] == "Main hall"
    assert body["temperature"] == {"value": 21.5, "unitCode": "CEL", "observedAt": "2024-01-01T00:00:00.000000Z",
                                   "accuracy": {"value": 0.5, "method": "calibrated"}}
    assert body["owner"] == {"object": "urn:ngsi-ld:Person:p1"}
    assert body["label"] == {"languageMap": {"ko": "본관", "en": "main hall"}}
    assert body["floors"] == {"valueList": [1, 2, 3]}
    # A concise GeoProperty keeps its type so that any attribute name round-trips as a GeoProperty.
    assert body["location"] == point(127.0, 37.5)


def test_concise_output_is_accepted_back_as_input(client: TestClient) -> None:
    create(client, RICH)
    concise = retrieve(client, B1, options="concise")
    assert client.delete(entity_url(B1)).status_code == 204
    create(client, concise)
    assert retrieve(client, B1) == retrieve(client, B1, options="normalized")
    assert retrieve(client, B1, options="concise") == concise


def test_retrieve_sys_attrs_shows_timestamps(client: TestClient) -> None:
    create(client, building(name=prop("A", accuracy=prop(1))))
    plain = retrieve(client, B1)
    assert "createdAt" not in plain and "createdAt" not in plain["name"]
    body = retrieve(client, B1, options="sysAttrs")
    stamp = body["createdAt"]
    assert stamp.endswith("Z") and stamp[10] == "T"
    assert body["modifiedAt"] == stamp
    assert body["name"]["createdAt"] == body["name"]["modifiedAt"] == stamp
    assert body["name"]["accuracy"]["createdAt"] == stamp


def test_retrieve_lang_turns_a_language_property_into_a_property(client: TestClient) -> None:
    create(client, RICH)
    assert retrieve(client, B1, attrs="label", lang="en")["label"] == {"type": "Property", "value": "main hall",
                                                                       "lang": "en"}
    assert retrieve(client, B1, attrs="label", lang="fr,ko")["label"] == {"type": "Property", "value": "본관",
                                                                          "lang": "ko"}
    assert retrieve(client, B1, attrs="label", lang="ko", options="keyValues")["label"] == "본관"


def test_retrieve_lang_without_a_match_falls_back_to_none_entry(client: TestClient) -> None:
    create(client, building(label={"type": "LanguageProperty", "languageMap": {"en": "x", "@none": "y"}}))
    assert retrieve(client, B1, lang="fr")["label"] == {"type": "Property", "value": "y", "lang": "@none"}


def test_retrieve_lang_leaves_other_properties_alone(client: TestClient) -> None:
    create(client, RICH)
    assert retrieve(client, B1, attrs="name", lang="en")["name"] == prop("Main hall")


# -- content negotiation -----------------------------------------------------------------------
def test_accept_json_gives_a_link_header_and_no_context_in_the_body(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    response = client.get(entity_url(B1), headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["link"] == CORE_LINK
    assert "@context" not in response.json()


def test_accept_json_ld_puts_the_context_in_the_body(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    response = client.get(entity_url(B1), headers={"Accept": "application/ld+json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ld+json"
    assert "link" not in response.headers
    assert response.json() == {**building(name=prop("A")), "@context": CORE}


@pytest.mark.parametrize("accept", ["*/*", "application/*", "application/ld+json;q=0.5, application/json"])
def test_accept_wildcards_and_preferences_give_json(client: TestClient, accept: str) -> None:
    create(client, building())
    response = client.get(entity_url(B1), headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"


def test_accept_quality_values_choose_the_preferred_type(client: TestClient) -> None:
    create(client, building())
    response = client.get(entity_url(B1), headers={"Accept": "application/json;q=0.2, application/ld+json;q=0.9"})
    assert response.headers["content-type"] == "application/ld+json"


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "application/json;q=0"])
def test_unacceptable_accept_is_406(client: TestClient, accept: str) -> None:
    create(client, building())
    assert_problem(client.get(entity_url(B1), headers={"Accept": accept}), 406, "NotAcceptable")


def test_accept_geo_json_gives_a_feature(client: TestClient) -> None:
    create(client, RICH)
    response = client.get(entity_url(B1), params={"attrs": "name"}, headers={"Accept": "application/geo+json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    assert response.json() == {
        "id": B1, "type": "Feature", "geometry": {"type": "Point", "coordinates": [127.0, 37.5]},
        "properties": {"type": "Building", "name": prop("Main hall")}, "@context": CORE}


def test_geo_json_geometry_comes_from_the_default_instance(client: TestClient) -> None:
    # §4.5.16.1: with several instances of the geometry property the default one is used.
    create(client, building(location=[{**point(9.0, 9.0), "datasetId": GPS}, point(1.0, 2.0)]))
    body = client.get(entity_url(B1), headers={"Accept": "application/geo+json"}).json()
    assert body["geometry"] == {"type": "Point", "coordinates": [1.0, 2.0]}


def test_geo_json_with_key_values_and_geometry_property(client: TestClient) -> None:
    create(client, building(name=prop("A"), location=point(1.0, 2.0), area=point(3.0, 4.0)))
    response = client.get(entity_url(B1), params={"options": "keyValues", "geometryProperty": "area"},
                          headers={"Accept": "application/geo+json"})
    body = response.json()
    assert body["geometry"] == {"type": "Point", "coordinates": [3.0, 4.0]}
    assert body["properties"] == {"type": "Building", "name": "A",
                                  "location": {"type": "Point", "coordinates": [1.0, 2.0]},
                                  "area": {"type": "Point", "coordinates": [3.0, 4.0]}}


def test_geo_json_without_the_geometry_property_has_null_geometry(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    body = client.get(entity_url(B1), headers={"Accept": "application/geo+json"}).json()
    assert body["geometry"] is None
    assert body["properties"] == {"type": "Building", "name": prop("A")}


def test_query_geo_json_is_a_feature_collection(client: TestClient) -> None:
    create(client, building(location=point(1.0, 2.0)))
    response = client.get(ENTITIES, params={"type": "Building"}, headers={"Accept": "application/geo+json"})
    assert response.status_code == 200
    assert response.json() == {"type": "FeatureCollection", "@context": CORE, "features": [
        {"id": B1, "type": "Feature", "geometry": {"type": "Point", "coordinates": [1.0, 2.0]},
         "properties": {"type": "Building", "location": point(1.0, 2.0)}}]}


# -- Content-Type and @context -----------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", ""])
def test_unsupported_content_type_is_415(client: TestClient, content_type: str) -> None:
    response = client.post(ENTITIES, content=b'{"id": "urn:ngsi-ld:Building:b1", "type": "Building"}',
                           headers={"Content-Type": content_type})
    assert_problem(response, 415, "UnsupportedMediaType")


def test_merge_patch_content_type_is_only_for_merge(client: TestClient) -> None:
    response = client.post(ENTITIES, content=b'{"id": "urn:ngsi-ld:Building:b1", "type": "Building"}',
                           headers={"Content-Type": "application/merge-patch+json"})
    assert_problem(response, 415, "UnsupportedMediaType")


def test_json_ld_body_without_context_is_400(client: TestClient) -> None:
    response = client.post(ENTITIES, json=building(), headers={"Content-Type": "application/ld+json"})
    assert_problem(response, 400, "BadRequestData")


def test_json_ld_body_with_context_is_accepted(client: TestClient) -> None:
    body = {**building(name=prop("A")), "@context": CORE}
    response = client.post(ENTITIES, json=body, headers={"Content-Type": "application/ld+json"})
    assert response.status_code == 201
    assert retrieve(client, B1) == building(name=prop("A"))


def test_json_ld_body_with_a_link_header_too_is_400(client: TestClient) -> None:
    body = {**building(), "@context": CORE}
    response = client.post(ENTITIES, json=body, headers={"Content-Type": "application/ld+json", **link(CORE)})
    assert_problem(response, 400, "BadRequestData")


def test_plain_json_body_with_a_context_member_is_400(client: TestClient) -> None:
    response = client.post(ENTITIES, json={**building(), "@context": CORE})
    assert_problem(response, 400, "BadRequestData")
    assert client.get(entity_url(B1)).status_code == 404


def test_content_type_parameters_are_ignored(client: TestClient) -> None:
    response = client.post(ENTITIES, content=b'{"id": "urn:ngsi-ld:Building:b1", "type": "Building"}',
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 201


# -- user @context served over HTTP --------------------------------------------------------------
SENSOR = "https://example.org/vocab/Sensor"
TEMP = "https://example.org/vocab/temperature"


def test_attribute_names_expand_and_compact_through_a_remote_context(
        client: TestClient, context_server: ContextServer) -> None:
    ctx1 = context_server.serve("/ctx1.jsonld", {"temperature": TEMP, "Sensor": SENSOR})
    ctx2 = context_server.serve("/ctx2.jsonld", {"tmp": TEMP, "Dev": SENSOR})
    create(client, {"id": "urn:ngsi-ld:Sensor:s1", "type": "Sensor", "temperature": prop(21)}, headers=link(ctx1))

    response = client.get(entity_url("urn:ngsi-ld:Sensor:s1"), headers=link(ctx1))
    assert response.json() == {"id": "urn:ngsi-ld:Sensor:s1", "type": "Sensor", "temperature": prop(21)}
    assert response.headers["link"] == f'<{ctx1}>; rel="http://www.w3.org/ns/json-ld#context"; ' \
                                       f'type="application/ld+json"'
    assert retrieve(client, "urn:ngsi-ld:Sensor:s1", headers=link(ctx2)) == {
        "id": "urn:ngsi-ld:Sensor:s1", "type": "Dev", "tmp": prop(21)}
    # Without a user context the names are the full IRIs.
    assert retrieve(client, "urn:ngsi-ld:Sensor:s1") == {"id": "urn:ngsi-ld:Sensor:s1", "type": SENSOR,
                                                         TEMP: prop(21)}


def test_the_same_attribute_through_two_contexts_is_one_attribute(
        client: TestClient, context_server: ContextServer) -> None:
    ctx1 = context_server.serve("/ctx1.jsonld", {"temperature": TEMP, "Sensor": SENSOR})
    ctx2 = context_server.serve("/ctx2.jsonld", {"tmp": TEMP, "Dev": SENSOR})
    create(client, {"id": "urn:ngsi-ld:Sensor:s1", "type": "Sensor", "temperature": prop(21)}, headers=link(ctx1))
    assert client.patch(entity_url("urn:ngsi-ld:Sensor:s1", "attrs"), json={"tmp": prop(22)},
                        headers=link(ctx2)).status_code == 204
    assert retrieve(client, "urn:ngsi-ld:Sensor:s1", headers=link(ctx1)) == {
        "id": "urn:ngsi-ld:Sensor:s1", "type": "Sensor", "temperature": prop(22)}
    assert query_ids(client, headers=link(ctx2), type="Dev", q="tmp==22") == ["urn:ngsi-ld:Sensor:s1"]
    assert query_ids(client, headers=link(ctx1), type="Sensor", attrs="temperature") == ["urn:ngsi-ld:Sensor:s1"]


def test_json_ld_response_echoes_the_context_exactly_as_the_client_named_it(
        client: TestClient, context_server: ContextServer) -> None:
    # The Link header's URL comes back as that string, without the core context beside it
    # (§5.5.7: the core context applies anyway; the conformance suite compares @context exactly).
    ctx1 = context_server.serve("/ctx1.jsonld", {"temperature": TEMP})
    create(client, building(temperature=prop(1)), headers=link(ctx1))
    body = client.get(entity_url(B1), headers={**link(ctx1), "Accept": "application/ld+json"}).json()
    assert body == {**building(temperature=prop(1)), "@context": ctx1}


def test_context_in_a_json_ld_body_is_fetched_and_used(client: TestClient, context_server: ContextServer) -> None:
    ctx1 = context_server.serve("/ctx1.jsonld", {"temperature": TEMP})
    response = client.post(ENTITIES, json={**building(temperature=prop(1)), "@context": [ctx1, CORE]},
                           headers={"Content-Type": "application/ld+json"})
    assert response.status_code == 201
    assert TEMP in retrieve(client, B1)


def test_unreachable_remote_context_is_503_ld_context_not_available(
        client: TestClient, context_server: ContextServer) -> None:
    missing = context_server.base + "/missing.jsonld"
    response = client.post(ENTITIES, json=building(name=prop("A")), headers=link(missing))
    assert_problem(response, 503, "LdContextNotAvailable")
    assert client.get(entity_url(B1)).status_code == 404


# -- merge (PATCH /entities/{id}) --------------------------------------------------------------
def test_merge_adds_replaces_and_keeps_attributes(client: TestClient) -> None:
    create(client, building(name=prop("A"), height=prop(10)))
    assert client.patch(entity_url(B1), json={"height": prop(12), "floors": prop(3)}).status_code == 204
    assert retrieve(client, B1) == building(name=prop("A"), height=prop(12), floors=prop(3))


@pytest.mark.parametrize("null", [NULL, prop(NULL), {"value": NULL}], ids=["concise", "normalized", "value only"])
def test_merge_with_ngsi_ld_null_deletes_an_attribute(client: TestClient, null: Any) -> None:
    create(client, building(name=prop("A"), height=prop(10)))
    assert client.patch(entity_url(B1), json={"name": null}).status_code == 204
    assert retrieve(client, B1) == building(height=prop(10))


def test_merge_with_null_relationship_and_language_map_deletes_them(client: TestClient) -> None:
    create(client, building(owner=rel("urn:ngsi-ld:Person:p1"), height=prop(1),
                            label={"type": "LanguageProperty", "languageMap": {"en": "x"}}))
    patch = {"owner": rel(NULL), "label": {"type": "LanguageProperty", "languageMap": {"@none": NULL}}}
    assert client.patch(entity_url(B1), json=patch).status_code == 204
    assert retrieve(client, B1) == building(height=prop(1))


def test_merge_merges_sub_properties(client: TestClient) -> None:
    create(client, building(temperature=prop(20, unitCode="CEL", accuracy=prop(0.5), source=prop("s1"))))
    patch = {"temperature": prop(21, accuracy=prop(0.7), method=prop("m"), source=NULL)}
    assert client.patch(entity_url(B1), json=patch).status_code == 204
    assert retrieve(client, B1)["temperature"] == prop(21, unitCode="CEL", accuracy=prop(0.7), method=prop("m"))


def test_merge_two_levels_deep(client: TestClient) -> None:
    create(client, building(t=prop(1, accuracy=prop(0.5, method=prop("a"), since=prop(2020)))))
    patch = {"t": prop(1, accuracy=prop(0.5, method=prop("b")))}
    assert client.patch(entity_url(B1), json=patch).status_code == 204
    assert retrieve(client, B1)["t"] == prop(1, accuracy=prop(0.5, method=prop("b"), since=prop(2020)))


def test_merge_patch_json_content_type_is_accepted(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    response = client.patch(entity_url(B1), content=b'{"name": {"type": "Property", "value": "B"}}',
                            headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 204
    assert retrieve(client, B1)["name"] == prop("B")


def test_merge_keeps_created_at_and_advances_modified_at(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    before = retrieve(client, B1, options="sysAttrs")
    assert client.patch(entity_url(B1), json={"name": prop("B")}).status_code == 204
    after = retrieve(client, B1, options="sysAttrs")
    assert after["createdAt"] == before["createdAt"]
    assert after["name"]["createdAt"] == before["name"]["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]
    assert after["name"]["modifiedAt"] > before["name"]["modifiedAt"]


def test_merge_can_add_a_type(client: TestClient) -> None:
    create(client, building())
    assert client.patch(entity_url(B1), json={"type": "Shop"}).status_code == 204
    assert retrieve(client, B1)["type"] == ["Building", "Shop"]


def test_merge_unknown_entity_is_404(client: TestClient) -> None:
    assert_problem(client.patch(entity_url(B1), json={"name": prop("A")}), 404, "ResourceNotFound")


def test_merge_with_a_different_id_in_the_body_is_400(client: TestClient) -> None:
    create(client, building())
    response = client.patch(entity_url(B1), json={"id": "urn:ngsi-ld:Building:other", "name": prop("A")})
    assert_problem(response, 400, "BadRequestData")


def test_merge_with_an_invalid_attribute_changes_nothing(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    response = client.patch(entity_url(B1), json={"name": prop("B"), "owner": rel("nope")})
    assert_problem(response, 400, "BadRequestData")
    assert retrieve(client, B1) == building(name=prop("A"))


# -- replace (PUT /entities/{id}) --------------------------------------------------------------
def test_replace_replaces_all_attributes(client: TestClient) -> None:
    create(client, building(name=prop("A"), height=prop(10)))
    assert client.put(entity_url(B1), json={"type": "Building", "floors": prop(3)}).status_code == 204
    assert retrieve(client, B1) == building(floors=prop(3))


def test_replace_keeps_created_at(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    before = retrieve(client, B1, options="sysAttrs")
    assert client.put(entity_url(B1), json={"type": "Building", "name": prop("B")}).status_code == 204
    after = retrieve(client, B1, options="sysAttrs")
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]


def test_replace_unknown_entity_is_404(client: TestClient) -> None:
    assert_problem(client.put(entity_url(B1), json={"type": "Building"}), 404, "ResourceNotFound")


def test_replace_with_ngsi_ld_null_is_400(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    assert_problem(client.put(entity_url(B1), json={"type": "Building", "name": NULL}), 400, "BadRequestData")


# -- append (POST /entities/{id}/attrs) ----------------------------------------------------------
def test_append_adds_and_overwrites(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    response = client.post(entity_url(B1, "attrs"), json={"name": prop("B"), "height": prop(3)})
    assert response.status_code == 204
    assert retrieve(client, B1) == building(name=prop("B"), height=prop(3))


def test_append_no_overwrite_is_207_with_the_attributes_kept(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    response = client.post(entity_url(B1, "attrs"), json={"name": prop("B"), "height": prop(3)},
                           params={"options": "noOverwrite"})
    assert response.status_code == 207
    body = response.json()
    # UpdateResult names attributes by their expanded IRI (conformance 010_04_01).
    assert body["updated"] == [DEFAULT_VOCAB + "height"]
    assert [n["attributeName"] for n in body["notUpdated"]] == [DEFAULT_VOCAB + "name"]
    assert isinstance(body["notUpdated"][0]["reason"], str) and body["notUpdated"][0]["reason"]
    assert retrieve(client, B1) == building(name=prop("A"), height=prop(3))


def test_append_to_unknown_entity_is_404(client: TestClient) -> None:
    assert_problem(client.post(entity_url(B1, "attrs"), json={"name": prop("B")}), 404, "ResourceNotFound")


def test_append_with_ngsi_ld_null_is_400(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    assert_problem(client.post(entity_url(B1, "attrs"), json={"name": prop(NULL)}), 400, "BadRequestData")
    assert retrieve(client, B1) == building(name=prop("A"))


# -- update (PATCH /entities/{id}/attrs) -------------------------------------------------------
def test_update_existing_attributes_is_204(client: TestClient) -> None:
    create(client, building(name=prop("A"), height=prop(10)))
    assert client.patch(entity_url(B1, "attrs"), json={"height": prop(11)}).status_code == 204
    assert retrieve(client, B1) == building(name=prop("A"), height=prop(11))


def test_update_appends_attributes_the_entity_lacks(client: TestClient) -> None:
    # CIM 009 v1.9.1 §5.6.2.4 (conformance 011_01_03): update replaces existing attributes and
    # appends the others; a new datasetId is a new instance.
    create(client, building(name=prop("A")))
    response = client.patch(entity_url(B1, "attrs"), json={"name": prop("B"), "unknown": prop(1),
                                                           "height": [prop(2, datasetId=GPS)]})
    assert response.status_code == 204, response.text
    assert retrieve(client, B1) == building(name=prop("B"), unknown=prop(1), height=prop(2, datasetId=GPS))


def test_update_with_null_for_an_absent_attribute_is_207_and_changes_nothing(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    response = client.patch(entity_url(B1, "attrs"), json={"x": prop(NULL)})
    assert response.status_code == 207
    assert response.json()["updated"] == []
    assert [n["attributeName"] for n in response.json()["notUpdated"]] == [DEFAULT_VOCAB + "x"]
    assert retrieve(client, B1, options="sysAttrs")["modifiedAt"] == retrieve(client, B1, options="sysAttrs")[
        "createdAt"]


def test_update_replaces_the_scope_only_of_an_entity_that_has_one(client: TestClient) -> None:
    # §5.6.2.4: "If scope is included ... and the target entity includes scope, replace the scope ...,
    # otherwise ignore it"; ignoring it is reported (207), as conformance 011_05_02 expects.
    create(client, building(name=prop("A"), scope="/Seoul"))
    assert client.patch(entity_url(B1, "attrs"), json={"scope": "/Busan"}).status_code == 204
    assert retrieve(client, B1)["scope"] == "/Busan"
    create(client, building("urn:ngsi-ld:Building:b2", name=prop("A")))
    response = client.patch(entity_url("urn:ngsi-ld:Building:b2", "attrs"), json={"scope": "/Busan"})
    assert response.status_code == 207
    assert [n["attributeName"] for n in response.json()["notUpdated"]] == ["https://uri.etsi.org/ngsi-ld/scope"]
    assert "scope" not in retrieve(client, "urn:ngsi-ld:Building:b2")


def test_update_with_ngsi_ld_null_deletes(client: TestClient) -> None:
    create(client, building(name=prop("A"), owner=rel("urn:ngsi-ld:Person:p1"), height=prop(1)))
    response = client.patch(entity_url(B1, "attrs"), json={"name": prop(NULL), "owner": rel(NULL)})
    assert response.status_code == 204
    assert retrieve(client, B1) == building(height=prop(1))


def test_update_unknown_entity_is_404(client: TestClient) -> None:
    assert_problem(client.patch(entity_url(B1, "attrs"), json={"name": prop("B")}), 404, "ResourceNotFound")


# -- partial attribute update (PATCH /entities/{id}/attrs/{attrId}) ------------------------------
def test_partial_update_keeps_the_other_members(client: TestClient) -> None:
    create(client, building(temperature=prop(20, unitCode="CEL", observedAt="2024-01-01T00:00:00Z",
                                             accuracy=prop(0.5))))
    assert client.patch(entity_url(B1, "attrs", "temperature"), json={"value": 21}).status_code == 204
    assert retrieve(client, B1)["temperature"] == prop(21, unitCode="CEL", observedAt="2024-01-01T00:00:00.000000Z",
                                                       accuracy=prop(0.5))


def test_partial_update_of_observed_at_only(client: TestClient) -> None:
    create(client, building(temperature=prop(20, observedAt="2024-01-01T00:00:00Z")))
    response = client.patch(entity_url(B1, "attrs", "temperature"), json={"observedAt": "2024-02-01T10:00:00+09:00"})
    assert response.status_code == 204
    assert retrieve(client, B1)["temperature"] == prop(20, observedAt="2024-02-01T01:00:00.000000Z")


def test_partial_update_of_a_sub_property_only(client: TestClient) -> None:
    create(client, building(temperature=prop(20, accuracy=prop(0.5))))
    response = client.patch(entity_url(B1, "attrs", "temperature"), json={"accuracy": prop(0.1)})
    assert response.status_code == 204
    assert retrieve(client, B1)["temperature"] == prop(20, accuracy=prop(0.1))


def test_partial_update_of_one_dataset_instance(client: TestClient) -> None:
    create(client, building(speed=[prop(55), prop(11, datasetId=GPS)]))
    response = client.patch(entity_url(B1, "attrs", "speed"), json={"value": 12, "datasetId": GPS})
    assert response.status_code == 204
    assert retrieve(client, B1)["speed"] == [prop(55), prop(12, datasetId=GPS)]


def test_partial_update_with_invalid_observed_at_is_400(client: TestClient) -> None:
    create(client, building(temperature=prop(20)))
    response = client.patch(entity_url(B1, "attrs", "temperature"), json={"observedAt": "soon"})
    assert_problem(response, 400, "BadRequestData")


def test_partial_update_of_unknown_attribute_or_entity_is_404(client: TestClient) -> None:
    create(client, building(temperature=prop(20)))
    assert_problem(client.patch(entity_url(B1, "attrs", "nope"), json={"value": 1}), 404, "ResourceNotFound")
    assert_problem(client.patch(entity_url("urn:ngsi-ld:Building:x", "attrs", "temperature"), json={"value": 1}),
                   404, "ResourceNotFound")


# -- attribute replace (PUT) and delete ---------------------------------------------------------
def test_replace_attribute_replaces_the_whole_instance(client: TestClient) -> None:
    create(client, building(temperature=prop(20, unitCode="CEL", accuracy=prop(0.5)), name=prop("A")))
    assert client.put(entity_url(B1, "attrs", "temperature"), json=prop(30)).status_code == 204
    assert retrieve(client, B1) == building(temperature=prop(30), name=prop("A"))


def test_replace_attribute_of_one_dataset_instance(client: TestClient) -> None:
    create(client, building(speed=[prop(55), prop(11, datasetId=GPS)]))
    assert client.put(entity_url(B1, "attrs", "speed"), json=prop(9, datasetId=GPS)).status_code == 204
    assert retrieve(client, B1)["speed"] == [prop(55), prop(9, datasetId=GPS)]


def test_replace_unknown_attribute_is_404(client: TestClient) -> None:
    create(client, building())
    assert_problem(client.put(entity_url(B1, "attrs", "nope"), json=prop(1)), 404, "ResourceNotFound")


def test_delete_attribute(client: TestClient) -> None:
    create(client, building(name=prop("A"), height=prop(1)))
    assert client.delete(entity_url(B1, "attrs", "name")).status_code == 204
    assert retrieve(client, B1) == building(height=prop(1))
    assert_problem(client.delete(entity_url(B1, "attrs", "name")), 404, "ResourceNotFound")


def test_delete_attribute_default_instance_keeps_dataset_instances(client: TestClient) -> None:
    create(client, building(speed=[prop(55), prop(11, datasetId=GPS)]))
    assert client.delete(entity_url(B1, "attrs", "speed")).status_code == 204
    assert retrieve(client, B1)["speed"] == prop(11, datasetId=GPS)


def test_delete_attribute_by_dataset_id(client: TestClient) -> None:
    create(client, building(speed=[prop(55), prop(11, datasetId=GPS)]))
    assert client.delete(entity_url(B1, "attrs", "speed"), params={"datasetId": GPS}).status_code == 204
    assert retrieve(client, B1)["speed"] == prop(55)
    response = client.delete(entity_url(B1, "attrs", "speed"), params={"datasetId": GPS})
    assert_problem(response, 404, "ResourceNotFound")


def test_delete_attribute_delete_all_removes_every_instance(client: TestClient) -> None:
    create(client, building(speed=[prop(55), prop(11, datasetId=GPS)], name=prop("A")))
    assert client.delete(entity_url(B1, "attrs", "speed"), params={"deleteAll": "true"}).status_code == 204
    assert retrieve(client, B1) == building(name=prop("A"))


def test_delete_attribute_of_unknown_entity_is_404(client: TestClient) -> None:
    assert_problem(client.delete(entity_url(B1, "attrs", "name")), 404, "ResourceNotFound")


# -- multi-attributes, compound values ---------------------------------------------------------
def test_multi_attribute_instances_are_returned_as_an_array(client: TestClient) -> None:
    create(client, building(speed=[prop(55), prop(11, datasetId=GPS)]))
    assert retrieve(client, B1)["speed"] == [prop(55), prop(11, datasetId=GPS)]
    assert retrieve(client, B1, datasetId=GPS)["speed"] == prop(11, datasetId=GPS)
    assert retrieve(client, B1, datasetId="@none")["speed"] == prop(55)


def test_multi_attribute_key_values_is_a_dataset_map(client: TestClient) -> None:
    # §4.5.4 (and Stellio): instances keyed by datasetId, "@none" for the default instance.
    create(client, building(speed=[prop(55), prop(11, datasetId=GPS)]))
    assert retrieve(client, B1, options="keyValues")["speed"] == {"dataset": {"@none": 55, GPS: 11}}


def test_update_one_instance_of_a_multi_attribute(client: TestClient) -> None:
    create(client, building(speed=[prop(55), prop(11, datasetId=GPS)]))
    response = client.patch(entity_url(B1, "attrs"), json={"speed": prop(12, datasetId=GPS)})
    assert response.status_code == 204
    assert retrieve(client, B1)["speed"] == [prop(55), prop(12, datasetId=GPS)]


def test_append_a_new_dataset_instance(client: TestClient) -> None:
    create(client, building(speed=prop(55)))
    assert client.post(entity_url(B1, "attrs"), json={"speed": prop(11, datasetId=GPS)}).status_code == 204
    assert retrieve(client, B1)["speed"] == [prop(55), prop(11, datasetId=GPS)]


def test_merge_with_null_deletes_only_the_named_instance(client: TestClient) -> None:
    create(client, building(speed=[prop(55), prop(11, datasetId=GPS)]))
    assert client.patch(entity_url(B1), json={"speed": prop(NULL, datasetId=GPS)}).status_code == 204
    assert retrieve(client, B1)["speed"] == prop(55)


def test_sub_properties_nested_two_levels(client: TestClient) -> None:
    create(client, building(t=prop(1, accuracy=prop(0.5, method=prop("a", operator=rel("urn:ngsi-ld:P:1"))))))
    assert retrieve(client, B1)["t"] == prop(1, accuracy=prop(0.5, method=prop("a", operator=rel("urn:ngsi-ld:P:1"))))
    assert retrieve(client, B1, options="keyValues")["t"] == 1


def test_json_property_keeps_its_value_verbatim(client: TestClient) -> None:
    value = {"type": "Property", "value": None, "list": [{"a": 1}], "@context": "x"}
    create(client, building(raw={"type": "JsonProperty", "json": value}))
    assert retrieve(client, B1)["raw"] == {"type": "JsonProperty", "json": value}


def test_list_property_and_compound_value(client: TestClient) -> None:
    create(client, building(seq={"type": "ListProperty", "valueList": [3, "b", {"c": 1}]},
                            address=prop({"street": "x", "geo": {"lat": 1.5}})))
    body = retrieve(client, B1)
    assert body["seq"] == {"type": "ListProperty", "valueList": [3, "b", {"c": 1}]}
    assert body["address"] == prop({"street": "x", "geo": {"lat": 1.5}})


# -- delete entity and durability --------------------------------------------------------------
def test_delete_entity(client: TestClient) -> None:
    create(client, building(name=prop("A")))
    response = client.delete(entity_url(B1))
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get(entity_url(B1)), 404, "ResourceNotFound")
    assert_problem(client.delete(entity_url(B1)), 404, "ResourceNotFound")


def test_entity_survives_a_restart(settings: Settings) -> None:
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as first:
        create(first, RICH)
        original = retrieve(first, B1, options="sysAttrs")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as second:
        assert retrieve(second, B1, options="sysAttrs") == original
        assert query_ids(second, type="Building", q="temperature>20") == [B1]


# -- query (GET /entities) ---------------------------------------------------------------------
def _seed(client: TestClient) -> None:
    entities = [
        building("urn:ngsi-ld:Building:a", temperature=prop(10, accuracy=prop(0.5)), name=prop("alpha"),
                 address=prop({"city": "Seoul", "zip": 100}), owner=rel("urn:ngsi-ld:Person:p1"),
                 built=prop({"@type": "DateTime", "@value": "2001-05-01T00:00:00Z"}),
                 location=point(127.0, 37.5), scope="/Seoul/Guro"),
        building("urn:ngsi-ld:Building:b", temperature=prop(20, accuracy=prop(1.5)), name=prop("beta"),
                 address=prop({"city": "Busan", "zip": 200}), owner=rel("urn:ngsi-ld:Person:p2"),
                 built=prop({"@type": "DateTime", "@value": "2015-05-01T00:00:00Z"}),
                 location=point(129.0, 35.1), scope="/Busan"),
        {"id": "urn:ngsi-ld:Shop:c", "type": ["Shop", "Building"], "temperature": prop(30), "name": prop("gamma"),
         "location": point(127.001, 37.501), "area": point(0.0, 0.0), "scope": "/Seoul"},
        {"id": "urn:ngsi-ld:Person:p1", "type": "Person", "name": prop("Kim")},
    ]
    response = client.post(f"{BATCH}/create", json=entities)
    assert response.status_code == 201, response.text


A, B, C, P1 = "urn:ngsi-ld:Building:a", "urn:ngsi-ld:Building:b", "urn:ngsi-ld:Shop:c", "urn:ngsi-ld:Person:p1"


@pytest.mark.parametrize(("types", "expected"), [
    ("Building", [A, B, C]),
    ("Shop", [C]),
    ("Shop,Person", [P1, C]),
    ("Shop|Person", [P1, C]),
    ("Shop;Building", [C]),
    ("Shop;Person", []),
    ("(Shop;Building)|Person", [P1, C]),
    ("Nope", []),
])
def test_query_by_type_expression(client: TestClient, types: str, expected: list[str]) -> None:
    _seed(client)
    assert query_ids(client, type=types) == expected


def test_query_by_id_list_and_id_pattern(client: TestClient) -> None:
    _seed(client)
    assert query_ids(client, id=f"{B},{A}", type="Building") == [A, B]
    assert query_ids(client, idPattern=r"^urn:ngsi-ld:Building:[ab]$", type="Building") == [A, B]
    assert query_ids(client, idPattern="Shop", type="Building") == [C]


def test_query_id_that_is_not_a_uri_is_400(client: TestClient) -> None:
    assert_problem(client.get(ENTITIES, params={"id": "a,b", "type": "Building"}), 400, "BadRequestData")


def test_query_invalid_id_pattern_is_400(client: TestClient) -> None:
    assert_problem(client.get(ENTITIES, params={"idPattern": "urn:(unclosed"}), 400, "BadRequestData")


def test_query_attrs_selects_entities_and_projects(client: TestClient) -> None:
    _seed(client)
    response = client.get(ENTITIES, params={"attrs": "area"})
    # scope is an entity member like type, not an attribute: attrs does not project it away.
    assert response.json() == [{"id": C, "type": ["Shop", "Building"], "scope": "/Seoul", "area": point(0.0, 0.0)}]


@pytest.mark.parametrize(("q", "expected"), [
    ("temperature>15", [B, C]),
    ("temperature>=20;temperature<30", [B]),
    ("temperature==10|temperature==20;name==\"beta\"", [A, B]),  # ";" binds tighter than "|"
    ("temperature==10|temperature==30;name==\"beta\"", [A]),
    ("(temperature==10|temperature==20);name==\"alpha\"", [A]),
    ("temperature==10..20", [A, B]),
    ("temperature==10,30", [A, C]),
    ("temperature!=10", [B, C]),
    ("name~=\"^al\"", [A]),
    ("name~=\"(?i)^GAM\"", [C]),
    ("name==\"alpha\",\"gamma\"", [A, C]),
    ("temperature.accuracy>1", [B]),
    ("address[city]==\"Seoul\"", [A]),
    ("address[zip]>150", [B]),
    ("owner==\"urn:ngsi-ld:Person:p1\"", [A]),
    ("owner==urn:ngsi-ld:Person:p2", [B]),
    ("built>2010-01-01T00:00:00Z", [B]),
    ("built==2000-01-01T00:00:00Z..2002-01-01T00:00:00Z", [A]),
    ("area", [C]),
    ("!area", [A, B]),
])
def test_query_q(client: TestClient, q: str, expected: list[str]) -> None:
    _seed(client)
    assert query_ids(client, type="Building", q=q) == expected


def test_query_q_alone_is_a_valid_selector(client: TestClient) -> None:
    _seed(client)
    assert query_ids(client, q="name==\"Kim\"") == [P1]


@pytest.mark.parametrize("q", ["temperature>", "temperature===1", "(temperature>1", "temperature>1;;"])
def test_query_invalid_q_is_400(client: TestClient, q: str) -> None:
    assert_problem(client.get(ENTITIES, params={"type": "Building", "q": q}), 400, "BadRequestData")


SQUARE = "[[[126,37],[128,37],[128,38],[126,38],[126,37]]]"


@pytest.mark.parametrize(("params", "expected"), [
    ({"georel": "near;maxDistance==1000", "geometry": "Point", "coordinates": "[127.0,37.5]"}, [A, C]),
    ({"georel": "near;maxDistance==100", "geometry": "Point", "coordinates": "[127.0,37.5]"}, [A]),
    ({"georel": "near;minDistance==1000", "geometry": "Point", "coordinates": "[127.0,37.5]"}, [B]),
    ({"georel": "within", "geometry": "Polygon", "coordinates": SQUARE}, [A, C]),
    ({"georel": "intersects", "geometry": "Polygon", "coordinates": SQUARE}, [A, C]),
    ({"georel": "disjoint", "geometry": "Polygon", "coordinates": SQUARE}, [B]),
    ({"georel": "equals", "geometry": "Point", "coordinates": "[129.0,35.1]"}, [B]),
    ({"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[0,0]", "geoproperty": "area"}, [C]),
])
def test_query_geo(client: TestClient, params: dict[str, str], expected: list[str]) -> None:
    _seed(client)
    assert query_ids(client, type="Building", **params) == expected


@pytest.mark.parametrize("params", [
    {"georel": "near;maxDistance==1000", "geometry": "Point"},
    {"georel": "near", "geometry": "Point", "coordinates": "[127.0,37.5]"},
    {"georel": "within", "geometry": "Polygon", "coordinates": "[[[0,0],[1,1]]]"},
    {"georel": "around", "geometry": "Point", "coordinates": "[127.0,37.5]"},
    {"georel": "within", "geometry": "Square", "coordinates": SQUARE},
])
def test_query_invalid_geo_query_is_400(client: TestClient, params: dict[str, str]) -> None:
    assert_problem(client.get(ENTITIES, params={"type": "Building", **params}), 400, "BadRequestData")


def test_query_pagination_with_link_headers(client: TestClient) -> None:
    _seed(client)
    first = client.get(ENTITIES, params={"type": "Building", "limit": "2"})
    assert [e["id"] for e in first.json()] == [A, B]
    # Relative, every parameter kept (sorted), with the media type of the page (conformance 031_02 style).
    base = "/ngsi-ld/v1/entities"
    assert first.headers["link"] == (
        f'{CORE_LINK}, <{base}?limit=2&offset=2&type=Building>;rel="next";type="application/json"')
    second = client.get(ENTITIES, params={"type": "Building", "limit": "2", "offset": "2"})
    assert [e["id"] for e in second.json()] == [C]
    assert second.headers["link"] == (
        f'{CORE_LINK}, <{base}?limit=2&offset=0&type=Building>;rel="prev";type="application/json"')


def test_query_count(client: TestClient) -> None:
    _seed(client)
    response = client.get(ENTITIES, params={"type": "Building", "limit": "1", "count": "true"})
    assert response.headers["ngsild-results-count"] == "3"
    assert [e["id"] for e in response.json()] == [A]
    assert "ngsild-results-count" not in client.get(ENTITIES, params={"type": "Building"}).headers


def test_query_count_with_limit_zero_gives_only_the_count(client: TestClient) -> None:
    _seed(client)
    response = client.get(ENTITIES, params={"type": "Building", "limit": "0", "count": "true"})
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["ngsild-results-count"] == "3"


def test_query_limit_zero_without_count_is_400(client: TestClient) -> None:
    assert_problem(client.get(ENTITIES, params={"type": "Building", "limit": "0"}), 400, "BadRequestData")


def test_query_limit_over_the_maximum_is_400(client: TestClient, settings: Settings) -> None:
    limit = str(settings.ngsild.max_limit + 1)
    assert_problem(client.get(ENTITIES, params={"type": "Building", "limit": limit}), 400, "BadRequestData")


@pytest.mark.parametrize("params", [{"limit": "-1"}, {"offset": "-1"}, {"limit": "ten"}, {"count": "yes"}])
def test_query_bad_paging_parameters_are_400(client: TestClient, params: dict[str, str]) -> None:
    assert_problem(client.get(ENTITIES, params={"type": "Building", **params}), 400, "BadRequestData")


@pytest.mark.parametrize("params", [{}, {"limit": "5"}, {"options": "keyValues"}])
def test_query_without_a_selector_is_400(client: TestClient, params: dict[str, str]) -> None:
    assert_problem(client.get(ENTITIES, params=params), 400, "BadRequestData")


@pytest.mark.parametrize(("scope_q", "expected"), [
    ("/Seoul", [C]),  # exactly /Seoul, not its descendants (§4.19)
    ("/Seoul/#", [A, C]),  # /Seoul and every scope below it
    ("/Seoul/Guro", [A]),
    ("/Busan,/Seoul/Guro", [A, B]),
    ("/+/Guro", [A]),  # "+" is one level, any name
    ("/#", [A, B, C]),
    ("/Daegu", []),
    ("/Seoul/#;/+/Guro", [A]),  # ";" is AND
    ("(/Busan,/Seoul);/#", [B, C]),
])
def test_query_scope_q(client: TestClient, scope_q: str, expected: list[str]) -> None:
    _seed(client)
    assert query_ids(client, type="Building", scopeQ=scope_q) == expected


def test_query_result_representation_options(client: TestClient) -> None:
    _seed(client)
    response = client.get(ENTITIES, params={"id": A, "options": "keyValues", "attrs": "name,owner"})
    assert response.status_code == 200
    assert response.json() == [{"id": A, "type": "Building", "scope": "/Seoul/Guro", "name": "alpha",
                                "owner": "urn:ngsi-ld:Person:p1"}]
    response = client.get(ENTITIES, params={"id": A, "type": "Building", "pick": "id,name"},
                          headers={"Accept": "application/ld+json"})
    assert response.json() == [{"id": A, "name": prop("alpha"), "@context": CORE}]


# -- POST /entityOperations/query --------------------------------------------------------------
def test_post_query_with_an_entity_selector_and_q(client: TestClient) -> None:
    _seed(client)
    response = client.post(f"{BATCH}/query", json={"type": "Query", "entities": [{"type": "Building"}],
                                                    "q": "temperature<25", "attrs": ["name"]})
    assert response.status_code == 200
    assert response.json() == [{"id": A, "type": "Building", "scope": "/Seoul/Guro", "name": prop("alpha")},
                               {"id": B, "type": "Building", "scope": "/Busan", "name": prop("beta")}]


def test_post_query_with_several_type_selectors_is_their_union(client: TestClient) -> None:
    _seed(client)
    response = client.post(f"{BATCH}/query", json={"type": "Query",
                                                    "entities": [{"type": "Person"}, {"type": "Shop"}]})
    assert [e["id"] for e in response.json()] == [P1, C]


def test_post_query_with_geo_q_and_count(client: TestClient) -> None:
    _seed(client)
    geo_q = {"georel": "near;maxDistance==1000", "geometry": "Point", "coordinates": [127.0, 37.5]}
    response = client.post(f"{BATCH}/query", params={"count": "true"},
                           json={"type": "Query", "entities": [{"type": "Building"}], "geoQ": geo_q})
    assert [e["id"] for e in response.json()] == [A, C]
    assert response.headers["ngsild-results-count"] == "2"


def test_post_query_json_ld_body_context_is_named_by_the_response_link(
        client: TestClient, context_server: ContextServer) -> None:
    url = context_server.serve("/ctx.jsonld", {"Sensor": SENSOR, "temperature": TEMP})
    create(client, {"id": "urn:ngsi-ld:Sensor:s1", "type": "Sensor", "temperature": prop(1)}, headers=link(url))
    query = {"type": "Query", "entities": [{"type": "Sensor"}], "@context": [url, CORE]}
    response = client.post(f"{BATCH}/query", json=query,
                           headers={"Content-Type": "application/ld+json", "Accept": "application/json"})
    assert response.json() == [{"id": "urn:ngsi-ld:Sensor:s1", "type": "Sensor", "temperature": prop(1)}]
    assert response.headers["link"] == link(url)["Link"]


@pytest.mark.xfail(strict=True, reason="an inline @context has no URL for the Link header: needs implicitly "
                                       "created hosted contexts (context.py, §5.13)")
def test_post_query_inline_body_context_with_accept_json_is_expandable(client: TestClient) -> None:
    create(client, {"id": "urn:ngsi-ld:Sensor:s1", "type": SENSOR, TEMP: prop(1)})
    query = {"type": "Query", "entities": [{"type": "Sensor"}], "@context": {"Sensor": SENSOR, "temperature": TEMP}}
    response = client.post(f"{BATCH}/query", json=query,
                           headers={"Content-Type": "application/ld+json", "Accept": "application/json"})
    body = response.json()
    # The names in the body must expand, through the context the Link header names, to the stored IRIs.
    assert body[0]["type"] == SENSOR or response.headers["link"] != CORE_LINK


def test_post_query_without_query_type_is_400(client: TestClient) -> None:
    response = client.post(f"{BATCH}/query", json={"entities": [{"type": "Building"}]})
    assert_problem(response, 400, "BadRequestData")


def test_post_query_without_a_selector_is_400(client: TestClient) -> None:
    assert_problem(client.post(f"{BATCH}/query", json={"type": "Query"}), 400, "BadRequestData")


# -- purge (DELETE /entities?type=...) ----------------------------------------------------------
def test_purge_by_type(client: TestClient) -> None:
    _seed(client)
    assert client.delete(ENTITIES, params={"type": "Building"}).status_code == 204
    assert query_ids(client, type="Building") == []
    assert query_ids(client, type="Person") == [P1]


def test_purge_by_type_and_q(client: TestClient) -> None:
    _seed(client)
    assert client.delete(ENTITIES, params={"type": "Building", "q": "temperature>15"}).status_code == 204
    assert query_ids(client, type="Building") == [A]


def test_purge_without_a_selector_is_400(client: TestClient) -> None:
    _seed(client)
    assert_problem(client.delete(ENTITIES), 400, "BadRequestData")
    assert len(query_ids(client, type="Building,Person")) == 4


# -- tenants -----------------------------------------------------------------------------------
def test_tenants_are_isolated(client: TestClient) -> None:
    create(client, building(name=prop("in A")), headers={"NGSILD-Tenant": "tenant-a"})
    create(client, building(name=prop("in B")), headers={"NGSILD-Tenant": "tenant-b"})
    assert retrieve(client, B1, headers={"NGSILD-Tenant": "tenant-a"})["name"] == prop("in A")
    assert retrieve(client, B1, headers={"NGSILD-Tenant": "tenant-b"})["name"] == prop("in B")
    assert_problem(client.get(entity_url(B1)), 404, "ResourceNotFound")
    assert client.delete(entity_url(B1), headers={"NGSILD-Tenant": "tenant-a"}).status_code == 204
    assert retrieve(client, B1, headers={"NGSILD-Tenant": "tenant-b"})["name"] == prop("in B")


def test_entity_of_one_tenant_is_invisible_in_another(client: TestClient) -> None:
    create(client, building(), headers={"NGSILD-Tenant": "tenant-a"})
    create(client, building("urn:ngsi-ld:Building:other"), headers={"NGSILD-Tenant": "tenant-b"})
    assert query_ids(client, headers={"NGSILD-Tenant": "tenant-b"}, type="Building") == [
        "urn:ngsi-ld:Building:other"]
    assert_problem(client.get(entity_url(B1), headers={"NGSILD-Tenant": "tenant-b"}), 404, "ResourceNotFound")


def test_tenant_is_echoed_in_responses(client: TestClient) -> None:
    tenant = {"NGSILD-Tenant": "tenant-a"}
    assert client.post(ENTITIES, json=building(), headers=tenant).headers["ngsild-tenant"] == "tenant-a"
    assert client.get(entity_url(B1), headers=tenant).headers["ngsild-tenant"] == "tenant-a"
    assert client.get(ENTITIES, params={"type": "Building"}, headers=tenant).headers["ngsild-tenant"] == "tenant-a"
    missing = client.get(entity_url("urn:ngsi-ld:Building:none"), headers=tenant)
    assert missing.status_code == 404 and missing.headers["ngsild-tenant"] == "tenant-a"


@pytest.mark.parametrize("path", [f"{ENTITIES}/{B1}", f"{ENTITIES}?type=Building", f"{NGSI}/types",
                                  f"{NGSI}/attributes"])
def test_unknown_tenant_on_read_is_404(client: TestClient, path: str) -> None:
    # CIM 009 §5.5.10 (v1.9.1 text): operations other than creations on a tenant that was never
    # created raise NonexistentTenant.
    body = assert_problem(client.get(path, headers={"NGSILD-Tenant": "nobody"}), 404, "NonexistentTenant")
    assert "nobody" in body["detail"]


@pytest.mark.parametrize("tenant", ["bad tenant", "a" * 300, "tenant;drop", "t,u"])
def test_malformed_tenant_is_400(client: TestClient, tenant: str) -> None:
    response = client.post(ENTITIES, json=building(), headers={"NGSILD-Tenant": tenant})
    assert_problem(response, 400, "BadRequestData")


def test_no_tenant_header_means_the_default_tenant(client: TestClient, settings: Settings) -> None:
    create(client, building())
    default = {"NGSILD-Tenant": settings.ngsild.default_tenant}
    assert query_ids(client, headers=default, type="Building") == [B1]


def test_integers_keep_64_bits_exactly_and_wider_ones_are_refused(client: TestClient) -> None:
    # orjson reads a wider integer as a float, silently (QA finding 19): it is refused instead.
    widest = 2**63 - 1
    body = f'{{"id": "{B1}", "type": "Building", "n": {{"type": "Property", "value": {widest}}}, ' \
           f'"m": {{"type": "Property", "value": {-2**63}}}, "code": {{"type": "Property", "value": "1234567890123456789012"}}}}'
    assert client.post(ENTITIES, content=body, headers={"Content-Type": "application/json"}).status_code == 201
    got = retrieve(client, B1)
    assert got["n"]["value"] == widest and got["m"]["value"] == -2**63  # exact
    assert got["code"]["value"] == "1234567890123456789012"  # long digit runs in strings are fine
    for value in (str(2**63), str(-2**63 - 1), "123456789012345678901234567890"):
        wide = f'{{"id": "urn:ngsi-ld:Building:w", "type": "Building", "n": {{"type": "Property", "value": {value}}}}}'
        response = client.post(ENTITIES, content=wide, headers={"Content-Type": "application/json"})
        assert_problem(response, 400, "BadRequestData")
        assert "does not fit in 64 bits" in response.json()["detail"]
    patch = client.patch(f"{ENTITIES}/{B1}/attrs", content='{"n": {"type": "Property", "value": 1e30}}',
                         headers={"Content-Type": "application/json"})
    assert patch.status_code == 204  # a float stays a float
    assert retrieve(client, B1)["n"]["value"] == 1e30


def test_a_nul_character_in_any_text_is_refused_alike_on_both_backends(client: TestClient) -> None:
    # PostgreSQL's jsonb cannot hold U+0000: the write failed there, every time, while SQLite took it.
    for body in (
        {"id": B1, "type": "Building", "name": {"type": "Property", "value": "a\x00b"}},
        {"id": B1, "type": "Building", "n": {"type": "Property", "value": {"deep": ["x", "y\x00"]}}},
        {"id": B1, "type": "Building", "n": {"type": "Property", "value": {"k\x00": 1}}},
    ):
        response = client.post(ENTITIES, json=body)
        assert_problem(response, 400, "BadRequestData")
        assert "U+0000" in response.json()["detail"]
    assert client.get(f"{ENTITIES}/{B1}").status_code == 404
    batch = client.post(f"{BATCH}/upsert", json=[building(), {
        "id": "urn:ngsi-ld:Building:n", "type": "Building", "name": {"type": "Property", "value": "\x00"}}])
    assert_problem(batch, 400, "BadRequestData")
    # the text of an escape (a backslash, then `u0000`) is no NUL: kept as sent
    text = "C:\\u0000"
    created = client.post(ENTITIES, json={"id": B1, "type": "Building", "path": {"type": "Property", "value": text}})
    assert created.status_code == 201, created.text
    assert retrieve(client, B1)["path"]["value"] == text
