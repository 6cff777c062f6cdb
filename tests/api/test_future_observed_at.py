"""QA10 F1 over HTTP, on both store backends, with a fake platform clock: an NGSI-LD write that records history
refuses an observedAt more than `ngsild.max_future_s` ahead of the platform clock (400 BadRequestData, one
error per entity in a batch), since retention deletes history by that time and an instance dated 2099 would
be kept until 2099. Every write path: entities, attributes, batch operations, temporal create/append/modify."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import assert_problem
from ucity.core.clock import FakeClock, to_iso
from ucity.core.config import load_settings
from ucity.server import create_app

B = "/ngsi-ld/v1"
JSON = {"content-type": "application/json"}
NOW = datetime(2026, 6, 1, tzinfo=UTC)
SOON = to_iso(NOW + timedelta(hours=23))  # within the default bound (one day)
LATER = to_iso(NOW + timedelta(days=2))  # beyond it
FAR = "2099-01-01T00:00:00Z"
E = "urn:ngsi-ld:Person:f1"


def make_client(tmp_path: Path, clock: FakeClock, **ngsild: Any) -> TestClient:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             ngsild=ngsild)
    return TestClient(create_app(settings, clock=clock), base_url="http://127.0.0.1:8000")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def http(tmp_path: Path, clock: FakeClock) -> Iterator[TestClient]:
    with make_client(tmp_path, clock) as client:
        yield client


def loc(observed: str, lon: float = 126.8871) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 37.4951]}, "observedAt": observed}


def refused(response: Any) -> None:
    body = assert_problem(response, 400, "BadRequestData")
    assert "ngsild.max_future_s" in body["detail"] and "미래" in body["detail"], body


def history(http: TestClient, entity: str = E) -> list[str]:
    response = http.get(f"{B}/temporal/entities/{entity}")
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return sorted(i["observedAt"] for i in response.json().get("location", []))


def test_entity_writes_refuse_a_far_future_observed_at(http: TestClient) -> None:
    refused(http.post(f"{B}/entities", json={"id": E, "type": "Person", "location": loc(FAR)}, headers=JSON))
    assert http.get(f"{B}/entities/{E}").status_code == 404
    assert http.post(f"{B}/entities", json={"id": E, "type": "Person", "location": loc(SOON)},
                     headers=JSON).status_code == 201
    attrs = {"location": loc(LATER, 126.9)}
    refused(http.patch(f"{B}/entities/{E}/attrs", json=attrs, headers=JSON))  # update
    refused(http.post(f"{B}/entities/{E}/attrs", json=attrs, headers=JSON))  # append
    refused(http.patch(f"{B}/entities/{E}", json=attrs, headers=JSON))  # merge
    refused(http.put(f"{B}/entities/{E}", json={"type": "Person", **attrs}, headers=JSON))  # replace
    refused(http.patch(f"{B}/entities/{E}/attrs/location", json=loc(FAR, 126.9), headers=JSON))  # partial
    refused(http.patch(f"{B}/entities/{E}/attrs/location", json={"observedAt": FAR}, headers=JSON))  # time only
    refused(http.put(f"{B}/entities/{E}/attrs/location", json=loc(FAR, 126.9), headers=JSON))  # replace attribute
    current = http.get(f"{B}/entities/{E}").json()
    assert current["location"]["observedAt"].startswith(SOON[:19])
    assert current["location"]["value"]["coordinates"][0] == 126.8871
    assert [t[:19] for t in history(http)] == [SOON[:19]]
    # within the bound: taken
    assert http.patch(f"{B}/entities/{E}/attrs", json={"location": loc(SOON, 126.91)}, headers=JSON).status_code == 204


def test_batch_operations_refuse_only_the_entities_dated_too_far_ahead(http: TestClient) -> None:
    ok, bad = "urn:ngsi-ld:Person:ok", "urn:ngsi-ld:Person:bad"
    for op in ("create", "upsert"):
        batch = [{"id": ok + op, "type": "Person", "location": loc(SOON)},
                 {"id": bad + op, "type": "Person", "location": loc(FAR)}]
        response = http.post(f"{B}/entityOperations/{op}", json=batch, headers=JSON)
        assert response.status_code == 207, response.text
        body = response.json()
        assert body["success"] == [ok + op]
        [error] = body["errors"]
        assert error["entityId"] == bad + op and error["error"]["status"] == 400
        assert "ngsild.max_future_s" in error["error"]["detail"]
        assert http.get(f"{B}/entities/{bad + op}").status_code == 404
        assert history(http, bad + op) == []
    for op in ("update", "merge"):
        batch = [{"id": ok + "create", "location": loc(LATER)}, {"id": ok + "upsert", "location": loc(SOON, 126.9)}]
        response = http.post(f"{B}/entityOperations/{op}", json=batch, headers=JSON)
        assert response.status_code == 207, response.text
        assert response.json()["success"] == [ok + "upsert"]
        assert [e["entityId"] for e in response.json()["errors"]] == [ok + "create"]
    assert [t[:19] for t in history(http, ok + "create")] == [SOON[:19]]
    upsert = http.post(f"{B}/entityOperations/upsert?options=update", json=[{"id": ok + "create", "type": "Person",
                                                                              "location": loc(FAR)}], headers=JSON)
    assert upsert.status_code == 207 and upsert.json()["errors"][0]["entityId"] == ok + "create"


def test_temporal_writes_refuse_a_far_future_observed_at(http: TestClient) -> None:
    refused(http.post(f"{B}/temporal/entities", json={"id": E, "type": "Person", "location": [loc(FAR)]},
                      headers=JSON))
    assert http.get(f"{B}/temporal/entities/{E}").status_code == 404
    past = to_iso(NOW - timedelta(days=1))
    assert http.post(f"{B}/temporal/entities", json={"id": E, "type": "Person", "location": [loc(past)]},
                     headers=JSON).status_code == 201
    refused(http.post(f"{B}/temporal/entities", json={"id": E, "type": "Person",
                                                      "location": [loc(SOON), loc(LATER)]}, headers=JSON))
    refused(http.post(f"{B}/temporal/entities/{E}/attrs", json={"location": [loc(FAR)]}, headers=JSON))
    [instance] = http.get(f"{B}/temporal/entities/{E}").json()["location"]
    modify = f"{B}/temporal/entities/{E}/attrs/location/{instance['instanceId']}"
    refused(http.patch(modify, json={"location": [loc(FAR)]}, headers=JSON))
    assert [t[:19] for t in history(http)] == [past[:19]]
    assert http.patch(modify, json={"location": [loc(SOON)]}, headers=JSON).status_code == 204
    assert [t[:19] for t in history(http)] == [SOON[:19]]


def test_the_bound_follows_the_platform_clock_and_the_setting(tmp_path: Path, clock: FakeClock) -> None:
    with make_client(tmp_path, clock, max_future_s=60) as http:
        in_a_minute, in_two = to_iso(NOW + timedelta(seconds=59)), to_iso(NOW + timedelta(seconds=120))
        assert http.post(f"{B}/entities", json={"id": E, "type": "Person", "location": loc(in_a_minute)},
                         headers=JSON).status_code == 201
        refused(http.patch(f"{B}/entities/{E}/attrs", json={"location": loc(in_two)}, headers=JSON))
        clock.advance(61)  # the same time is no longer too far ahead
        assert http.patch(f"{B}/entities/{E}/attrs", json={"location": loc(in_two)}, headers=JSON).status_code == 204
