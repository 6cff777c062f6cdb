"""QA6 13: geo values as the FIWARE IoT Agent takes them for NGSI-LD (its docs: a "x, y" text, an array
`[23, 12.5]` or a GeoJSON object; the types geo:point, geo:json, GeoProperty, Point, LineString ...).

* An array is GeoJSON coordinates, longitude first (the IoT Agent puts it into `coordinates` as given); a
  swapped Korean pair (latitude 126) is refused with a hint rather than stored in the wrong place.
* A type named like a GeoJSON geometry (`Point`, `LineString` ...) makes a GeoProperty, not a plain Property.
* geo:point text stays NGSI-v2's "lat,lon" (documented difference: the IoT Agent's NGSI-LD mode reads it
  longitude first); a `Point` typed text is refused (no guess of the order).
* On `/attrs/<attr>` an array is one value (the IoT Agent, iotagent-json #856): a typed scalar attribute
  refuses it with a hint to send timed measures instead.
"""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.ingest.support import ENTITIES, provision
from ucity.ingest.decode import INVALID_GEO, TYPE_MISMATCH, decode_payload, static_instances
from ucity.ingest.model import AttrSpec, Device, ServiceGroup, StaticAttr, build_profile

TENANT = {"fiware-service": "geo"}
LD = {"NGSILD-Tenant": "geo"}
POINT = {"type": "Point", "coordinates": [126.8874, 37.4954]}


def _profile():  # type: ignore[no-untyped-def]
    return build_profile(Device("t", "/", "d1", "k1", "urn:ngsi-ld:Thing:d1", "Thing", attributes=(
        AttrSpec("p", "position", "geo:point"), AttrSpec("pt", "where", "Point"), AttrSpec("ls", "route", "LineString"),
        AttrSpec("t", "temperature", "Number"))), ServiceGroup("t", "/", "k1"))


def _decoded(measure: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    from datetime import UTC, datetime

    decoded = decode_payload(measure, _profile(), datetime(2026, 12, 7, tzinfo=UTC))
    attrs = decoded.observations[0].attrs if decoded.observations else {}
    return ({k: {m: v for m, v in i.items() if m != "observedAt"} for k, i in attrs.items()},
            {r.field or "": (r.reason, r.detail) for r in decoded.rejections})


def test_a_point_array_is_geojson_order_and_point_types_are_geoproperties() -> None:
    attrs, rejected = _decoded({"p": [126.8874, 37.4954], "pt": [126.8874, 37.4954], "ls": [[126.8, 37.4], [126.9, 37.5]]})
    assert not rejected
    assert attrs["position"] == attrs["where"] == {"type": "GeoProperty", "value": POINT}
    assert attrs["route"] == {"type": "GeoProperty", "value": {"type": "LineString",
                                                               "coordinates": [[126.8, 37.4], [126.9, 37.5]]}}
    attrs, _ = _decoded({"pt": POINT, "p": "37.4954,126.8874"})  # GeoJSON for Point; geo:point text: lat,lon
    assert attrs["where"] == attrs["position"] == {"type": "GeoProperty", "value": POINT}


def test_ambiguous_or_wrong_geo_values_are_refused_with_a_reason() -> None:
    _, rejected = _decoded({"p": [37.4954, 126.8874], "pt": "37.4954,126.8874", "ls": POINT, "t": True})
    assert rejected["p"][0] == INVALID_GEO and "was it [lat, lon]?" in rejected["p"][1]
    assert rejected["pt"][0] == INVALID_GEO and "geo:point" in rejected["pt"][1]
    assert rejected["ls"][0] == INVALID_GEO
    _, rejected = _decoded({"p": [1, 2, 3, 4], "pt": [True, 1]})
    assert rejected["p"][0] == rejected["pt"][0] == INVALID_GEO


def test_static_attributes_take_the_same_geo_forms() -> None:
    out = static_instances((StaticAttr("location", "geo:point", [126.8874, 37.4954]),
                            StaticAttr("area", "Point", POINT)))
    assert out["location"] == out["area"] == {"type": "GeoProperty", "value": POINT}


def test_a_single_measure_array_on_a_typed_attribute_says_how_to_send_timed_values() -> None:
    _, rejected = _decoded({"t": [{"timestamp": "2026-04-02T12:00:00Z", "value": 44}]})
    reason, detail = rejected["t"]
    assert reason == TYPE_MISMATCH and "one value" in detail and '"TimeInstant"' in detail


def test_geo_forms_over_http_and_provisioning(client: TestClient) -> None:
    provision(client, TENANT, apikey="gk", entity_type="Thing", devices=[{
        "device_id": "g1", "attributes": [{"object_id": "pt", "name": "where", "type": "Point"}],
        "static_attributes": [{"name": "location", "type": "geo:point", "value": [126.8874, 37.4954]}]}])
    response = client.post("/iot/json?k=gk&i=g1", json={"pt": [126.9, 37.5], "raw": [{"timestamp": "x", "value": 1}]})
    assert response.status_code == 200 and response.json()["rejected"] == [], response.text
    entity = client.get(ENTITIES + "urn:ngsi-ld:Thing:g1", headers=LD).json()
    assert entity["location"] == {"type": "GeoProperty", "value": POINT}
    assert entity["where"]["type"] == "GeoProperty" and entity["where"]["value"] == {"type": "Point",
                                                                                     "coordinates": [126.9, 37.5]}
    assert entity["raw"]["value"] == [{"timestamp": "x", "value": 1}]  # untyped: the array is its one value
    refused = client.post("/iot/devices", headers=TENANT | {"content-type": "application/json"}, json={"devices": [{
        "device_id": "g2", "apikey": "gk", "static_attributes": [{"name": "location", "type": "geo:point",
                                                                   "value": [37.4954, 126.8874]}]}]})
    assert refused.status_code == 400 and "[lat, lon]" in refused.json()["detail"]
