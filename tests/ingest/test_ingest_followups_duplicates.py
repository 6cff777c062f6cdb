"""QA6 15: two measures of one payload with the same time for one attribute. History keeps one instance per
attribute and observedAt (docs/conformance.md item 10), so the answer counts the value kept and lists the
replaced one as `duplicate-time`, instead of `accepted: 2` for one stored value."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.ingest.support import ENTITIES, TEMPORAL, provision

TENANT = {"fiware-service": "guro"}
LD = {"NGSILD-Tenant": "guro"}
ENTITY = "urn:ngsi-ld:WeatherObserved:ws-dup"
T0 = "2026-03-01T00:00:00Z"


def setup_station(client: TestClient) -> None:
    provision(client, TENANT, apikey="dk", entity_type="WeatherObserved", devices=[{
        "device_id": "ws-dup", "attributes": [{"object_id": "t", "name": "temperature", "type": "Number"},
                                              {"object_id": "h", "name": "relativeHumidity", "type": "Number"}]}])


def test_a_value_replaced_in_the_same_payload_is_not_counted_as_accepted(client: TestClient) -> None:
    setup_station(client)
    response = client.post("/iot/json?k=dk&i=ws-dup", json=[{"t": 1.0, "h": 50, "TimeInstant": T0},
                                                             {"t": 2.0, "TimeInstant": T0}])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2 and body["measures"] == 2  # t=2.0 and h=50; t=1.0 was replaced
    assert body["rejected"] == [{"reason": "duplicate-time", "measure": 0, "attribute": "temperature",
                                 "detail": "'temperature' at 2026-03-01T00:00:00.000000Z is replaced by measure 1's "
                                           "value at the same time: an attribute keeps one value per time"}]
    history = client.get(TEMPORAL + ENTITY, headers=LD, params={"attrs": "temperature,relativeHumidity"}).json()
    assert [i["value"] for i in history["temperature"]] == [2.0]  # what the answer says is what was kept
    assert [i["value"] for i in history["relativeHumidity"]] == [50]
    assert client.get(ENTITIES + ENTITY, headers=LD).json()["temperature"]["value"] == 2.0
    stats = client.get("/api/v1/ingest/stats", headers=TENANT).json()
    (row,) = [d for d in stats["devices"] if d["device_id"] == "ws-dup"]
    assert (row["accepted"], row["measures"], row["reasons"]) == (2, 2, {"duplicate-time": 1})


def test_a_measure_whose_every_value_is_replaced_is_not_a_measure(client: TestClient) -> None:
    setup_station(client)
    response = client.post("/iot/json?k=dk&i=ws-dup", json=[{"t": 1.0, "TimeInstant": T0}, {"t": 2.0, "TimeInstant": T0},
                                                             {"t": 3.0, "TimeInstant": "2026-03-01T00:01:00Z"}])
    body = response.json()
    assert (body["measures"], body["accepted"]) == (2, 2)
    assert [(r["reason"], r["measure"]) for r in body["rejected"]] == [("duplicate-time", 0)]
    history = client.get(TEMPORAL + ENTITY, headers=LD, params={"attrs": "temperature"}).json()
    assert [i["value"] for i in history["temperature"]] == [2.0, 3.0]


def test_the_same_time_for_different_attributes_is_no_duplicate(client: TestClient) -> None:
    setup_station(client)
    body = client.post("/iot/json?k=dk&i=ws-dup", json=[{"t": 1.0, "TimeInstant": T0}, {"h": 40, "TimeInstant": T0}]).json()
    assert (body["measures"], body["accepted"], body["rejected"]) == (2, 2, [])
