"""Personal entity types in the NGSI-LD API (`privacy.personal_entity_types`, ucity/ngsild/personal.py, QA10 F5).

With the token guard on: reads of personal entities need `personal:read` (the reader gets 403 or a filtered
answer, the operator gets them and one `data` / `personal-read` audit line); subscriptions that can match them
too. With the guard off nothing changes. A real app on the test's store backend (both backends).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from ucity.core.config import load_settings
from ucity.core.http import Req
from ucity.ops.auth import Forbidden, Permission, Principal, Role
from ucity.server import create_app

ADMIN, OPERATOR, READER = ("a" * 32, "o" * 32, "r" * 32)
TENANT = "urn:ngsi-ld:tenant:default"
TOKENS = [{"id": "op-1", "role": "operator", "token": OPERATOR}, {"id": "wall", "role": "reader", "token": READER}]
PHONE = "010-9876-5432"
PERSON: dict[str, Any] = {"id": "urn:ngsi-ld:Person:elder-2", "type": "Person",
          "telephone": {"type": "Property", "value": PHONE},
          "heartRate": {"type": "Property", "value": 71, "observedAt": "2026-01-01T00:00:00Z"}}
# An entity of two types, one of them personal: selected through its other type, still withheld.
BOTH: dict[str, Any] = {"id": "urn:ngsi-ld:Device:wearable-1", "type": ["Device", "Person"],
        "heartRate": {"type": "Property", "value": 80, "observedAt": "2026-01-01T00:00:00Z"}}
DEVICES: list[dict[str, Any]] = [{"id": f"urn:ngsi-ld:Device:d{n}", "type": "Device",
            "heartRate": {"type": "Property", "value": n, "observedAt": "2026-01-01T00:00:00Z"}} for n in range(3)]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_client(tmp_path: Path, require_auth: bool) -> TestClient:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             server={"require_auth": require_auth}, ops={"admin_token": ADMIN, "tokens": TOKENS})
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8000")


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, True) as client:
        response = client.post("/ngsi-ld/v1/entityOperations/create", json=[PERSON, BOTH, *DEVICES],
                               headers=bearer(OPERATOR))
        assert response.status_code == 201, response.text
        yield client


def audit(http: TestClient, kind: str) -> list[dict[str, Any]]:
    response = http.get("/api/v1/audit", params={"kind": kind, "limit": "100"}, headers=bearer(ADMIN))
    assert response.status_code == 200, response.text
    # The fixture's create of the Persons is a `personal-write` line (test_personal_writes.py), not what these test.
    return [line for line in response.json()["entries"] if line["action"] != "personal-write"]


def ids(response: Any) -> list[str]:
    assert response.status_code in (200, 206), response.text
    return sorted(e["id"] for e in response.json())


def refused_personal(http: TestClient) -> list[dict[str, Any]]:
    return [line for line in audit(http, "auth") if line["action"] == "refused"
            and line.get("permission") == "personal:read"]


# -- reads by a reader (data:read, no personal:read) -----------------------------------------------------
def test_reader_is_refused_a_query_of_only_personal_types_and_the_refusal_is_audited(http: TestClient) -> None:
    response = http.get("/ngsi-ld/v1/entities", params={"type": "Person"}, headers=bearer(READER))
    assert response.status_code == 403, response.text
    problem = response.json()
    assert problem["permission"] == "personal:read" and response.headers["content-type"].startswith(
        "application/json")
    post = http.post("/ngsi-ld/v1/entityOperations/query", headers=bearer(READER),
                     json={"type": "Query", "entities": [{"type": "Person"}]})
    assert post.status_code == 403
    retrieve = http.get(f"/ngsi-ld/v1/entities/{PERSON['id']}", headers=bearer(READER))
    assert retrieve.status_code == 403 and PHONE not in retrieve.text
    both = http.get(f"/ngsi-ld/v1/entities/{BOTH['id']}", headers=bearer(READER))  # a Device, and a Person
    assert both.status_code == 403
    device = http.get(f"/ngsi-ld/v1/entities/{DEVICES[0]['id']}", headers=bearer(READER))
    assert device.status_code == 200
    lines = refused_personal(http)
    assert len(lines) == 1 and lines[0]["actor"] == "reader:wall"  # paced like the guard's refusals
    assert lines[0]["types"] == ["Person"] and PHONE not in str(lines)


def test_reader_gets_mixed_and_untyped_queries_without_personal_entities_nor_their_count(http: TestClient) -> None:
    mixed = http.get("/ngsi-ld/v1/entities", params={"type": "Person,Device", "count": "true"},
                     headers=bearer(READER))
    assert ids(mixed) == [d["id"] for d in DEVICES] and mixed.headers["NGSILD-Results-Count"] == "3"
    # No type: a q for a phone number finds nothing, and the count says nothing either (no oracle).
    phone = http.get("/ngsi-ld/v1/entities", params={"q": f'telephone=="{PHONE}"', "count": "true"},
                     headers=bearer(READER))
    assert ids(phone) == [] and phone.headers["NGSILD-Results-Count"] == "0"
    untyped = http.get("/ngsi-ld/v1/entities", params={"attrs": "heartRate", "count": "true"},
                       headers=bearer(READER))
    assert ids(untyped) == [d["id"] for d in DEVICES] and untyped.headers["NGSILD-Results-Count"] == "3"
    post = http.post("/ngsi-ld/v1/entityOperations/query", headers=bearer(READER), params={"count": "true"},
                     json={"type": "Query", "entities": [{"type": "Person"}, {"type": "Device"}]})
    assert ids(post) == [d["id"] for d in DEVICES] and post.headers["NGSILD-Results-Count"] == "3"
    assert audit(http, "data") == []  # nothing personal was shown


def test_reader_temporal_reads_withhold_personal_entities(http: TestClient) -> None:
    only = http.get("/ngsi-ld/v1/temporal/entities", params={"type": "Person"}, headers=bearer(READER))
    assert only.status_code == 403 and only.json()["permission"] == "personal:read"
    one = http.get(f"/ngsi-ld/v1/temporal/entities/{PERSON['id']}", headers=bearer(READER))
    assert one.status_code == 403
    both = http.get(f"/ngsi-ld/v1/temporal/entities/{BOTH['id']}", headers=bearer(READER))
    assert both.status_code == 403
    untyped = http.get("/ngsi-ld/v1/temporal/entities", params={"attrs": "heartRate", "count": "true"},
                       headers=bearer(READER))
    assert ids(untyped) == [d["id"] for d in DEVICES] and untyped.headers["NGSILD-Results-Count"] == "3"
    post = http.post("/ngsi-ld/v1/temporal/entityOperations/query", headers=bearer(READER),
                     json={"type": "Query", "entities": [{"type": "Device"}], "attrs": ["heartRate"]})
    assert ids(post) == [d["id"] for d in DEVICES]
    assert audit(http, "data") == []


# -- reads by an operator (personal:read) -------------------------------------------------------------
def test_operator_reads_personal_entities_and_each_read_is_audited_without_values(http: TestClient) -> None:
    query = http.get("/ngsi-ld/v1/entities", params={"q": f'telephone=="{PHONE}"'}, headers=bearer(OPERATOR))
    assert ids(query) == [PERSON["id"]] and PHONE in query.text
    assert http.get(f"/ngsi-ld/v1/entities/{PERSON['id']}", headers=bearer(OPERATOR)).status_code == 200
    mixed = http.post("/ngsi-ld/v1/entityOperations/query", headers=bearer(OPERATOR),
                      json={"type": "Query", "entities": [{"type": "Device"}]})
    assert ids(mixed) == sorted([BOTH["id"], *(d["id"] for d in DEVICES)])
    temporal = http.get("/ngsi-ld/v1/temporal/entities", params={"type": "Person"}, headers=bearer(OPERATOR))
    assert ids(temporal) == sorted([PERSON["id"], BOTH["id"]])
    lines = sorted(audit(http, "data"), key=lambda line: line["seq"] if "seq" in line else line["at"])
    assert [line["action"] for line in lines] == ["personal-read"] * 4
    routes = [line["route"] for line in lines]
    assert set(routes) == {"GET /ngsi-ld/v1/entities", "GET /ngsi-ld/v1/entities/{entityId}",
                           "POST /ngsi-ld/v1/entityOperations/query", "GET /ngsi-ld/v1/temporal/entities"}
    by_route = {line["route"]: line for line in lines}
    assert by_route["GET /ngsi-ld/v1/entities"]["entities"] == 1
    assert by_route["POST /ngsi-ld/v1/entityOperations/query"]["entities"] == 1  # the wearable only
    assert by_route["GET /ngsi-ld/v1/temporal/entities"]["entities"] == 2
    for line in lines:
        assert line["actor"] == "operator:op-1" and line["types"] == ["Person"]
    assert PHONE not in str(lines) and "telephone" not in str(lines)  # neither values nor the q text


def test_reads_without_personal_entities_write_no_audit_line(http: TestClient) -> None:
    devices = http.get("/ngsi-ld/v1/entities", params={"type": "Device", "idPattern": ".*:d[0-9]$"},
                       headers=bearer(OPERATOR))
    assert ids(devices) == [d["id"] for d in DEVICES]
    assert audit(http, "data") == []


# -- subscriptions ------------------------------------------------------------------------------------
def subscription(sub_id: str, selector: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": sub_id, "type": "Subscription", "watchedAttributes": ["heartRate"],
                            "notification": {"endpoint": {"uri": "http://example.org/hook/x?phone=1"}}}
    if selector is not None:
        body["entities"] = [selector]
    return body


def test_subscriptions_that_can_match_personal_types_need_personal_read_and_are_audited(http: TestClient) -> None:
    ucity = http.app.state.ucity  # type: ignore[attr-defined]
    # No role has data:write without personal:read: such a token (a custom grant) at the handler.
    writer = Principal("feed", Role.READER, frozenset({Permission.DATA_READ, Permission.DATA_WRITE}))

    def req(body: dict[str, Any]) -> Req:
        return Req("POST", "/ngsi-ld/v1/subscriptions", headers={"content-type": "application/json"},
                   body=orjson.dumps(body), principal=writer)

    async def create(body: dict[str, Any]) -> int:
        try:
            status: int = (await ucity.subscriptions.create(req(body))).status
            return status
        except Forbidden as exc:
            assert exc.to_problem()["permission"] == "personal:read"
            return 403

    def run(body: dict[str, Any]) -> int:
        assert http.portal is not None
        status: int = http.portal.call(create, body)
        return status

    assert run(subscription("urn:ngsi-ld:Subscription:p1", {"type": "Person"})) == 403
    assert run(subscription("urn:ngsi-ld:Subscription:any", None)) == 403  # no selector: every type
    assert run(subscription("urn:ngsi-ld:Subscription:dev", {"type": "Device"})) == 201
    created = http.post("/ngsi-ld/v1/subscriptions", headers=bearer(OPERATOR),
                        json=subscription("urn:ngsi-ld:Subscription:p2", {"type": "Person"}))
    assert created.status_code == 201, created.text
    assert http.delete("/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:p2",
                       headers=bearer(OPERATOR)).status_code == 204
    lines = audit(http, "data")
    assert sorted(line["action"] for line in lines) == ["personal-subscription-created",
                                                        "personal-subscription-deleted"]
    for line in lines:
        assert line["actor"] == "operator:op-1" and line["types"] == ["Person"]
        assert line["subscription"] == "urn:ngsi-ld:Subscription:p2"
        assert line["endpointHost"] == "example.org" and "phone" not in str(line)
    assert len(refused_personal(http)) == 1  # the two refusals, paced into one line
    assert refused_personal(http)[0].get("alsoRefused") is None


# -- the guard off ---------------------------------------------------------------------------------------
def test_with_the_guard_off_nothing_changes(tmp_path: Path) -> None:
    with make_client(tmp_path, False) as client:
        assert client.post("/ngsi-ld/v1/entityOperations/create", json=[PERSON, *DEVICES]).status_code == 201
        assert ids(client.get("/ngsi-ld/v1/entities", params={"type": "Person"})) == [PERSON["id"]]
        untyped = client.get("/ngsi-ld/v1/entities", params={"attrs": "heartRate", "count": "true"})
        assert len(ids(untyped)) == 4 and untyped.headers["NGSILD-Results-Count"] == "4"
        assert client.post("/ngsi-ld/v1/subscriptions",
                           json=subscription("urn:ngsi-ld:Subscription:p", {"type": "Person"})).status_code == 201
        lines = client.get("/api/v1/audit", params={"kind": "data"}, headers=bearer(ADMIN)).json()["entries"]
        assert lines == []
