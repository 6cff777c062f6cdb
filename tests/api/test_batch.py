"""NGSI-LD batch entity operations over HTTP (ETSI GS CIM 009 §5.6.7–§5.6.10, §5.6.20, §6.14–§6.17,
§6.31): create, upsert (replace and update), update, merge and delete, with BatchOperationResult
(207) reporting a ProblemDetails per failed entity.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import BATCH, ERRORS, assert_problem, create, entity_url, link, query_ids, retrieve

X1, X2, X3 = "urn:ngsi-ld:Building:x1", "urn:ngsi-ld:Building:x2", "urn:ngsi-ld:Building:x3"
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
MISSING = "urn:ngsi-ld:Building:missing"


def prop(value: Any, **members: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **members}


def building(entity_id: str, **attrs: Any) -> dict[str, Any]:
    return {"id": entity_id, "type": "Building", **attrs}


def errors_by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """entityId -> ProblemDetails of a BatchOperationResult, each checked to be a full ProblemDetails."""
    out = {}
    for item in body["errors"]:
        problem = item["error"]
        assert set(problem) >= {"type", "title", "status", "detail"}
        assert problem["type"].startswith(ERRORS)
        out[item["entityId"]] = problem
    return out


# -- create ------------------------------------------------------------------------------------
def test_batch_create_is_201_with_the_created_ids(client: TestClient) -> None:
    response = client.post(f"{BATCH}/create", json=[building(X1, a=prop(1)), building(X2, a=prop(2))])
    assert response.status_code == 201
    assert response.json() == [X1, X2]
    assert retrieve(client, X2) == building(X2, a=prop(2))


def test_batch_create_with_bad_entities_is_207_with_problem_details(client: TestClient) -> None:
    create(client, building(X3))
    response = client.post(f"{BATCH}/create", json=[
        building(X1, a=prop(1)), {"id": "not-a-uri", "type": "Building"}, {"id": X2}, building(X3),
        building("urn:ngsi-ld:Building:x4", a=prop(None)),
    ])
    assert response.status_code == 207
    body = response.json()
    assert body["success"] == [X1]
    problems = errors_by_id(body)
    assert {k: (p["status"], p["type"]) for k, p in problems.items()} == {
        "not-a-uri": (400, ERRORS + "BadRequestData"),
        X2: (400, ERRORS + "BadRequestData"),
        X3: (409, ERRORS + "AlreadyExists"),
        "urn:ngsi-ld:Building:x4": (400, ERRORS + "BadRequestData"),
    }
    assert query_ids(client, type="Building") == [X1, X3]


def test_batch_create_with_the_same_id_twice_creates_it_once(client: TestClient) -> None:
    response = client.post(f"{BATCH}/create", json=[building(X1, a=prop(1)), building(X1, a=prop(2))])
    assert response.status_code == 207
    body = response.json()
    assert body["success"] == [X1]
    assert errors_by_id(body)[X1]["status"] == 409
    assert retrieve(client, X1)["a"] == prop(1)


@pytest.mark.parametrize("item", [None, "urn:ngsi-ld:Building:x2", 7])
def test_batch_create_with_an_item_that_is_not_an_entity_is_400_and_writes_nothing(
        client: TestClient, item: Any) -> None:
    # §5.6.7.4 (conformance 567_01): the whole request fails; the valid entity beside it is not created.
    response = client.post(f"{BATCH}/create", json=[building(X1), item])
    assert_problem(response, 400, "BadRequestData")
    assert_problem(client.get(entity_url(X1)), 404, "ResourceNotFound")


def test_batch_create_with_an_inline_context_in_json_ld_bodies(client: TestClient) -> None:
    body = [{**building(X1, height=prop(3)), "@context": [{"height": "https://example.org/height"}]}]
    response = client.post(f"{BATCH}/create", json=body, headers={"Content-Type": "application/ld+json"})
    assert response.status_code == 201
    assert retrieve(client, X1) == building(X1, **{"https://example.org/height": prop(3)})


def test_batch_json_ld_item_without_context_is_an_error_of_that_entity(client: TestClient) -> None:
    body = [{**building(X1), "@context": [{"h": "https://example.org/h"}]}, building(X2)]
    response = client.post(f"{BATCH}/create", json=body, headers={"Content-Type": "application/ld+json"})
    assert response.status_code == 207
    assert response.json()["success"] == [X1]
    assert errors_by_id(response.json())[X2]["status"] == 400


# -- upsert ------------------------------------------------------------------------------------
def test_batch_upsert_creates_and_replaces(client: TestClient) -> None:
    create(client, building(X1, a=prop(1), b=prop(1)))
    response = client.post(f"{BATCH}/upsert", json=[building(X1, c=prop(3)), building(X2, c=prop(3))])
    assert response.status_code == 201
    assert response.json() == [X2]  # only the newly created ones
    assert retrieve(client, X1) == building(X1, c=prop(3))  # default: replace the whole entity
    assert retrieve(client, X2) == building(X2, c=prop(3))


def test_batch_upsert_of_one_entity_twice_and_again_keeps_created_at_and_the_last_state(client: TestClient) -> None:
    """The upsert op writes the request's normalized document itself (ops.upsert_op): the same entity
    twice in one batch, then upserted again, ends as the last item, created when it was first."""
    response = client.post(f"{BATCH}/upsert", json=[building(X1, a=prop(1)), building(X1, b=prop(2, unitCode="MTR")),
                                                     building(X2, a=prop(1))])
    assert response.status_code == 201 and response.json() == [X1, X2]
    first = retrieve(client, X1, options="sysAttrs")
    assert {k: v for k, v in first.items() if k not in ("createdAt", "modifiedAt")} == {
        "id": X1, "type": "Building",
        "b": {**prop(2, unitCode="MTR"), "createdAt": first["modifiedAt"], "modifiedAt": first["modifiedAt"]}}
    response = client.post(f"{BATCH}/upsert", json=[building(X1, c=prop(3)), building(X2, a=prop(5))])
    assert response.status_code == 204
    again = retrieve(client, X1, options="sysAttrs")
    assert again["createdAt"] == first["createdAt"] and again["modifiedAt"] >= first["modifiedAt"]
    assert retrieve(client, X1) == building(X1, c=prop(3)) and retrieve(client, X2) == building(X2, a=prop(5))


def test_batch_upsert_with_options_update_keeps_other_attributes(client: TestClient) -> None:
    create(client, building(X1, a=prop(1), b=prop(1)))
    response = client.post(f"{BATCH}/upsert", json=[building(X1, b=prop(2), c=prop(3))],
                           params={"options": "update"})
    assert response.status_code == 204
    assert retrieve(client, X1) == building(X1, a=prop(1), b=prop(2), c=prop(3))


def test_batch_upsert_of_existing_entities_only_is_204(client: TestClient) -> None:
    create(client, building(X1, a=prop(1)))
    response = client.post(f"{BATCH}/upsert", json=[building(X1, a=prop(2))])
    assert response.status_code == 204
    assert response.content == b""
    assert retrieve(client, X1) == building(X1, a=prop(2))


def test_batch_upsert_with_a_bad_entity_is_207(client: TestClient) -> None:
    response = client.post(f"{BATCH}/upsert", json=[building(X1), building(X2, owner={"type": "Relationship",
                                                                                       "object": "x"})])
    assert response.status_code == 207
    assert response.json()["success"] == [X1]
    assert errors_by_id(response.json())[X2]["status"] == 400


# -- update ------------------------------------------------------------------------------------
def test_batch_update_appends_to_existing_entities(client: TestClient) -> None:
    create(client, building(X1, a=prop(1)))
    create(client, building(X2, a=prop(1)))
    response = client.post(f"{BATCH}/update", json=[{"id": X1, "a": prop(5)}, {"id": X2, "b": prop(6)}])
    assert response.status_code == 204
    assert retrieve(client, X1) == building(X1, a=prop(5))
    assert retrieve(client, X2) == building(X2, a=prop(1), b=prop(6))


def test_batch_update_with_no_overwrite_keeps_existing_attributes_and_reports_them(client: TestClient) -> None:
    # Conformance 005_02_01/03: an attribute left as it was makes the answer a 207, not a 204.
    create(client, building(X1, a=prop(1)))
    create(client, building(X2, a=prop(1)))
    response = client.post(f"{BATCH}/update", json=[{"id": X1, "a": prop(5), "b": prop(6)}, {"id": X2, "c": prop(7)}],
                           params={"options": "noOverwrite"})
    assert response.status_code == 207
    body = response.json()
    assert body["success"] == [X2]
    problem = errors_by_id(body)[X1]
    assert (problem["status"], problem["type"]) == (400, ERRORS + "BadRequestData")
    assert problem["updated"] == [VOCAB + "b"]
    assert [n["attributeName"] for n in problem["notUpdated"]] == [VOCAB + "a"]
    assert retrieve(client, X1) == building(X1, a=prop(1), b=prop(6))
    assert retrieve(client, X2) == building(X2, a=prop(1), c=prop(7))


def test_batch_update_with_no_overwrite_and_only_new_attributes_is_204(client: TestClient) -> None:
    create(client, building(X1, a=prop(1)))
    response = client.post(f"{BATCH}/update", json=[{"id": X1, "b": prop(6)}], params={"options": "noOverwrite"})
    assert response.status_code == 204
    assert retrieve(client, X1) == building(X1, a=prop(1), b=prop(6))


def test_batch_update_of_a_missing_entity_is_207_not_found(client: TestClient) -> None:
    create(client, building(X1, a=prop(1)))
    response = client.post(f"{BATCH}/update", json=[{"id": X1, "a": prop(2)}, {"id": MISSING, "a": prop(2)}])
    assert response.status_code == 207
    body = response.json()
    assert body["success"] == [X1]
    problem = errors_by_id(body)[MISSING]
    assert (problem["status"], problem["type"]) == (404, ERRORS + "ResourceNotFound")
    assert MISSING in problem["detail"]
    assert client.get(entity_url(MISSING)).status_code == 404


# -- merge -------------------------------------------------------------------------------------
def test_batch_merge(client: TestClient) -> None:
    create(client, building(X1, a=prop(1, accuracy=prop(0.1)), b=prop(1)))
    create(client, building(X2, a=prop(1)))
    response = client.post(f"{BATCH}/merge", json=[{"id": X1, "a": prop(2), "b": "urn:ngsi-ld:null"},
                                                   {"id": X2, "c": prop(3)}])
    assert response.status_code == 204
    assert retrieve(client, X1) == building(X1, a=prop(2, accuracy=prop(0.1)))
    assert retrieve(client, X2) == building(X2, a=prop(1), c=prop(3))


def test_batch_merge_with_a_missing_entity_is_207(client: TestClient) -> None:
    create(client, building(X1))
    response = client.post(f"{BATCH}/merge", json=[{"id": X1, "a": prop(1)}, {"id": MISSING, "a": prop(1)}])
    assert response.status_code == 207
    assert response.json()["success"] == [X1]
    assert errors_by_id(response.json())[MISSING]["status"] == 404


# -- delete ------------------------------------------------------------------------------------
def test_batch_delete(client: TestClient) -> None:
    create(client, building(X1))
    create(client, building(X2))
    response = client.post(f"{BATCH}/delete", json=[X1, X2])
    assert response.status_code == 204
    assert query_ids(client, type="Building") == []


def test_batch_delete_with_missing_and_invalid_ids_is_207(client: TestClient) -> None:
    create(client, building(X1))
    response = client.post(f"{BATCH}/delete", json=[X1, MISSING, "nope"])
    assert response.status_code == 207
    body = response.json()
    assert body["success"] == [X1]
    problems = errors_by_id(body)
    assert problems[MISSING]["status"] == 404
    assert problems[MISSING]["detail"] == f"엔티티 {MISSING} 없음 / entity {MISSING} does not exist"
    assert problems["nope"]["status"] == 400
    assert problems["nope"]["detail"] == "엔티티 id는 URI여야 함('nope') / entity id must be a URI, got 'nope'"


# -- request-level errors ----------------------------------------------------------------------
@pytest.mark.parametrize("op", ["create", "upsert", "update", "merge", "delete"])
def test_batch_body_must_be_a_non_empty_array(client: TestClient, op: str) -> None:
    assert_problem(client.post(f"{BATCH}/{op}", json={"id": X1}), 400, "BadRequestData")
    assert_problem(client.post(f"{BATCH}/{op}", json=[]), 400, "BadRequestData")


def test_batch_malformed_json_is_400_invalid_request(client: TestClient) -> None:
    response = client.post(f"{BATCH}/create", content=b'[{"id": ', headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "InvalidRequest")


def test_batch_unknown_operation_is_404(client: TestClient) -> None:
    assert_problem(client.post(f"{BATCH}/replace", json=[building(X1)]), 404, "ResourceNotFound")


def test_batch_unsupported_content_type_is_415(client: TestClient) -> None:
    response = client.post(f"{BATCH}/create", content=b"[]", headers={"Content-Type": "text/csv"})
    assert_problem(response, 415, "UnsupportedMediaType")


def test_batch_tenant_applies_to_every_entity(client: TestClient) -> None:
    tenant = {"NGSILD-Tenant": "batch-tenant"}
    response = client.post(f"{BATCH}/create", json=[building(X1), building(X2)], headers=tenant)
    assert response.status_code == 201
    assert response.headers["ngsild-tenant"] == "batch-tenant"
    assert query_ids(client, headers=tenant, type="Building") == [X1, X2]
    assert query_ids(client, type="Building") == []


def test_batch_link_header_context_applies_to_every_entity(client: TestClient) -> None:
    # The core context given explicitly by Link behaves as no user context at all.
    core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
    response = client.post(f"{BATCH}/create", json=[building(X1, a=prop(1)), building(X2, a=prop(2))],
                           headers=link(core))
    assert response.status_code == 201
    assert query_ids(client, type="Building", q="a>1") == [X2]
