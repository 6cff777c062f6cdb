"""A NUL character (U+0000, `%00`) in a query parameter or a path segment is refused with 400 BadRequestData on
both backends, before any handler runs: PostgreSQL's text cannot hold one (a read failed there with 500, SQLite
answered), and no identifier, name or expression of ucity's APIs may contain it (QA2 finding 3)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import ENTITIES, NGSI, assert_problem, create, retrieve

B1 = "urn:ngsi-ld:Building:b1"


@pytest.mark.parametrize("query", [
    "type=Building&q=name==%22x%00y%22", "type=Build%00ing", "id=urn:ngsi-ld:Building:b%001", "type=Building&attrs=na%00me",
    "idPattern=.%00*",
])
def test_a_nul_in_a_query_parameter_is_400(client: TestClient, query: str) -> None:
    create(client, {"id": B1, "type": "Building", "name": {"type": "Property", "value": "A"}})
    response = client.get(f"{ENTITIES}?{query}")
    assert_problem(response, 400, "BadRequestData")
    assert "U+0000" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"{ENTITIES}/urn:ngsi-ld:Building:b%001"),
    ("GET", f"{ENTITIES}/%00"),
    ("DELETE", f"{ENTITIES}/urn:ngsi-ld:Building:b%001"),
    ("GET", f"{NGSI}/types/Build%00ing"),
    ("GET", f"{NGSI}/temporal/entities/urn:ngsi-ld:Building:b%001"),
    ("PATCH", f"{ENTITIES}/urn:ngsi-ld:Building:b%001/attrs/name"),  # the fast route (server.FastRoutes)
    ("PATCH", f"{ENTITIES}/{B1}/attrs/na%00me"),
])
def test_a_nul_in_a_path_segment_is_400(client: TestClient, method: str, path: str) -> None:
    create(client, {"id": B1, "type": "Building", "name": {"type": "Property", "value": "A"}})
    response = client.request(method, path, json={"value": "B"} if method == "PATCH" else None)
    assert_problem(response, 400, "BadRequestData")
    assert retrieve(client, B1)["name"]["value"] == "A"


def test_a_nul_in_another_api_is_400_too(client: TestClient) -> None:
    response = client.get("/api/v1/alarms/al%00x")
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_percent_sign_that_is_no_nul_is_kept(client: TestClient) -> None:
    create(client, {"id": B1, "type": "Building", "name": {"type": "Property", "value": "%00"}})
    response = client.get(f"{ENTITIES}?type=Building&q=name==%22%2500%22")
    assert response.status_code == 200, response.text
    assert [e["id"] for e in response.json()] == [B1]
