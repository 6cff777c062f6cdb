"""ucity driven by ngsildclient 0.5.2 (Orange), from its own venv (see conftest.py, docs/clients.md).

Each test starts a real ucity (`live_server`), runs one scenario of ngsildclient_driver.py in the
ngsildclient venv against it, and asserts on what the library returned, as an application using
it would see it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.clients.conftest import Driver, NotificationSink
from tests.conftest import LiveServer

pytestmark = pytest.mark.clients

AQ = "urn:ngsi-ld:AirQualityObserved:Seoul:Jongno:001"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_create_retrieve_and_errors(live_server: LiveServer, ngsildclient: Driver) -> None:
    out = ngsildclient("create_retrieve", live_server.url)

    assert out["created"] is True
    entity = out["entity"]
    assert entity["id"] == AQ and entity["type"] == "AirQualityObserved"
    assert entity["NO2"]["value"] == 22.5 and entity["NO2"]["unitCode"] == "GP"
    assert instant(entity["NO2"]["observedAt"]) == instant("2024-05-01T10:00:00Z")
    assert entity["name"] == {"type": "Property", "value": "Jongno station"}
    assert entity["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:aq-001"}
    # ngsildclient's loc(lat, lon) sends GeoJSON [lon, lat]; ucity gives it back unchanged.
    assert entity["location"]["value"] == {"type": "Point", "coordinates": [126.979, 37.572]}
    # Accept: application/ld+json puts the @context in the body; ngsildclient's exists() relies on it.
    assert entity["@context"] == "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
    # A Link naming the (unversioned) core context comes back as it was sent.
    assert out["context_with_core_link"] == "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"

    kv = out["keyValues"]
    assert (kv["NO2"], kv["name"], kv["refDevice"]) == (22.5, "Jongno station", "urn:ngsi-ld:Device:aq-001")

    # The library maps the ProblemDetails `type` to its exception classes.
    assert out["duplicate"] == {"class": "NgsiAlreadyExistsError", "type": ERRORS + "AlreadyExists", "status": 409,
                                "title": "Already exists", "detail": f"엔티티 {AQ} 이미 있음 / entity {AQ} already exists"}
    assert out["missing"]["class"] == "NgsiResourceNotFoundError"
    assert (out["missing"]["type"], out["missing"]["status"]) == (ERRORS + "ResourceNotFound", 404)

    assert (out["exists_before_delete"], out["deleted"], out["exists_after_delete"]) == (True, True, False)


def test_query_by_type_with_count(live_server: LiveServer, ngsildclient: Driver) -> None:
    out = ngsildclient("query_count", live_server.url)

    spots = [f"urn:ngsi-ld:ParkingSpot:Gangnam:{i}" for i in range(5)]
    offstreet = [f"urn:ngsi-ld:OffStreetParking:Coex:{i}" for i in range(2)]
    assert out["created"] == {"success": spots + offstreet, "errors": []}
    # count() is GET /entities?limit=0&count=true, read from the NGSILD-Results-Count header.
    assert (out["count_spots"], out["count_free"], out["count_offstreet"], out["count_none"]) == (5, 3, 2, 0)
    # query() counts first, then fetches pages of `limit` with offset.
    assert out["paged_ids"] == spots
    assert len(out["first_two"]) == 2 and set(out["first_two"]) <= set(spots)
    assert out["free_status"] == ["free", "free", "free"]


def test_batch_upsert(live_server: LiveServer, ngsildclient: Driver) -> None:
    out = ngsildclient("batch_upsert", live_server.url)
    ids = [f"urn:ngsi-ld:TrafficFlowObserved:Teheran:{i}" for i in range(3)]

    assert out["created"] == {"success": ids, "errors": []}  # 201 + array of created ids
    assert out["updated"] == {"success": ids, "errors": []}  # 204: the library fills in the ids it sent
    for i, entity in enumerate(out["after_update"]):
        # options=update keeps laneId (not in the second batch) and adds congested.
        assert (entity["intensity"]["value"], entity["laneId"]["value"], entity["congested"]["value"]) == (
            100 * i, i, i == 2)
    assert out["replaced"] == {"success": [ids[0]], "errors": []}
    replaced = out["after_replace"]
    assert replaced["intensity"]["value"] == 7 and "laneId" not in replaced and "congested" not in replaced

    assert out["partly_new"] == {"success": ["urn:ngsi-ld:TrafficFlowObserved:Teheran:5"], "errors": []}

    mixed = out["mixed"]
    assert mixed["success"] == ["urn:ngsi-ld:TrafficFlowObserved:Teheran:9"]
    assert [e["entityId"] for e in mixed["errors"]] == ["urn:ngsi-ld:TrafficFlowObserved:bad"]
    error = mixed["errors"][0]["error"]
    assert (error["type"], error["status"]) == (ERRORS + "BadRequestData", 400)
    assert "intensity" in error["detail"]

    assert out["deleted"]["errors"] == [] and len(out["deleted"]["success"]) == 4
    assert out["count_after_delete"] == 1  # Teheran:5 is left


def test_tenant_autocreate(live_server: LiveServer, ngsildclient: Driver) -> None:
    out = ngsildclient("tenant", live_server.url, tenant="seoul")

    assert out["created"] is True
    assert (out["count_in_tenant"], out["count_in_default"]) == (1, 0)
    # ngsildclient "creates" a tenant by upserting a marker entity into it; ucity creates tenants on
    # first write, so the marker stays there as an ordinary entity.
    assert (out["marker_in_tenant"], out["marker_in_default"]) == (True, False)
    assert out["types_in_tenant"] == ["Streetlight", "__NGSILD-Tenant__"]


def test_subscription_notification(live_server: LiveServer, ngsildclient: Driver,
                                   notification_sink: NotificationSink) -> None:
    out = ngsildclient("subscribe", live_server.url, endpoint=notification_sink.url)

    assert out["id"] == "urn:ngsi-ld:Subscription:ngsildclient-aq"  # taken from the Location header
    fetched = out["fetched"]
    assert fetched["id"] == out["id"]
    assert fetched["entities"] == [{"type": "AirQualityObserved"}]
    assert fetched["watchedAttributes"] == ["NO2"]
    assert fetched["notification"]["endpoint"]["uri"] == notification_sink.url
    assert out["listed"] == [out["id"]] and out["exists"] is True

    def carries(value: float) -> Any:
        def match(item: Any) -> bool:
            body = item.body
            return isinstance(body, dict) and any(
                e.get("id") == AQ and (e.get("NO2") or {}).get("value") == value for e in body.get("data", []))
        return match

    got = notification_sink.wait_for(carries(41.0))
    body = got.body
    assert got.path == "/notify"
    assert body["type"] == "Notification" and body["subscriptionId"] == out["id"]
    assert instant(body["notifiedAt"]).tzinfo is not None
    entity = next(e for e in body["data"] if e["id"] == AQ)
    assert entity["type"] == "AirQualityObserved"
    assert instant(entity["NO2"]["observedAt"]) == instant("2024-05-01T11:00:00Z")
    assert "name" not in entity  # notification.attributes = ["NO2"]
    # The builder asks for endpoint.accept application/ld+json: the @context travels in the body.
    assert got.headers["content-type"].startswith("application/ld+json")
    assert "@context" in body


def test_temporal_retrieve(live_server: LiveServer, ngsildclient: Driver) -> None:
    out = ngsildclient("temporal", live_server.url)
    expected = [(10.0, "2024-05-01T10:00:00Z"), (20.0, "2024-05-01T11:00:00Z"), (30.0, "2024-05-01T12:00:00Z")]

    simplified = out["simplified"]  # options=temporalValues
    assert simplified["id"] == AQ and simplified["type"] == "AirQualityObserved"
    pairs = sorted((v, instant(t)) for v, t in simplified["NO2"]["values"])
    assert pairs == [(v, instant(t)) for v, t in expected]
    assert "name" not in simplified  # attrs=NO2

    normalized = out["normalized"]["NO2"]
    assert sorted((i["value"], instant(i["observedAt"])) for i in normalized) == [(v, instant(t)) for v, t in expected]
    assert all(i["type"] == "Property" and i["unitCode"] == "GP" for i in normalized)

    queried = out["queried"]  # timerel=between 10:30 and 12:30
    assert [q["id"] for q in queried] == [AQ]
    assert sorted((v, instant(t)) for v, t in queried[0]["NO2"]["values"]) == [
        (v, instant(t)) for v, t in expected[1:]]
