"""QA finding 3 over HTTP, on both store backends: out-of-range date-times (outside 0002-01-01..9998-12-31
in UTC, clock.MIN_INSTANT..MAX_INSTANT) are 400 BadRequestData on every endpoint that takes one, not 500
InternalError; finding 1's NGSI-LD variant (PATCH with an observedAt of 9999) is refused too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import assert_problem
from tests.ingest.support import IOT, provision
from tests.ops.support import POINT, TOKENS, ops_settings
from ucity.server import create_app

B = "/ngsi-ld/v1"
JSON = {"content-type": "application/json"}
BAD = ["0001-01-01T00:00:00+09:00", "9999-12-31T23:59:59-09:00", "9999-12-31T23:59:59Z"]


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = ops_settings(tmp_path, agencies=[])
    settings = settings.model_copy(update={"domains": settings.domains.model_copy(update={"enabled": ["facility_safety"]})})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        yield client


def entity(eid: str, observed: str) -> dict[str, object]:
    return {"id": eid, "type": "X", "a": {"type": "Property", "value": 1, "observedAt": observed}}


@pytest.mark.parametrize("observed", BAD)
def test_ngsild_create_and_patch_refuse_an_out_of_range_observed_at(http: TestClient, observed: str) -> None:
    body = assert_problem(http.post(f"{B}/entities", json=entity("urn:ngsi-ld:X:t1", observed), headers=JSON),
                          400, "BadRequestData")
    assert "out of range" in body["detail"]
    assert http.get(f"{B}/entities/urn:ngsi-ld:X:t1").status_code == 404
    assert http.post(f"{B}/entities", json=entity("urn:ngsi-ld:X:t2", "2026-12-01T00:00:00Z"),
                     headers=JSON).status_code == 201
    patch = {"a": {"type": "Property", "value": 2, "observedAt": observed}}
    assert_problem(http.patch(f"{B}/entities/urn:ngsi-ld:X:t2/attrs", json=patch, headers=JSON), 400, "BadRequestData")
    batch = [entity("urn:ngsi-ld:X:t3", observed)]
    response = http.post(f"{B}/entityOperations/upsert", json=batch, headers=JSON)
    assert response.status_code in (207, 400), response.text
    assert http.get(f"{B}/entities/urn:ngsi-ld:X:t3").status_code == 404
    assert http.get(f"{B}/entities/urn:ngsi-ld:X:t2").json()["a"]["value"] == 1


@pytest.mark.parametrize("expires", BAD)
def test_subscription_expires_at_out_of_range_is_400(http: TestClient, expires: str) -> None:
    subscription = {"type": "Subscription", "entities": [{"type": "X"}], "expiresAt": expires,
                    "notification": {"endpoint": {"uri": "http://127.0.0.1:9912/x"}}}
    assert_problem(http.post(f"{B}/subscriptions", json=subscription, headers=JSON), 400, "BadRequestData")


def test_temporal_query_bounds_beyond_the_range_select_from_its_ends(http: TestClient) -> None:
    assert http.post(f"{B}/entities", json=entity("urn:ngsi-ld:X:h1", "2026-12-01T00:00:00Z"),
                     headers=JSON).status_code == 201
    for time_at in ("0001-01-01T00:00:00+09:00", "0001-01-01T00:00:00Z"):
        response = http.get(f"{B}/temporal/entities/urn:ngsi-ld:X:h1",
                            params={"timerel": "after", "timeAt": time_at, "attrs": "a"})
        assert response.status_code == 200, response.text
        assert len(response.json()["a"]) == 1
    response = http.get(f"{B}/temporal/entities/urn:ngsi-ld:X:h1",
                        params={"timerel": "before", "timeAt": "9999-12-31T23:59:59-09:00", "attrs": "a"})
    assert response.status_code == 200, response.text


def test_iot_json_out_of_range_times_are_invalid_time_and_the_valid_fields_are_kept(http: TestClient) -> None:
    provision(http, {}, "dtk", [], entity_type="Thing", autoprovision=True,
              attributes=[{"object_id": "d", "name": "d", "type": "DateTime"},
                          {"object_id": "b", "name": "b", "type": "Number"}])
    response = http.post("/iot/json", params={"k": "dtk", "i": "dt-1"}, headers=IOT,
                         json={"b": 0.3, "TimeInstant": "0001-01-01T00:00:00+09:00"})
    assert response.status_code == 200, response.text
    assert [r["reason"] for r in response.json()["rejected"]] == ["invalid-time"]
    response = http.post("/iot/json", params={"k": "dtk", "i": "dt-1"}, headers=IOT,
                         json={"d": "0001-01-01T00:00:00+09:00", "x": 1})
    assert response.status_code == 200, response.text
    assert [(r["reason"], r["attribute"]) for r in response.json()["rejected"]] == [("invalid-time", "d")]
    current = http.get(f"{B}/entities/urn:ngsi-ld:Thing:dt-1", params={"options": "keyValues"}).json()
    assert (current["b"], current["x"]) == (0.3, 1)
    totals = http.get("/api/v1/ingest/stats").json()["totals"]
    assert totals["reasons"] == {"invalid-time": 2}


@pytest.mark.parametrize("occurred", BAD[:2])
def test_ops_event_occurred_at_out_of_range_is_400(http: TestClient, occurred: str) -> None:
    response = http.post("/api/v1/events", headers={"Authorization": f"Bearer {TOKENS['operator']}"},
                         json={"service": "DISASTER", "typeCode": "flood", "occurredAt": occurred,
                               "location": {"lon": POINT[0], "lat": POINT[1]}})
    assert response.status_code == 400, response.text


def test_facility_detail_from_out_of_range_is_400(http: TestClient) -> None:
    api, facility = "/api/v1/facility-safety", "urn:ngsi-ld:Building:wall-1"
    operator = {"Authorization": f"Bearer {TOKENS['operator']}"}
    created = http.post(f"{api}/facilities", headers=operator, json={
        "id": facility, "name": "wall 1", "facilityType": "footbridge", "facilityClass": 2, "district": "구로동",
        "location": {"type": "Point", "coordinates": list(POINT)}})
    assert created.status_code == 201, created.text
    assert http.get(f"{api}/facilities/{facility}", headers=operator).status_code == 200
    for start in BAD[:2]:
        response = http.get(f"{api}/facilities/{facility}", params={"from": start}, headers=operator)
        assert response.status_code == 400, response.text
