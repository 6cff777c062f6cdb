"""Entity paging of temporal queries under the personal filter (QA17 F2).

A caller without `personal:read` does not see personal entities, yet offsets count entities before that filter
(as in the entity API): a page whose entities were all withheld is empty and must still link to the next one, or a
client stops early. A reader follows `rel="next"` through all non-personal entities with personal ones interleaved
(GET, aggregated GET and POST query), on the test's store backend (both backends).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from ucity.core.config import load_settings
from ucity.server import create_app

ADMIN, OPERATOR, READER = ("a" * 32, "o" * 32, "r" * 32)
TOKENS = [{"id": "op-1", "role": "operator", "token": OPERATOR}, {"id": "wall", "role": "reader", "token": READER}]
# Ids sort by number; the first page of 3 (00-02) and the last (09-11) hold only personal entities.
PERSONAL = {0, 1, 2, 3, 6, 7, 9, 10, 11}
ENTITIES: list[dict[str, Any]] = [
    {"id": f"urn:ngsi-ld:Thing:{n:02d}", "type": "Person" if n in PERSONAL else "Device",
     "heartRate": {"type": "Property", "value": n, "observedAt": "2026-01-01T00:00:00Z"}} for n in range(12)]
VISIBLE = [e["id"] for e in ENTITIES if e["type"] == "Device"]
NEXT = re.compile(r'<([^>]*)>;rel="next"')


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             server={"require_auth": True}, ops={"admin_token": ADMIN, "tokens": TOKENS})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        response = client.post("/ngsi-ld/v1/entityOperations/create", json=ENTITIES, headers=bearer(OPERATOR))
        assert response.status_code == 201, response.text
        yield client


def follow(http: TestClient, first: str, body: dict[str, Any] | None = None) -> tuple[list[list[str]], set[str]]:
    """The entity ids of each page reached by following `next` links from `first`, and the counts announced."""
    pages: list[list[str]] = []
    counts: set[str] = set()
    url: str | None = first
    while url is not None:
        assert len(pages) < 10, pages
        response = (http.post(url, json=body, headers=bearer(READER)) if body is not None
                    else http.get(url, headers=bearer(READER)))
        assert response.status_code == 200, response.text
        pages.append([e["id"] for e in response.json()])
        counts.add(response.headers.get("NGSILD-Results-Count", ""))
        found = NEXT.search(response.headers.get("Link", ""))
        url = found[1] if found else None
    return pages, counts


def test_reader_pages_through_every_non_personal_entity_of_a_temporal_query(http: TestClient) -> None:
    pages, counts = follow(http, "/ngsi-ld/v1/temporal/entities?attrs=heartRate&limit=3&count=true")
    assert pages == [[], VISIBLE[:2], VISIBLE[2:], []] and counts == {"3"}


def test_reader_pages_through_an_aggregated_temporal_query(http: TestClient) -> None:
    pages, _ = follow(http, "/ngsi-ld/v1/temporal/entities?attrs=heartRate&limit=3&options=aggregatedValues"
                            "&aggrMethods=max&timerel=after&timeAt=2025-12-31T00:00:00Z")
    assert [i for page in pages for i in page] == VISIBLE and pages[0] == []


def test_reader_pages_through_a_temporal_post_query(http: TestClient) -> None:
    body = {"type": "Query", "attrs": ["heartRate"]}
    pages, counts = follow(http, "/ngsi-ld/v1/temporal/entityOperations/query?limit=3&count=true", body)
    assert [i for page in pages for i in page] == VISIBLE and pages[0] == [] and counts == {"3"}

