"""Drives a running ucity with ngsildclient (Orange) and writes what it saw as JSON.

Runs in the separate venv built by tests/clients/conftest.py (ngsildclient's pins conflict with
ucity's), never in ucity's own environment:

    python ngsildclient_driver.py SCENARIO BASE_URL OUT_JSON [ARGS_JSON]

Each scenario uses the library's own calls the way an application would and records the results
(and the library's exceptions, as class name + ProblemDetails) for the test to assert on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ngsildclient import CORE_CONTEXT, Client, Entity, SubscriptionBuilder
from ngsildclient.api.exceptions import NgsiContextBrokerError
from ngsildclient.api.helper.temporal import TemporalQuery

Scenario = Callable[[str, dict[str, Any]], dict[str, Any]]
SCENARIOS: dict[str, Scenario] = {}
AQ = "urn:ngsi-ld:AirQualityObserved:Seoul:Jongno:001"


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


def connect(url: str, **kw: Any) -> Client:
    parts = urlsplit(url)
    return Client(hostname=parts.hostname or "127.0.0.1", port=parts.port or 80, verbose=False, **kw)


def error_of(call: Callable[[], Any]) -> dict[str, Any]:
    """The library exception a call raises, as {class, type, status, detail}."""
    try:
        result = call()
    except NgsiContextBrokerError as exc:
        pd = exc.problemdetails
        return {"class": type(exc).__name__, "type": pd.type, "status": pd.status, "title": pd.title,
                "detail": pd.detail}
    return {"class": None, "result": repr(result)}


def batch(result: Any) -> dict[str, Any]:
    return {"success": list(result.success), "errors": list(result.errors)}


def air_quality(no2: float, observed: str) -> Entity:
    return (Entity("AirQualityObserved", "Seoul:Jongno:001")
            .prop("NO2", no2, unitcode="GP", observedat=observed)
            .prop("name", "Jongno station")
            .rel("refDevice", "urn:ngsi-ld:Device:aq-001")
            .loc(37.572, 126.979))


@scenario
def create_retrieve(url: str, args: dict[str, Any]) -> dict[str, Any]:
    client = connect(url)
    entity = air_quality(22.5, "2024-05-01T10:00:00Z")
    created = client.create(entity)
    got = client.get(AQ)
    key_values = client.get(AQ, asdict=True, params={"options": "keyValues"})
    with_core_link = client.get(AQ, ctx=CORE_CONTEXT, asdict=True)  # Link: the unversioned core URL
    duplicate = error_of(lambda: client.create(entity))
    missing = error_of(lambda: client.get("urn:ngsi-ld:AirQualityObserved:missing"))
    exists_before = client.exists(AQ)
    deleted = client.delete(entity)
    return {"created": created, "entity": got.to_dict(), "keyValues": key_values,
            "context_with_core_link": with_core_link["@context"], "duplicate": duplicate,
            "missing": missing, "exists_before_delete": exists_before, "deleted": deleted,
            "exists_after_delete": client.exists(AQ)}


@scenario
def query_count(url: str, args: dict[str, Any]) -> dict[str, Any]:
    client = connect(url)
    spots = [Entity("ParkingSpot", f"Gangnam:{i}").prop("status", "free" if i % 2 == 0 else "occupied")
             .prop("category", ["onStreet"]) for i in range(5)]
    others = [Entity("OffStreetParking", f"Coex:{i}").prop("availableSpotNumber", 100 + i) for i in range(2)]
    created = client.create(spots + others)
    paged = client.query(type="ParkingSpot", limit=2)  # count first, then pages of 2
    return {
        "created": batch(created),
        "count_spots": client.count(type="ParkingSpot"),
        "count_free": client.count(type="ParkingSpot", q='status=="free"'),
        "count_offstreet": client.count(type="OffStreetParking"),
        "count_none": client.count(type="Nothing"),
        "paged_ids": sorted(e.id for e in paged),
        "first_two": [e.id for e in client.query_head(type="ParkingSpot", n=2)],
        "free_status": sorted(e["status"]["value"] for e in client.query(type="ParkingSpot", q='status=="free"')),
    }


@scenario
def batch_upsert(url: str, args: dict[str, Any]) -> dict[str, Any]:
    client = connect(url)
    first = [Entity("TrafficFlowObserved", f"Teheran:{i}").prop("intensity", 10 * i).prop("laneId", i)
             for i in range(3)]
    created = client.upsert(first)
    again = [Entity("TrafficFlowObserved", f"Teheran:{i}").prop("intensity", 100 * i).prop("congested", i == 2)
             for i in range(3)]
    updated = client.upsert(again, update=True)  # options=update: merge into the existing entities
    after_update = [client.get(f"urn:ngsi-ld:TrafficFlowObserved:Teheran:{i}").to_dict() for i in range(3)]
    replaced = client.upsert([Entity("TrafficFlowObserved", "Teheran:0").prop("intensity", 7)])  # options=replace
    after_replace = client.get("urn:ngsi-ld:TrafficFlowObserved:Teheran:0").to_dict()
    bad = Entity.from_dict({"id": "urn:ngsi-ld:TrafficFlowObserved:bad", "type": "TrafficFlowObserved",
                            "@context": ["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"],
                            "intensity": {"type": "Property"}})
    # One existing, one new: the 201 body lists only the new id (CIM 009 §6.15.3.1), and ngsildclient
    # takes that body as its whole success list.
    partly_new = client.upsert([again[0], Entity("TrafficFlowObserved", "Teheran:5").prop("intensity", 5)])
    nine = Entity("TrafficFlowObserved", "Teheran:9").prop("intensity", 9)
    mixed = client.upsert([nine, bad])
    # Entities, not ids: on a 204 ngsildclient 0.5.2 reads `.id` of each item it sent.
    deleted = client.delete([*again, nine])
    return {"created": batch(created), "updated": batch(updated), "after_update": after_update,
            "replaced": batch(replaced), "after_replace": after_replace, "partly_new": batch(partly_new),
            "mixed": batch(mixed),
            "deleted": batch(deleted), "count_after_delete": client.count(type="TrafficFlowObserved")}


@scenario
def tenant(url: str, args: dict[str, Any]) -> dict[str, Any]:
    default = connect(url)
    seoul = connect(url, tenant=args["tenant"])  # tenant_autocreate: probes, then creates it
    created = seoul.create(Entity("Streetlight", "Mapo:1").prop("powerState", "on"))
    marker = f"urn:ngsi-ld:__NGSILD-Tenant__:{args['tenant']}"
    return {"created": created, "count_in_tenant": seoul.count(type="Streetlight"),
            "count_in_default": default.count(type="Streetlight"),
            "marker_in_tenant": seoul.exists(marker), "marker_in_default": default.exists(marker),
            "types_in_tenant": sorted(seoul.types.list())}


@scenario
def subscribe(url: str, args: dict[str, Any]) -> dict[str, Any]:
    client = connect(url)
    sub = (SubscriptionBuilder(args["endpoint"]).id("urn:ngsi-ld:Subscription:ngsildclient-aq")
           .name("ngsildclient NO2").select_type("AirQualityObserved").watch(["NO2"]).notif(["NO2"]).build())
    subscription_id = client.subscriptions.create(sub)
    fetched = client.subscriptions.get(subscription_id)
    listed = client.subscriptions.list()
    client.create(air_quality(22.5, "2024-05-01T10:00:00Z"))
    client.upsert([air_quality(41.0, "2024-05-01T11:00:00Z")], update=True)
    return {"sent": sub, "id": subscription_id, "fetched": fetched, "listed": [s.get("id") for s in listed],
            "exists": client.subscriptions.exists(subscription_id)}


@scenario
def temporal(url: str, args: dict[str, Any]) -> dict[str, Any]:
    client = connect(url)
    client.create(air_quality(10.0, "2024-05-01T10:00:00Z"))
    for value, at in ((20.0, "2024-05-01T11:00:00Z"), (30.0, "2024-05-01T12:00:00Z")):
        client.batch.update([air_quality(value, at)])
    simplified = client.temporal.get(AQ, attrs=["NO2"])  # options=temporalValues
    normalized = client.temporal.get(AQ, attrs=["NO2"], verbose=True)
    queried = client.temporal.query(type="AirQualityObserved", attrs=["NO2"],
                                    tq=TemporalQuery().between("2024-05-01T10:30:00Z", "2024-05-01T12:30:00Z"))
    return {"simplified": simplified, "normalized": normalized, "queried": queried}


def main(argv: list[str]) -> int:
    name, url, out = argv[1], argv[2], argv[3]
    args = json.loads(argv[4]) if len(argv) > 4 else {}
    result = SCENARIOS[name](url, args)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
