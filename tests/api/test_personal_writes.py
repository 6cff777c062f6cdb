"""Writes and deletions of personal entities in the NGSI-LD API (`privacy.personal_entity_types`, personal.py).

With the token guard on: writing a personal entity needs `personal:write` (operator, admin; not the `ingest` role of
data pipelines), and each request that writes personal entities is one `data` / `personal-write` audit line (ids,
operations, counts; never values), batches included. Writes of other types write nothing. A real app on the
test's store backend (both backends).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from ucity.core.config import load_settings
from ucity.core.http import Req
from ucity.ngsild.personal import route_of
from ucity.ops.auth import ROLE_PERMISSIONS, Permission, Role
from ucity.server import create_app

ADMIN, OPERATOR, INGEST = ("a" * 32, "o" * 32, "i" * 32)
TOKENS = [{"id": "op-1", "role": "operator", "token": OPERATOR}, {"id": "pipe", "role": "ingest", "token": INGEST}]
PHONE = "010-9876-5432"
PERSON_ID = "urn:ngsi-ld:Person:elder-2"


def person(n: int = 2) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:Person:elder-{n}", "type": "Person",
            "telephone": {"type": "Property", "value": PHONE},
            "heartRate": {"type": "Property", "value": 71, "observedAt": "2026-01-01T00:00:00Z"}}


def device(n: int) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:Device:d{n}", "type": "Device",
            "heartRate": {"type": "Property", "value": n, "observedAt": "2026-01-01T00:00:00Z"}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_client(tmp_path: Path, require_auth: bool) -> TestClient:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             server={"require_auth": require_auth}, ops={"admin_token": ADMIN, "tokens": TOKENS})
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8000")


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, True) as client:
        yield client


def audit(http: TestClient, kind: str) -> list[dict[str, Any]]:
    response = http.get("/api/v1/audit", params={"kind": kind, "limit": "100"}, headers=bearer(ADMIN))
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


def writes(http: TestClient) -> list[dict[str, Any]]:
    return [line for line in audit(http, "data") if line["action"] == "personal-write"]


def refused_write(http: TestClient) -> list[dict[str, Any]]:
    return [line for line in audit(http, "auth") if line["action"] == "refused"
            and line.get("permission") == "personal:write"]


def test_roles_personal_write_is_operator_and_admin_only() -> None:
    assert Permission.PERSONAL_WRITE in ROLE_PERMISSIONS[Role.OPERATOR]
    assert Permission.PERSONAL_WRITE in ROLE_PERMISSIONS[Role.ADMIN]
    for role in (Role.READER, Role.AGENCY, Role.INGEST):
        assert Permission.PERSONAL_WRITE not in ROLE_PERMISSIONS[role]
    assert ROLE_PERMISSIONS[Role.INGEST] == {Permission.DATA_READ, Permission.DATA_WRITE}


def test_route_of_names_path_parameters_not_their_values() -> None:
    req = Req("PATCH", f"/ngsi-ld/v1/entities/{PERSON_ID}/attrs/telephone",
              path_params={"entityId": PERSON_ID, "attrId": "telephone"})
    assert route_of(req) == "PATCH /ngsi-ld/v1/entities/{entityId}/attrs/{attrId}"


def test_batch_writes_of_personal_entities_are_one_audit_line_per_request(http: TestClient) -> None:
    created = http.post("/ngsi-ld/v1/entityOperations/create", headers=bearer(OPERATOR),
                        json=[person(1), person(2), device(0), device(1)])
    assert created.status_code == 201, created.text
    lines = writes(http)
    assert len(lines) == 1
    line = lines[0]
    assert line["actor"] == "operator:op-1" and line["route"] == "POST /ngsi-ld/v1/entityOperations/create"
    assert line["operations"] == {"create": 2} and line["entities"] == 2 and line["types"] == ["Person"]
    assert line["entityIds"] == ["urn:ngsi-ld:Person:elder-1", PERSON_ID]
    assert PHONE not in str(line) and "71" not in str(line.get("entityIds"))
    # Devices only: nothing written to the audit log.
    upsert = http.post("/ngsi-ld/v1/entityOperations/upsert", headers=bearer(OPERATOR), json=[device(2), device(3)])
    assert upsert.status_code in (201, 204), upsert.text
    assert len(writes(http)) == 1
    # A batch delete naming Persons and Devices: one line, the Persons only.
    deleted = http.post("/ngsi-ld/v1/entityOperations/delete", headers=bearer(OPERATOR),
                        json=["urn:ngsi-ld:Person:elder-1", PERSON_ID, "urn:ngsi-ld:Device:d0"])
    assert deleted.status_code == 204, deleted.text
    last = writes(http)
    assert len(last) == 2
    batch_delete = next(line for line in last if line["route"] == "POST /ngsi-ld/v1/entityOperations/delete")
    assert batch_delete["operations"] == {"delete": 2} and batch_delete["entities"] == 2


def test_single_writes_without_a_type_in_the_request_are_seen_and_audited(http: TestClient) -> None:
    assert http.post("/ngsi-ld/v1/entities", headers=bearer(OPERATOR), json=person()).status_code == 201
    patch = http.patch(f"/ngsi-ld/v1/entities/{PERSON_ID}/attrs", headers=bearer(OPERATOR),
                       json={"telephone": {"type": "Property", "value": "010-0000-0000"}})
    assert patch.status_code == 204, patch.text
    attr = http.delete(f"/ngsi-ld/v1/entities/{PERSON_ID}/attrs/telephone", headers=bearer(OPERATOR))
    assert attr.status_code == 204, attr.text
    gone = http.delete(f"/ngsi-ld/v1/entities/{PERSON_ID}", headers=bearer(OPERATOR))
    assert gone.status_code == 204, gone.text
    routes = {line["route"]: line for line in writes(http)}
    assert set(routes) == {"POST /ngsi-ld/v1/entities", "PATCH /ngsi-ld/v1/entities/{entityId}/attrs",
                           "DELETE /ngsi-ld/v1/entities/{entityId}/attrs/{attrId}",
                           "DELETE /ngsi-ld/v1/entities/{entityId}"}
    assert routes["DELETE /ngsi-ld/v1/entities/{entityId}"]["operations"] == {"delete": 1}
    assert all(line["entityIds"] == [PERSON_ID] for line in routes.values())
    assert "010-" not in str(routes)
    # A device's write: nothing.
    assert http.post("/ngsi-ld/v1/entities", headers=bearer(OPERATOR), json=device(9)).status_code == 201
    assert len(writes(http)) == 4


def test_an_ingest_token_cannot_write_or_delete_a_person(http: TestClient) -> None:
    assert http.post("/ngsi-ld/v1/entities", headers=bearer(OPERATOR), json=person()).status_code == 201
    create = http.post("/ngsi-ld/v1/entities", headers=bearer(INGEST), json=person(3))
    assert create.status_code == 403 and create.json()["permission"] == "personal:write"
    patch = http.patch(f"/ngsi-ld/v1/entities/{PERSON_ID}/attrs", headers=bearer(INGEST),
                       json={"telephone": {"type": "Property", "value": "010-0000-0000"}})
    assert patch.status_code == 403 and patch.json()["permission"] == "personal:write"
    assert http.delete(f"/ngsi-ld/v1/entities/{PERSON_ID}", headers=bearer(INGEST)).status_code == 403
    purge = http.delete("/ngsi-ld/v1/entities", params={"type": "Person"}, headers=bearer(INGEST))
    assert purge.status_code == 403
    upsert = http.post("/ngsi-ld/v1/entityOperations/upsert", headers=bearer(INGEST), json=[person(), device(1)])
    assert upsert.status_code == 207, upsert.text
    assert upsert.json()["success"] == ["urn:ngsi-ld:Device:d1"]
    assert [e["entityId"] for e in upsert.json()["errors"]] == [PERSON_ID]
    assert upsert.json()["errors"][0]["error"]["status"] == 403
    temporal = http.post(f"/ngsi-ld/v1/temporal/entities/{PERSON_ID}/attrs", headers=bearer(INGEST),
                         json={"heartRate": [{"type": "Property", "value": 99, "observedAt": "2026-01-01T00:01:00Z"}]})
    assert temporal.status_code == 403 and temporal.json()["permission"] == "personal:write"
    assert http.delete(f"/ngsi-ld/v1/temporal/entities/{PERSON_ID}", headers=bearer(INGEST)).status_code == 403
    # Nothing changed: the Person as the operator wrote it, its history whole; the device written.
    stored = http.get(f"/ngsi-ld/v1/entities/{PERSON_ID}", headers=bearer(OPERATOR)).json()
    assert stored["telephone"]["value"] == PHONE
    assert http.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Person:elder-3", headers=bearer(OPERATOR)).status_code == 404
    history = http.get(f"/ngsi-ld/v1/temporal/entities/{PERSON_ID}", headers=bearer(OPERATOR))
    rates = [i["value"] for i in history.json()["heartRate"]]  # (values, not digits in text: ids hold any digits)
    assert history.status_code == 200 and 71 in rates and 99 not in rates
    assert http.post("/ngsi-ld/v1/entities", headers=bearer(INGEST), json=device(7)).status_code == 201
    refusals = refused_write(http)
    assert len(refusals) == 1 and refusals[0]["actor"] == "ingest:pipe"  # paced per token and permission
    assert refusals[0]["types"] == ["Person"] and PHONE not in str(refusals)
    assert [line["actor"] for line in writes(http)] == ["operator:op-1"]  # the operator's create only


def numbers(value: Any) -> Iterator[float]:
    """Every number in an audit line's detail, nested ones too."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from numbers(item)


def test_temporal_writes_and_deletes_of_a_person_are_audited(http: TestClient) -> None:
    assert http.post("/ngsi-ld/v1/entities", headers=bearer(OPERATOR), json=person()).status_code == 201
    added = http.post(f"/ngsi-ld/v1/temporal/entities/{PERSON_ID}/attrs", headers=bearer(OPERATOR),
                      json={"heartRate": [{"type": "Property", "value": 90, "observedAt": "2026-01-01T00:01:00Z"},
                                          {"type": "Property", "value": 91, "observedAt": "2026-01-01T00:02:00Z"}]})
    assert added.status_code == 204, added.text
    deleted = http.delete(f"/ngsi-ld/v1/temporal/entities/{PERSON_ID}", headers=bearer(OPERATOR))
    assert deleted.status_code == 204, deleted.text
    lines = {line["route"]: line for line in writes(http)}
    append = lines["POST /ngsi-ld/v1/temporal/entities/{entityId}/attrs"]
    assert append["operations"] == {"history-append": 1} and append["instances"] == 2
    assert append["entityIds"] == [PERSON_ID]
    assert not {90, 91} & set(numbers(append))  # no value (not a bare "90": a time's microseconds can hold it)
    assert lines["DELETE /ngsi-ld/v1/temporal/entities/{entityId}"]["operations"] == {"history-delete": 1}
    # A device's history: nothing.
    assert http.post("/ngsi-ld/v1/temporal/entities", headers=bearer(OPERATOR), json={
        "id": "urn:ngsi-ld:Device:t1", "type": "Device",
        "heartRate": [{"type": "Property", "value": 1, "observedAt": "2026-01-01T00:00:00Z"}]}).status_code == 201
    assert len(writes(http)) == 3


def test_with_the_guard_off_nothing_is_checked_nor_audited(tmp_path: Path) -> None:
    with make_client(tmp_path, False) as client:
        assert client.post("/ngsi-ld/v1/entities", json=person()).status_code == 201
        assert client.delete(f"/ngsi-ld/v1/entities/{PERSON_ID}").status_code == 204
        assert writes(client) == []
