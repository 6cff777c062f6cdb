"""The NGSI-LD API's refusals through HTTP: each detail in Korean and English ("한국어 / English"), exactly one
" / " between the halves, the English half as before, and the NGSI-LD `type` and fixed English `title` clients
match on unchanged (FIX-D). Batch errors (207) and an UpdateResult's reasons too."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import BATCH, ENTITIES, NGSI, assert_problem, create, entity_url

HANGUL = re.compile("[가-힣]")
B1 = "urn:ngsi-ld:Building:b1"
TITLES = {"BadRequestData": "Bad request data", "InvalidRequest": "Invalid request", "ResourceNotFound":
          "Resource not found", "NotAcceptable": "Not acceptable", "UnsupportedMediaType": "Unsupported media type"}


def halves(detail: str) -> tuple[str, str]:
    """The Korean and English halves of a detail (as the dashboard's `localText` splits them)."""
    parts = detail.split(" / ")
    assert len(parts) == 2, detail
    assert HANGUL.search(parts[0]) and not HANGUL.search(parts[1]), detail
    return parts[0], parts[1]


CASES: list[tuple[str, str, dict[str, Any], int, str, str, str]] = [
    # method, path, request keywords, status, NGSI-LD error, Korean part, English half (exact or prefix)
    ("GET", f"{NGSI}/types/Nope", {}, 404, "ResourceNotFound", "유형 Nope의 엔티티 없음", "no entity of type Nope"),
    ("GET", f"{NGSI}/attributes/nope", {}, 404, "ResourceNotFound", "속성 nope 없음", "no attribute nope"),
    ("GET", f"{NGSI}/temporal/entities/urn:ngsi-ld:Building:none", {}, 404, "ResourceNotFound",
     "시간 엔티티 urn:ngsi-ld:Building:none 없음", "temporal entity urn:ngsi-ld:Building:none does not exist"),
    ("GET", f"{NGSI}/temporal/entities", {"params": {"type": "Building", "timerel": "between",
                                                     "timeAt": "2026-01-01T00:00:00Z"}},
     400, "BadRequestData", "endTimeAt이 필요함", "timerel=between needs endTimeAt"),
    ("GET", ENTITIES, {"params": {"type": "Building", "q": "height>"}}, 400, "BadRequestData",
     "잘못된 q: 값이 필요한데 없음", "invalid q: expected a value, found nothing (at position 7)"),
    ("GET", ENTITIES, {"params": {"type": "Building", "georel": "near", "geometry": "Point",
                                  "coordinates": "[127.0,37.5]"}}, 400, "BadRequestData",
     "잘못된 지오쿼리: georel 'near'에는", "invalid geo-query: georel 'near' needs maxDistance or minDistance"),
    ("GET", ENTITIES, {"params": {"type": "(Building"}}, 400, "BadRequestData", "닫히지 않음",
     "a '(' in the type expression is not closed"),
    ("GET", ENTITIES, {"params": {"type": "Building", "frob": "1"}}, 400, "InvalidRequest",
     "알 수 없는 쿼리 매개변수 'frob'", "unknown query parameter 'frob'; this operation takes:"),
    ("GET", ENTITIES, {"params": {"type": "Building"}, "headers": {"Accept": "text/csv"}}, 406, "NotAcceptable",
     "'text/csv' 중 어느 것도 만들 수 없음", "none of 'text/csv' can be produced; use"),
    ("POST", ENTITIES, {"content": b"{", "headers": {"Content-Type": "application/json"}}, 400, "InvalidRequest",
     "본문이 올바른 JSON이 아님", "the body is not valid JSON:"),
    ("POST", ENTITIES, {"content": b"x", "headers": {"Content-Type": "text/plain"}}, 415, "UnsupportedMediaType",
     "Content-Type text/plain을(를) 받지 않음", "Content-Type text/plain is not supported here"),
    ("POST", ENTITIES, {"json": {"id": "x", "type": "Building"}}, 400, "BadRequestData",
     "엔티티 id는 URI여야 함('x')", "entity id must be a URI, got 'x'"),
    ("PATCH", entity_url(B1, "attrs", "nope"), {"json": {"value": 1}}, 404, "ResourceNotFound",
     "속성 https://uri.etsi.org/ngsi-ld/default-context/nope 없음",
     "attribute https://uri.etsi.org/ngsi-ld/default-context/nope does not exist"),
    ("POST", f"{BATCH}/frobnicate", {"json": []}, 404, "ResourceNotFound", "일괄 작업 frobnicate 없음",
     "no batch operation frobnicate"),
    ("POST", f"{BATCH}/create", {"json": {"id": B1}}, 400, "BadRequestData", "일괄 작업 본문은 JSON 배열이어야 함",
     "a batch operation body must be a JSON array"),
    ("GET", f"{NGSI}/jsonldContexts/nope", {}, 404, "ResourceNotFound", "id가 'nope'인 @context 없음",
     "no @context with id 'nope'"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "error", "ko", "en"), CASES,
                         ids=[f"{c[0]} {c[1].removeprefix(NGSI)} {c[3]}" for c in CASES])
def test_an_ngsild_refusal_is_said_in_korean_and_english(client: TestClient, method: str, path: str,
                                                         kwargs: dict[str, Any], status: int, error: str, ko: str,
                                                         en: str) -> None:
    create(client, {"id": B1, "type": "Building", "height": {"type": "Property", "value": 12}})
    body = assert_problem(client.request(method, path, **kwargs), status, error)
    assert body["title"] == TITLES[error]  # the fixed English title of the type, not the detail
    ko_half, en_half = halves(body["detail"])
    assert ko in ko_half and en_half.startswith(en), body["detail"]


def test_a_batch_reports_each_entity_in_korean_and_english(client: TestClient) -> None:
    create(client, {"id": B1, "type": "Building", "height": {"type": "Property", "value": 12}})
    response = client.post(f"{BATCH}/create", json=[{"id": B1, "type": "Building"}, {"id": "nope", "type": "Building"}])
    assert response.status_code == 207
    errors = {e["entityId"]: e["error"] for e in response.json()["errors"]}
    assert errors[B1]["detail"] == f"엔티티 {B1} 이미 있음 / entity {B1} already exists"
    assert errors["nope"]["detail"] == "엔티티 id는 URI여야 함('nope') / entity id must be a URI, got 'nope'"
    assert (errors[B1]["title"], errors["nope"]["title"]) == ("Already exists", "Bad request data")


def test_attributes_not_updated_are_said_in_korean_and_english(client: TestClient) -> None:
    create(client, {"id": B1, "type": "Building", "height": {"type": "Property", "value": 12}})
    response = client.post(f"{BATCH}/update", params={"options": "noOverwrite"},
                           json=[{"id": B1, "height": {"type": "Property", "value": 13}}])
    assert response.status_code == 207
    error = response.json()["errors"][0]["error"]
    ko, en = halves(error["detail"])
    assert ko == "갱신되지 않은 속성: https://uri.etsi.org/ngsi-ld/default-context/height: 속성이 이미 있고 noOverwrite가 지정됨"
    assert en == ("attributes not updated: https://uri.etsi.org/ngsi-ld/default-context/height: "
                  "attribute exists and noOverwrite was set")
    assert error["notUpdated"][0]["reason"] == "속성이 이미 있고 noOverwrite가 지정됨 / attribute exists and noOverwrite was set"
