"""Errors of the NGSI-LD API over HTTP: every 4xx/5xx body is a ProblemDetails with an NGSI-LD error
type (ETSI GS CIM 009 §5.5.2, RFC 7807), served as application/json, and the server keeps serving.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import BATCH, ENTITIES, NGSI, assert_problem, create, entity_url, retrieve
from ucity.core.config import Settings
from ucity.server import create_app

B1 = "urn:ngsi-ld:Building:b1"


def building(**attrs: object) -> dict[str, object]:
    return {"id": B1, "type": "Building", **attrs}


@pytest.mark.parametrize("body", [b"{", b'{"id": "urn:x:1", "type": }', b"nul", b'{"a": 1} trailing', b"\xff\xfe"])
def test_malformed_json_is_400_invalid_request(client: TestClient, body: bytes) -> None:
    response = client.post(ENTITIES, content=body, headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "InvalidRequest")


@pytest.mark.parametrize(("method", "path"), [
    ("PATCH", f"{ENTITIES}/{B1}"), ("PUT", f"{ENTITIES}/{B1}"), ("POST", f"{ENTITIES}/{B1}/attrs"),
    ("PATCH", f"{ENTITIES}/{B1}/attrs"), ("PATCH", f"{ENTITIES}/{B1}/attrs/name"),
    ("PUT", f"{ENTITIES}/{B1}/attrs/name"), ("POST", f"{BATCH}/upsert"), ("POST", f"{BATCH}/query"),
])
def test_malformed_json_on_every_write_is_400_invalid_request(client: TestClient, method: str, path: str) -> None:
    create(client, building(name={"type": "Property", "value": "A"}))
    response = client.request(method, path, content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "InvalidRequest")
    assert retrieve(client, B1)["name"] == {"type": "Property", "value": "A"}


def test_empty_body_is_400_invalid_request(client: TestClient) -> None:
    response = client.post(ENTITIES, content=b"", headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "InvalidRequest")


@pytest.fixture
def small_client(settings: Settings) -> Iterator[TestClient]:
    limited = settings.model_copy(update={"server": settings.server.model_copy(update={"max_body_bytes": 1024})})
    with TestClient(create_app(limited), base_url="http://127.0.0.1:8000") as c:
        yield c


def test_body_over_the_limit_is_413(small_client: TestClient) -> None:
    response = small_client.post(ENTITIES, json=building(note={"type": "Property", "value": "x" * 2000}))
    assert_problem(response, 413, "RequestEntityTooLarge")
    assert small_client.get(entity_url(B1)).status_code == 404


def test_streamed_body_over_the_limit_is_413(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b'{"id": "urn:ngsi-ld:Building:b1", "type": "Building", "note": "'
        yield b"x" * 2000
        yield b'"}'

    response = small_client.post(ENTITIES, content=chunks(), headers={"Content-Type": "application/json"})
    assert_problem(response, 413, "RequestEntityTooLarge")


def test_body_under_the_limit_is_accepted(small_client: TestClient) -> None:
    assert small_client.post(ENTITIES, json=building(note={"type": "Property", "value": "x" * 500})).status_code == 201


# PATCH of one attribute is served by the fast route (server.FastRoutes), which reads the body itself.
def test_fast_route_body_over_the_limit_is_413(small_client: TestClient) -> None:
    create(small_client, building(note={"type": "Property", "value": "a"}))
    url = f"{entity_url(B1)}/attrs/note"
    response = small_client.patch(url, json={"value": "x" * 2000})
    assert_problem(response, 413, "RequestEntityTooLarge")

    def chunks(size: int) -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b'{"value": "'
        yield b"x" * size
        yield b'"}'

    headers = {"Content-Type": "application/json"}
    assert_problem(small_client.patch(url, content=chunks(2000), headers=headers), 413, "RequestEntityTooLarge")
    assert retrieve(small_client, B1)["note"]["value"] == "a"
    assert small_client.patch(url, content=chunks(500), headers=headers).status_code == 204  # in three messages
    assert retrieve(small_client, B1)["note"]["value"] == "x" * 500


@pytest.mark.parametrize("path", [f"{NGSI}/nothing", f"{NGSI}/entityOperations", "/nothing-here"])
def test_unknown_route_is_404_problem_details(client: TestClient, path: str) -> None:
    body = assert_problem(client.get(path), 404, "ResourceNotFound")
    assert path in body["detail"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", ENTITIES, "DELETE, GET, POST"),
    ("POST", f"{ENTITIES}/{B1}", "DELETE, GET, PATCH, PUT"),
    ("GET", f"{ENTITIES}/{B1}/attrs", "PATCH, POST"),
    ("DELETE", f"{NGSI}/types", "GET"),
])
def test_wrong_method_is_405_problem_details(client: TestClient, method: str, path: str, allowed: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == 405
    assert body["type"] == "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported"
    assert body["title"] == "Method not allowed"
    assert method in body["detail"]


def test_trailing_slash_is_accepted(client: TestClient) -> None:
    response = client.post(f"{ENTITIES}/", json=building())
    assert response.status_code == 201
    assert client.get(f"{ENTITIES}/", params={"type": "Building"}).json() == [building()]
    assert client.get(f"{ENTITIES}/{B1}/").json() == building()


def test_errors_echo_the_tenant(client: TestClient) -> None:
    response = client.get(entity_url(B1), headers={"NGSILD-Tenant": "t1"})
    assert_problem(response, 404, "NonexistentTenant")  # CIM 009 §5.5.10: t1 was never created
    assert response.headers["ngsild-tenant"] == "t1"


def test_the_server_keeps_serving_after_each_error(client: TestClient) -> None:
    failures = [
        client.post(ENTITIES, content=b"{", headers={"Content-Type": "application/json"}),
        client.post(ENTITIES, content=b"{}", headers={"Content-Type": "text/plain"}),
        client.get(entity_url("urn:ngsi-ld:Building:none")),
        client.get(entity_url("not a uri")),
        client.get(ENTITIES, params={"type": "Building", "q": "((("}),
        client.get(ENTITIES, params={"type": "Building", "georel": "near", "geometry": "Point",
                                     "coordinates": "[[["}),
        client.get(entity_url(B1), headers={"Accept": "text/html"}),
        client.put(ENTITIES),
        client.get(f"{NGSI}/nothing"),
        client.post(f"{BATCH}/create", json={"not": "an array"}),
        client.patch(entity_url(B1, "attrs", "x"), json=[]),
    ]
    assert [r.status_code for r in failures] == [400, 415, 404, 400, 400, 400, 406, 405, 404, 400, 400]
    for response in failures:
        body = response.json()
        assert body["status"] == response.status_code
        assert body["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")
        assert body["title"] and body["detail"]
    create(client, building())
    assert retrieve(client, B1) == building()
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(("params", "error"), [({"options": "keyValues,concise"}, "BadRequestData"),
                                               ({"format": "json"}, "InvalidRequest"),
                                               ({"options": "keyValues,bogus"}, "InvalidRequest")])
def test_conflicting_or_unknown_formats_are_400(client: TestClient, params: dict[str, str], error: str) -> None:
    create(client, building())
    assert_problem(client.get(entity_url(B1), params=params), 400, error)


def test_attribute_patch_with_a_non_object_body_is_400(client: TestClient) -> None:
    create(client, building(name={"type": "Property", "value": "A"}))
    assert_problem(client.patch(entity_url(B1, "attrs", "name"), json=[1]), 400, "BadRequestData")
    assert_problem(client.patch(entity_url(B1, "attrs"), json="x"), 400, "BadRequestData")
    assert_problem(client.put(entity_url(B1, "attrs", "name"), json=5), 400, "BadRequestData")


@pytest.mark.parametrize("method, path, status, media_type", [
    ("GET", "/api/v1/alarms?limit=x", 400, "application/problem+json"),  # RFC 7807 outside NGSI-LD
    ("GET", "/api/v1/no-such-thing", 404, "application/problem+json"),
    ("GET", "/api/v1/alarms/nope", 404, "application/problem+json"),
    ("POST", "/iot/json?k=nokey&i=nodevice", 404, "application/problem+json"),
    ("GET", f"{NGSI}/entities/urn:ngsi-ld:X:none", 404, "application/json"),  # NGSI-LD's own media type
    ("GET", f"{NGSI}/entities?limit=x&type=X", 400, "application/json"),
])
def test_problem_details_media_type(client: TestClient, method: str, path: str, status: int, media_type: str) -> None:
    response = client.request(method, path, json={"x": 1} if method == "POST" else None)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == media_type
    body = response.json()
    assert body["status"] == status and body["type"] and body["title"]


@pytest.mark.parametrize("path", ["/api/v1/notifiers", "/api/v1/recipients"])
def test_a_body_that_is_not_json_is_415_on_the_platform_apis(client: TestClient, path: str) -> None:
    # As /ngsi-ld and /iot answer; before, /api/v1 parsed any declared media type as JSON (QA finding 14).
    headers = {"X-Ucity-Actor": "kim", "Content-Type": "text/plain"}
    response = client.post(path, content=b'{"id": "x", "type": "webhook"}', headers=headers)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/UnsupportedMediaType"
