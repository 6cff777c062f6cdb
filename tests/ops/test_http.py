"""The operations API through the real ASGI app: ProblemDetails with WWW-Authenticate, a footage link
followed over HTTP, /docs, and an audit log that nothing can change."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from tests.ops.support import POINT, TOKENS, agency, ops_settings
from ucity.server import create_app


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = ops_settings(tmp_path, agencies=[agency("police-112", "police", ["112_VIDEO", "112_DISPATCH"])])
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        yield client


def test_problem_details_and_www_authenticate(http: TestClient) -> None:
    resp = http.get("/api/v1/events")
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == 'Bearer realm="ucity"'
    body = resp.json()
    assert body["status"] == 401 and body["type"] == "urn:ucity:errors:Unauthorized" and "Bearer" in body["detail"]
    resp = http.get("/api/v1/audit", headers=bearer("operator"))
    assert resp.status_code == 403 and resp.json()["permission"] == "audit:read"


def test_a_footage_link_over_http(http: TestClient) -> None:
    camera = {"id": "http-cam-1", "lon": POINT[0], "lat": POINT[1], "cameraType": "PTZ",
              "streamURL": "rtsp://vms.example/live/http-cam-1"}
    assert http.post("/api/v1/cameras", json=camera, headers=bearer("admin")).status_code == 201
    event = http.post("/api/v1/events", json={"service": "112_DISPATCH", "typeCode": "robbery",
                                              "location": {"lon": POINT[0], "lat": POINT[1]}}, headers=bearer("operator"))
    assert event.status_code == 201
    nearest = http.get(f"/api/v1/events/{event.json()['id']}/cameras", headers=bearer("operator")).json()
    assert [c["id"] for c in nearest["cameras"]] == ["http-cam-1"] and nearest["widened"] is True
    grant = http.post("/api/v1/grants", json={"agency": "police-112", "event": event.json()["id"],
                                              "cameras": ["http-cam-1"]}, headers=bearer("operator"))
    assert grant.status_code == 201
    link = urlsplit(grant.json()["links"][0]["stream"])
    assert (link.scheme, link.netloc) == ("http", "127.0.0.1:8000")
    resp = http.get(f"{link.path}?{link.query}", headers=bearer("police"), follow_redirects=False)
    assert resp.status_code == 307 and resp.headers["location"] == "rtsp://vms.example/live/http-cam-1"
    assert resp.headers["referrer-policy"] == "no-referrer" and resp.headers["cache-control"] == "no-store"
    resp = http.get(f"{link.path}?{link.query}", follow_redirects=False)
    assert resp.status_code == 401 and resp.json()["reason"] == "unauthenticated"
    assert (resp.json()["type"], resp.json()["title"]) == ("urn:ucity:errors:Unauthorized", "Authentication required")
    assert resp.headers["www-authenticate"] == 'Bearer realm="ucity"'
    resp = http.get(link.path, headers=bearer("police"), follow_redirects=False)
    assert resp.status_code == 400 and resp.json()["reason"] == "missing-grant"
    assert http.get(f"{link.path}?{link.query}", headers=bearer("fire"), follow_redirects=False).status_code == 403


def test_the_api_is_in_the_openapi_document(http: TestClient) -> None:
    doc = http.get("/openapi.json").json()
    paths = doc["paths"]
    for path in ("/api/v1/events", "/api/v1/cameras", "/api/v1/cameras/import", "/api/v1/agencies", "/api/v1/grants",
                 "/api/v1/audit", "/api/v1/cameras/{cameraId}/stream"):
        assert path in paths
    create = paths["/api/v1/events"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EventIn"}
    assert create["security"] == [{"bearer": []}] and "events:report" in create["description"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "PersonIn" in doc["components"]["schemas"]
    assert "text/csv" in paths["/api/v1/cameras/import"]["post"]["requestBody"]["content"]
    assert "/ngsi-ld/v1/entities" in paths  # every API is documented (tests/test_openapi.py)


def test_the_audit_log_cannot_be_changed(http: TestClient, tmp_path: Path, store_backend: str) -> None:
    http.post("/api/v1/events", json={"service": "DISASTER", "typeCode": "flood"}, headers=bearer("operator"))
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        resp = http.request(method, "/api/v1/audit", headers=bearer("admin"))
        assert resp.status_code == 405
    entries = http.get("/api/v1/audit", headers=bearer("admin")).json()["entries"]
    assert [(e["kind"], e["action"]) for e in entries] == [("event", "created")]
    # not even SQL on the database itself rewrites it
    statements = ("UPDATE ops_audit SET actor = 'someone else'", "DELETE FROM ops_audit")
    if store_backend == "postgresql":
        asyncio.run(_refused_on_postgres(os.environ["UCITY_STORE__URL"], statements))
        return
    conn = sqlite3.connect(tmp_path / "data" / "ucity.db")
    try:
        for statement in statements:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()


async def _refused_on_postgres(url: str, statements: tuple[str, ...]) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM ops_audit") == 1
    finally:
        await conn.close()
