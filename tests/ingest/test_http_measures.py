"""POST /iot/json: measures land on the device's NGSI-LD entity and in its history, with their own time."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.ingest.support import ENTITIES, IOT, TEMPORAL, provision
from ucity.core.errors import BadRequest, Unavailable

TENANT = {"fiware-service": "guro"}
LD = {"NGSILD-Tenant": "guro"}
ENTITY = "urn:ngsi-ld:WeatherObserved:ws-01"
ATTRS = [
    {"object_id": "t", "name": "temperature", "type": "Number"},
    {"object_id": "h", "name": "relativeHumidity", "type": "Number"},
    {"object_id": "b", "name": "batteryLevel", "type": "Number"},
    {"object_id": "r", "name": "rssi", "type": "Integer"},
]


def setup_station(client: TestClient) -> None:
    provision(client, TENANT, apikey="wk", entity_type="WeatherObserved", devices=[{"device_id": "ws-01", "attributes": ATTRS}])


def test_measures_reach_the_entity_and_the_history_with_their_own_time(client: TestClient) -> None:
    setup_station(client)
    measures = [
        {"t": 11.5, "h": 60, "TimeInstant": "2026-03-01T00:00:00Z"},
        {"t": 12.0, "h": 58, "b": 0.87, "r": -71, "TimeInstant": "2026-03-01T00:10:00Z"},
    ]
    response = client.post("/iot/json?k=wk&i=ws-01", json=measures)
    assert response.status_code == 200, response.text
    assert response.json() == {"entityId": ENTITY, "measures": 2, "accepted": 6, "rejected": []}

    entity = client.get(ENTITIES + ENTITY, headers=LD).json()
    assert entity["temperature"] == {"type": "Property", "value": 12.0, "observedAt": "2026-03-01T00:10:00.000000Z"}
    assert entity["relativeHumidity"]["value"] == 58
    assert entity["batteryLevel"]["value"] == 0.87 and entity["rssi"]["value"] == -71

    history = client.get(TEMPORAL + ENTITY, headers=LD, params={"attrs": "temperature"}).json()
    assert [(i["value"], i["observedAt"]) for i in history["temperature"]] == [
        (11.5, "2026-03-01T00:00:00.000000Z"), (12.0, "2026-03-01T00:10:00.000000Z")]


def test_an_older_measure_goes_to_history_but_not_to_the_current_state(client: TestClient) -> None:
    setup_station(client)
    assert client.post("/iot/json?k=wk&i=ws-01", json={"t": 20, "TimeInstant": "2026-03-01T12:00:00Z"}).status_code == 200
    assert client.post("/iot/json?k=wk&i=ws-01", json={"t": 5, "TimeInstant": "2026-03-01T06:00:00Z"}).status_code == 200
    assert client.get(ENTITIES + ENTITY, headers=LD).json()["temperature"]["value"] == 20
    history = client.get(TEMPORAL + ENTITY, headers=LD, params={"attrs": "temperature"}).json()
    assert sorted((i["observedAt"], i["value"]) for i in history["temperature"]) == [
        ("2026-03-01T06:00:00.000000Z", 5), ("2026-03-01T12:00:00.000000Z", 20)]


def test_partly_invalid_measures_keep_the_valid_fields(client: TestClient) -> None:
    setup_station(client)
    response = client.post("/iot/json?k=wk&i=ws-01", json=[{"t": "hot", "h": 41}, "garbage", {"r": 1.5, "b": 0.5}])
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    assert sorted((r.get("measure"), r.get("attribute"), r["reason"]) for r in body["rejected"]) == [
        (0, "t", "type-mismatch"), (1, None, "not-an-object"), (2, "r", "type-mismatch")]
    entity = client.get(ENTITIES + ENTITY, headers=LD).json()
    assert entity["relativeHumidity"]["value"] == 41 and entity["batteryLevel"]["value"] == 0.5
    assert "temperature" not in entity and "rssi" not in entity

    stats = client.get("/api/v1/ingest/stats", headers=TENANT).json()
    (row,) = [d for d in stats["devices"] if d["device_id"] == "ws-01"]
    assert (row["accepted"], row["rejected"], row["measures"]) == (2, 3, 2)
    assert row["reasons"] == {"type-mismatch": 2, "not-an-object": 1}


def test_errors_are_problem_details(client: TestClient) -> None:
    setup_station(client)
    only_bad = client.post("/iot/json?k=wk&i=ws-01", json={"t": "x"})
    assert only_bad.status_code == 400 and only_bad.json()["rejected"][0]["reason"] == "type-mismatch"
    malformed = client.post("/iot/json?k=wk&i=ws-01", content=b'{"t": 1', headers=IOT)
    assert malformed.status_code == 400 and malformed.json()["rejected"][0]["reason"] == "malformed-json"
    wrong_type = client.post("/iot/json?k=wk&i=ws-01", content=b"t|1", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415
    unknown_device = client.post("/iot/json?k=wk&i=nope", json={"t": 1})
    assert unknown_device.status_code == 404 and unknown_device.json()["title"] == "Resource not found"
    assert client.post("/iot/json?k=nokey&i=ws-01", json={"t": 1}).status_code == 404
    assert client.post("/iot/json?i=ws-01", json={"t": 1}).status_code == 400

    stats = client.get("/api/v1/ingest/stats", headers=TENANT).json()
    # the unknown device of its apikey is the tenant's; an apikey nobody has is the platform's (default tenant)
    assert stats["totals"]["reasons"] == {"type-mismatch": 1, "malformed-json": 1, "unknown-device": 1}
    assert [(r["service"], r["apikey"]) for r in stats["devices"] if r["device_id"] == "nope"] == [("guro", "wk")]
    platform = client.get("/api/v1/ingest/stats").json()
    assert [(r["service"], r["apikey"], r["device_id"]) for r in platform["devices"]] == [(None, "nokey", "ws-01")]
    assert client.get(ENTITIES + ENTITY, headers=LD).json().get("temperature") is None


def test_autoprovision_creates_the_device_on_its_first_valid_measure(client: TestClient) -> None:
    provision(client, TENANT, apikey="auto", entity_type="Streetlight", autoprovision=True, devices=[],
              attributes=[{"object_id": "p", "name": "powerState", "type": "Text"}])
    assert client.post("/iot/json?k=auto&i=sl-9", json={"x": None}).status_code == 400  # garbage creates nothing
    assert client.get("/iot/devices/sl-9", headers=TENANT).status_code == 404
    assert client.post("/iot/json?k=auto&i=sl-9", json={"p": "on"}).status_code == 200
    device = client.get("/iot/devices/sl-9", headers=TENANT).json()
    assert device["entity_name"] == "urn:ngsi-ld:Streetlight:sl-9" and device["autoprovisioned"] is True
    entity = client.get(ENTITIES + "urn:ngsi-ld:Streetlight:sl-9", headers=LD).json()
    assert entity["powerState"]["value"] == "on"


def test_about(client: TestClient) -> None:
    body = client.get("/iot/about").json()
    assert "libVersion" in body and body["baseRoot"] == "/"


def test_a_write_the_store_refuses_is_a_problem_naming_the_values_and_is_counted(client: TestClient) -> None:
    """A write outcome that is an error other than Unavailable (the store refused the write for the device's
    entity): the sender gets ProblemDetails with that error's status and every value not written, listed after
    the values decode rejected; the stats count them (reason not-written), nothing is dropped silently. A
    failure of ucity's own is a 500 with the same list; a store that cannot take it now stays a 503."""
    setup_station(client)
    writer = client.app.state.ucity.ingest.writer  # type: ignore[attr-defined]
    answer: list[Exception] = []

    async def refusing(writes: list[Any]) -> list[Any]:
        return [answer[0] for _ in writes]

    writer.write = refusing
    answer.append(BadRequest("attribute temperature is a Relationship here"))
    response = client.post("/iot/json?k=wk&i=ws-01", json=[{"t": 1.5, "h": "wet", "TimeInstant": "2026-03-01T00:00:00Z"},
                                                          {"b": 0.5, "TimeInstant": "2026-03-01T00:10:00Z"}])
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["type"], body["title"]) == ("https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "Bad request data")
    assert body["detail"] == "the measures were not written: attribute temperature is a Relationship here"
    assert [(r["reason"], r.get("attribute")) for r in body["rejected"]] == [
        ("type-mismatch", "h"), ("not-written", "temperature"), ("not-written", "batteryLevel")]
    assert body["rejected"][2]["detail"] == ("measure of 2026-03-01T00:10:00.000000Z not written: "
                                             "attribute temperature is a Relationship here")

    answer[0] = KeyError("a bug")
    response = client.post("/iot/json?k=wk&i=ws-01", json={"t": 2})
    assert response.status_code == 500 and response.json()["rejected"][0]["reason"] == "not-written"
    assert "KeyError" in response.json()["rejected"][0]["detail"]

    answer[0] = Unavailable("the store could not commit: disk I/O error")
    assert client.post("/iot/json?k=wk&i=ws-01", json={"t": 3}).status_code == 503  # send it again: not counted

    stats = client.get("/api/v1/ingest/stats", headers=TENANT).json()
    (row,) = [d for d in stats["devices"] if d["device_id"] == "ws-01"]
    assert (row["accepted"], row["measures"], row["reasons"]) == (0, 0, {"type-mismatch": 1, "not-written": 3})
    assert "temperature" not in client.get(ENTITIES + ENTITY, headers=LD).json()  # nothing was written


def test_measures_without_their_own_time_received_together_are_all_kept(client: TestClient) -> None:
    """QA2 finding 1: measures without TimeInstant received together (an array, one MQTT batch, one clock tick)
    shared their receive time, and an attribute instance is unique per observedAt: all but one were acknowledged,
    counted as accepted, and lost. Each now gets its own instant, strictly after the last one given."""
    from ucity.ingest.service import Received

    setup_station(client)
    response = client.post("/iot/json?k=wk&i=ws-01", json=[{"t": 1}, {"t": 2}, {"t": 3}])
    assert response.status_code == 200 and response.json()["accepted"] == 3
    ingest = client.app.state.ucity.ingest  # type: ignore[attr-defined]
    batch = [Received(ingest.resolve("wk", "ws-01"), {"t": t}, "mqtt") for t in range(4, 9)]  # one MQTT batch
    results = client.portal.call(ingest.ingest, batch)
    assert all(not isinstance(r.outcome, Exception) for r in results)
    history = client.get(TEMPORAL + ENTITY, headers=LD, params={"attrs": "temperature", "lastN": "100"}).json()
    instances = sorted((i["observedAt"], i["value"]) for i in history["temperature"])
    assert [value for _, value in instances] == list(range(1, 9))  # every value, in the order received
    assert len({at for at, _ in instances}) == 8
    assert client.get(ENTITIES + ENTITY, headers=LD).json()["temperature"]["value"] == 8  # the last received
