"""ucity driven by FiLiP (FIWARE Library for Python) 0.8.1, its `ContextBrokerLDClient`.

FiLiP installs beside ucity (requirements-clients.txt, installed by scripts/test), so these tests
call it in-process against a real ucity (`live_server`). What FiLiP assumes of a broker, and what
ucity does about it, is in docs/clients.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.clients.conftest import NotificationSink, Received
from tests.conftest import LiveServer

pytestmark = pytest.mark.clients

if os.environ.get("CI"):  # scripts/test installs it: never skip silently in CI
    import filip  # noqa: F401
else:
    pytest.importorskip("filip", reason="pip install -r requirements-clients.txt")

from filip.clients.ngsi_ld.cb import ContextBrokerLDClient  # noqa: E402
from filip.models.base import FiwareLDHeader  # noqa: E402
from filip.models.ngsi_ld.context import ActionTypeLD, ContextLDEntity, ContextProperty  # noqa: E402
from filip.models.ngsi_ld.subscriptions import SubscriptionLD  # noqa: E402

AQ = "urn:ngsi-ld:AirQualityObserved:Seoul:Mapo:001"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def air_quality(no2: float, observed: str) -> ContextLDEntity:
    return ContextLDEntity(
        id=AQ, type="AirQualityObserved",
        NO2={"type": "Property", "value": no2, "unitCode": "GP", "observedAt": observed},
        name={"type": "Property", "value": "Mapo station"},
        refDevice={"type": "Relationship", "object": "urn:ngsi-ld:Device:aq-002"},
        location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.901, 37.556]}},
    )


def dump(entity: ContextLDEntity) -> dict[str, Any]:
    body: dict[str, Any] = entity.model_dump(exclude_none=True)
    return body


@pytest.fixture
def cb(live_server: LiveServer) -> Iterator[ContextBrokerLDClient]:
    client = ContextBrokerLDClient(url=live_server.url)
    yield client
    client.close()


def problem(call: Any) -> dict[str, Any]:
    """The ProblemDetails of the requests.HTTPError a FiLiP call raises."""
    with pytest.raises(requests.HTTPError) as info:
        call()
    assert info.value.response is not None
    body: dict[str, Any] = info.value.response.json()
    return body


def test_create_retrieve_update_and_errors(cb: ContextBrokerLDClient) -> None:
    location = cb.post_entity(air_quality(22.5, "2024-05-01T10:00:00Z"))
    assert location == f"/ngsi-ld/v1/entities/{AQ}"

    got = dump(cb.get_entity(AQ))
    assert (got["id"], got["type"]) == (AQ, "AirQualityObserved")
    assert got["NO2"]["value"] == 22.5 and got["NO2"]["unitCode"] == "GP"
    assert instant(got["NO2"]["observedAt"]) == instant("2024-05-01T10:00:00Z")
    assert got["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:aq-002"}
    assert list(got["location"]["value"]["coordinates"]) == [126.901, 37.556]
    # FiLiP names the core context v1.6 in a Link header; ucity echoes exactly that, once.
    assert got["@context"] == "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"

    kv = cb.get_entity(AQ, options="keyValues")
    assert (kv.NO2, kv.name, kv.refDevice) == (22.5, "Mapo station", "urn:ngsi-ld:Device:aq-002")

    cb.update_entity_attribute(AQ, ContextProperty(value=30.5), attr_name="NO2")  # PATCH .../attrs/NO2
    cb.append_entity_attributes(ContextLDEntity(id=AQ, type="AirQualityObserved",
                                                PM10={"type": "Property", "value": 41, "unitCode": "GQ"}))
    cb.delete_attribute(AQ, "name")
    after = dump(cb.get_entity(AQ, attrs=["NO2", "PM10", "name"]))
    assert after["NO2"]["value"] == 30.5 and after["PM10"]["value"] == 41 and "name" not in after
    assert "location" not in after  # attrs= narrows the response

    duplicate = problem(lambda: cb.post_entity(air_quality(1.0, "2024-05-01T10:00:00Z")))
    assert duplicate == {"type": ERRORS + "AlreadyExists", "title": "Already exists", "status": 409,
                         "detail": f"엔티티 {AQ} 이미 있음 / entity {AQ} already exists"}
    missing = problem(lambda: cb.get_entity("urn:ngsi-ld:AirQualityObserved:missing"))
    assert (missing["type"], missing["status"]) == (ERRORS + "ResourceNotFound", 404)

    cb.delete_entity_by_id(AQ)
    assert problem(lambda: cb.get_entity(AQ))["status"] == 404


def test_roundtrip_with_context_in_body(cb: ContextBrokerLDClient) -> None:
    """A retrieved entity carries @context; FiLiP then posts it as application/ld+json."""
    cb.post_entity(air_quality(22.5, "2024-05-01T10:00:00Z"))
    copy = dump(cb.get_entity(AQ))
    copy["id"] = AQ + ":copy"
    cb.entity_batch_operation(entities=[ContextLDEntity(**copy)], action_type=ActionTypeLD.UPSERT)
    got = dump(cb.get_entity(AQ + ":copy"))
    assert got["NO2"]["value"] == 22.5 and got["name"]["value"] == "Mapo station"


def test_query_by_type_with_count(live_server: LiveServer, cb: ContextBrokerLDClient) -> None:
    spots = [ContextLDEntity(id=f"urn:ngsi-ld:ParkingSpot:Haeundae:{i}", type="ParkingSpot",
                             status={"type": "Property", "value": "free" if i % 2 == 0 else "occupied"})
             for i in range(5)]
    others = [ContextLDEntity(id=f"urn:ngsi-ld:OffStreetParking:Bexco:{i}", type="OffStreetParking",
                              availableSpotNumber={"type": "Property", "value": 100 + i}) for i in range(2)]
    cb.entity_batch_operation(entities=spots + others, action_type=ActionTypeLD.CREATE)

    listed = cb.get_entity_list(entity_type="ParkingSpot")  # idPattern=.*&type=...&count=true&limit=1000
    assert sorted(e.id for e in listed) == [e.id for e in spots]
    # With no type FiLiP sends only idPattern=.*, and CIM 009 Table 6.4.3.2-1 wants one of type,
    # attrs, q or georel (or local=true): the broker answers 400, which FiLiP raises.
    with pytest.raises(requests.HTTPError) as refused:
        cb.get_entity_list()
    assert refused.value.response is not None and refused.value.response.status_code == 400
    assert len(cb.get_entity_list(entity_type="ParkingSpot,OffStreetParking")) == 7
    free = cb.get_entity_list(entity_type="ParkingSpot", q='status=="free"', options="keyValues")
    assert sorted(e.model_dump()["status"] for e in free) == ["free", "free", "free"]
    assert len(cb.get_entity_list(entity_type="ParkingSpot", limit=2)) == 2

    # FiLiP pages by the NGSILD-Results-Count header: pages of 2 (offset 0, 2, 4) give all 5.
    small_pages = ContextBrokerLDClient(url=live_server.url, pagination_limit=2)
    assert sorted(e.id for e in small_pages.get_entity_list(entity_type="ParkingSpot")) == [e.id for e in spots]

    # A count-only query through FiLiP's HTTP layer (its headers: Link, Accept, tenant).
    res = cb.get(url=f"{live_server.url}/ngsi-ld/v1/entities", params={"type": "ParkingSpot", "limit": 0,
                                                                        "count": "true"})
    assert res.status_code == 200 and res.json() == []
    assert res.headers["NGSILD-Results-Count"] == "5"
    # limit=0 without count=true is refused with a ProblemDetails body.
    res = cb.get(url=f"{live_server.url}/ngsi-ld/v1/entities", params={"type": "ParkingSpot", "limit": 0})
    assert res.status_code == 400 and res.json()["type"] == ERRORS + "BadRequestData"


def test_batch_upsert(cb: ContextBrokerLDClient) -> None:
    ids = [f"urn:ngsi-ld:TrafficFlowObserved:Gwangan:{i}" for i in range(3)]

    def flows(**attrs: Any) -> list[ContextLDEntity]:
        return [ContextLDEntity(id=ids[i], type="TrafficFlowObserved",
                                **{k: {"type": "Property", "value": v(i)} for k, v in attrs.items()})
                for i in range(3)]

    cb.entity_batch_operation(entities=flows(intensity=lambda i: 10 * i, laneId=lambda i: i),
                              action_type=ActionTypeLD.UPSERT)  # no options: replace
    cb.entity_batch_operation(entities=flows(intensity=lambda i: 100 * i, congested=lambda i: i == 2),
                              action_type=ActionTypeLD.UPSERT, options="update")
    for i in range(3):
        got = dump(cb.get_entity(ids[i]))
        assert (got["intensity"]["value"], got["laneId"]["value"], got["congested"]["value"]) == (100 * i, i, i == 2)

    cb.entity_batch_operation(entities=flows(intensity=lambda i: 7)[:1], action_type=ActionTypeLD.UPSERT,
                              options="replace")
    replaced = dump(cb.get_entity(ids[0]))
    assert replaced["intensity"]["value"] == 7 and "laneId" not in replaced and "congested" not in replaced

    cb.entity_batch_operation(entities=flows(intensity=lambda i: 1)[1:], action_type=ActionTypeLD.UPDATE)
    assert dump(cb.get_entity(ids[2]))["intensity"]["value"] == 1

    cb.entity_batch_operation(entities=flows()[:2], action_type=ActionTypeLD.DELETE)
    assert [e.id for e in cb.get_entity_list(entity_type="TrafficFlowObserved")] == [ids[2]]


def test_tenant(live_server: LiveServer, cb: ContextBrokerLDClient) -> None:
    # create_tenant=True: FiLiP creates and deletes a TemporaryTenant entity through NGSILD-Tenant.
    busan = ContextBrokerLDClient(url=live_server.url, fiware_header=FiwareLDHeader(ngsild_tenant="busan"))
    busan.post_entity(ContextLDEntity(id="urn:ngsi-ld:Streetlight:Suyeong:1", type="Streetlight",
                                      powerState={"type": "Property", "value": "on"}))
    assert [e.id for e in busan.get_entity_list(entity_type="Streetlight")] == ["urn:ngsi-ld:Streetlight:Suyeong:1"]
    assert cb.get_entity_list(entity_type="Streetlight") == []
    assert busan.get_entity_list(entity_type="TemporaryTenant") == []


def test_subscription_notification(cb: ContextBrokerLDClient, notification_sink: NotificationSink) -> None:
    subscription = SubscriptionLD(
        id="urn:ngsi-ld:Subscription:filip-aq", subscriptionName="filip NO2",
        entities=[{"type": "AirQualityObserved"}], watchedAttributes=["NO2"],
        notification={"attributes": ["NO2"], "format": "normalized",
                      "endpoint": {"uri": notification_sink.url, "accept": "application/json"}},
    )
    # post_subscription first lists /subscriptions/?options=count (reading NGSILD-Results-Count)
    # to skip duplicates, then POSTs and returns the last segment of the Location header.
    subscription_id = cb.post_subscription(subscription)
    assert subscription_id == "urn:ngsi-ld:Subscription:filip-aq"
    # FiLiP's duplicate check compares `notification` including members the broker adds; ucity shows
    # only what the client set (no timesSent before a delivery), so FiLiP recognises its subscription,
    # does not post it again and returns its id.
    assert cb.post_subscription(subscription) == subscription_id
    assert [s.id for s in cb.get_subscription_list()] == [subscription_id]

    fetched = cb.get_subscription(subscription_id)
    assert fetched.watchedAttributes == ["NO2"]
    assert [e.type for e in fetched.entities or []] == ["AirQualityObserved"]
    assert str(fetched.notification.endpoint.uri) == notification_sink.url

    cb.post_entity(air_quality(22.5, "2024-05-01T10:00:00Z"))
    cb.update_entity_attribute(AQ, ContextProperty(value=41.0), attr_name="NO2")

    def carries_41(item: Received) -> bool:
        body = item.body
        return isinstance(body, dict) and any(
            e.get("id") == AQ and (e.get("NO2") or {}).get("value") == 41.0 for e in body.get("data", []))

    got = notification_sink.wait_for(carries_41)
    assert got.path == "/notify" and got.headers["content-type"].startswith("application/json")
    body = got.body
    assert body["type"] == "Notification" and body["subscriptionId"] == subscription_id
    entity = next(e for e in body["data"] if e["id"] == AQ)
    assert entity["type"] == "AirQualityObserved" and entity["NO2"]["type"] == "Property"
    assert "name" not in entity and "@context" not in body  # attributes=[NO2]; accept application/json

    cb.delete_subscription(subscription_id)
    assert cb.get_subscription_list() == []


def test_temporal_retrieve(live_server: LiveServer, cb: ContextBrokerLDClient) -> None:
    """FiLiP 0.8.1 has no temporal API: the request goes through its HTTP layer and headers."""
    cb.post_entity(air_quality(10.0, "2024-05-01T10:00:00Z"))
    for value, at in ((20.0, "2024-05-01T11:00:00Z"), (30.0, "2024-05-01T12:00:00Z")):
        cb.entity_batch_operation(entities=[air_quality(value, at)], action_type=ActionTypeLD.UPSERT,
                                  options="update")

    url = f"{live_server.url}/ngsi-ld/v1/temporal/entities/{AQ}"
    res = cb.get(url=url, params={"attrs": "NO2"})
    assert res.status_code == 200, res.text
    troe = res.json()
    assert troe["id"] == AQ and "name" not in troe
    instances = troe["NO2"]
    assert sorted((i["value"], instant(i["observedAt"])) for i in instances) == [
        (10.0, instant("2024-05-01T10:00:00Z")), (20.0, instant("2024-05-01T11:00:00Z")),
        (30.0, instant("2024-05-01T12:00:00Z"))]

    res = cb.get(url=url, params={"attrs": "NO2", "options": "temporalValues", "timerel": "after",
                                  "timeAt": "2024-05-01T10:30:00Z"})
    assert res.status_code == 200, res.text
    values = res.json()["NO2"]["values"]
    assert sorted((v, instant(t)) for v, t in values) == [
        (20.0, instant("2024-05-01T11:00:00Z")), (30.0, instant("2024-05-01T12:00:00Z"))]
