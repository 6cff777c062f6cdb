"""Privacy QA10 F4: requests of a data subject (PIPA §35 access, §36 erasure).

An administrator (`privacy:admin`) finds the events that hold a person's data (`POST /api/v1/privacy/subject-search`,
by name, phone or personId and the subject's pseudonym) and erases it from one event
(`POST /api/v1/events/{id}/redact`). Both are audited (`privacy`) without the values; operators are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, TOKENS, Ops, ops_settings
from tests.ops.test_linkage import audit, event_body
from ucity.core.errors import UcityError
from ucity.ops.api import ROUTES
from ucity.ops.auth import ROLE_PERMISSIONS, Permission, Role
from ucity.ops.openapi import OPENAPI
from ucity.ops.subjects import REDACTED, normal_phone
from ucity.server import create_app

HONG = {"name": "홍길동", "phone": "010-9876-5432", "personId": "P-7001", "category": "missingPerson"}
NAMESAKE = {"name": "홍길동", "phone": "010-1111-2222"}  # another person of the same name
KIM = {"name": "김철수", "phone": "010-3333-4444"}
DETAILS = "보호자 최보호 010-7777-8888 신고, 인상착의 파란 점퍼"
NOTE = "보호자와 통화함 010-7777-8888"


async def _event(ops: Ops, **people: Any) -> str:
    resp = await ops.call("create_event", "POST", "/api/v1/events",
                          event_body("VULNERABLE", "missing_person", details=DETAILS, **people))
    assert resp.status == 201
    return str(resp.body["id"])


async def _search(ops: Ops, role: str = "admin", **query: str) -> dict[str, Any]:
    resp = await ops.call("subject_search", "POST", "/api/v1/privacy/subject-search", query, role=role)
    assert resp.status == 200
    body: dict[str, Any] = resp.body
    return body


async def _city(ops: Ops) -> dict[str, str]:
    return {
        "hong_subject": await _event(ops, subject=HONG, reporter=KIM),
        "hong_reporter": await _event(ops, subject=KIM, reporter={"name": "홍길동", "phone": "01098765432"}),
        "namesake": await _event(ops, subject=NAMESAKE),
        "other": await _event(ops, reporter={"name": "이영희", "phone": "010-5555-6666"}),
        "hong_by_id": await _event(ops, subject={"personId": "P-7001"}),  # registered by id only: pseudonym match
    }


def test_only_admins_hold_privacy_admin() -> None:
    assert Permission.PRIVACY_ADMIN in ROLE_PERMISSIONS[Role.ADMIN]
    for role in (Role.OPERATOR, Role.AGENCY, Role.READER):
        assert Permission.PRIVACY_ADMIN not in ROLE_PERMISSIONS[role]


def test_phones_are_compared_by_their_digits() -> None:
    assert normal_phone("010-9876-5432") == normal_phone("01098765432") == normal_phone("+82 10 9876 5432") \
        == "01098765432"
    assert normal_phone("+82 (0)2 123 4567") == normal_phone("02-123-4567")


async def test_search_by_phone_and_by_name_finds_the_persons_events_only(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        ids = await _city(ops)

        by_phone = await _search(ops, phone="+82 10-9876-5432")
        found = {e["id"]: e["matches"] for e in by_phone["events"]}
        assert set(found) == {ids["hong_subject"], ids["hong_reporter"]}
        assert found[ids["hong_subject"]] == [{"role": "subject", "fields": ["phone"]}]
        assert found[ids["hong_reporter"]] == [{"role": "reporter", "fields": ["phone"]}]
        assert by_phone["scanned"] == 5 and by_phone["count"] == 2

        # name and phone: the namesake with another phone is another person, not found
        both = await _search(ops, name=" 홍길동 ", phone="010 9876 5432")
        assert {e["id"] for e in both["events"]} == {ids["hong_subject"], ids["hong_reporter"]}
        # the name alone finds every 홍길동, the namesake too
        by_name = await _search(ops, name="홍길동")
        assert {e["id"] for e in by_name["events"]} == {ids["hong_subject"], ids["hong_reporter"], ids["namesake"]}
        # the registry id finds the event registered by id only, through its field and its pseudonym
        by_id = await _search(ops, personId="p-7001")
        found = {e["id"]: e["matches"] for e in by_id["events"]}
        assert set(found) == {ids["hong_subject"], ids["hong_by_id"]}
        assert found[ids["hong_by_id"]] == [{"role": "subject", "fields": ["personId", "pseudonym"]}]
        # every identifying field: the full pseudonym matches too
        full = await _search(ops, name="홍길동", phone="010-9876-5432", personId="P-7001")
        found = {e["id"]: e["matches"] for e in full["events"]}
        assert found[ids["hong_subject"]] == [{"role": "subject", "fields": ["personId", "name", "phone", "pseudonym"]}]

        # the answer names events and field names, never anybody's data
        text = json.dumps(by_name, ensure_ascii=False) + json.dumps(full, ensure_ascii=False)
        for value in ("홍길동", "9876", "김철수", "3333", "1111", "P-7001", "최보호", "7777"):
            assert value not in text


async def test_search_is_audited_without_the_values(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        await _city(ops)
        await _search(ops, name="홍길동", phone="010-9876-5432")
        (line,) = await audit(ops, kind="privacy", action="subject-search")
        assert line["actor"].startswith("admin") and line["outcome"] == "ok"
        detail = {k: v for k, v in line.items() if k not in ("at", "actor")}
        assert detail["searchedFields"] == ["name", "phone"] and detail["scanned"] == 5 and detail["matched"] == 2
        assert str(detail["queryRef"]).startswith("q-")
        text = json.dumps(line, ensure_ascii=False)
        assert "홍길동" not in text and "9876-5432" not in text and "98765432" not in text


async def test_redact_removes_the_data_from_the_api_and_the_store(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        ids = await _city(ops)
        event_id = ids["hong_subject"]
        await ops.call("event_status", "POST", "/", {"status": "acknowledged", "note": NOTE}, eventId=event_id)

        resp = await ops.call("redact_event", "POST", "/", {"roles": ["subject"], "freeText": True,
                                                           "reason": "보호자 요청으로 삭제 (실종자 발견)"},
                              role="admin", eventId=event_id)
        assert resp.status == 200 and resp.body["status"] == "acknowledged"  # allowed on an open event
        parts = resp.body["redactions"][0]["parts"]
        assert parts["subject"] == ["name", "personId", "phone", "pseudonym"]
        assert {"details", "notes"} <= set(parts["freeText"])

        # the API: an operator's unmasked read shows no subject, the reporter (not asked) stays
        shown = (await ops.call("get_event", eventId=event_id)).body
        assert "subject" not in shown["personal"] and shown["personal"]["reporter"]["name"] == "김철수"
        assert shown["subject"]["ref"] is None and shown["subject"]["category"] == "missingPerson"
        assert shown["details"] == REDACTED and [n["text"] for n in shown["notes"]] == [REDACTED]

        # the stored event itself
        doc = await ops.ucity.store.get_ops_event(TENANT, event_id)
        stored = json.dumps(doc, ensure_ascii=False)
        for value in ("홍길동", "9876", "P-7001", "최보호", "7777", "psn-"):
            assert value not in stored
        assert "김철수" in stored

        # found no more by the subject's data
        assert {e["id"] for e in (await _search(ops, phone="010-9876-5432"))["events"]} == {ids["hong_reporter"]}

        # the reporter too; a second request finds nothing left and is audited as unchanged
        await ops.call("redact_event", "POST", "/", {"roles": ["reporter"], "reason": "삭제 요청"}, role="admin",
                       eventId=event_id)
        await ops.call("redact_event", "POST", "/", {"roles": ["reporter"], "reason": "삭제 요청"}, role="admin",
                       eventId=event_id)
        doc = await ops.ucity.store.get_ops_event(TENANT, event_id)
        assert doc is not None and doc["personal"] == {}

        lines = await audit(ops, kind="privacy", action="redacted")
        assert [line["outcome"] for line in lines] == ["ok", "ok", "unchanged"]
        assert lines[0]["event"] == event_id and lines[0]["reasonChars"] == len("보호자 요청으로 삭제 (실종자 발견)")
        assert lines[0]["eventStatus"] == "acknowledged"
        text = json.dumps(lines, ensure_ascii=False)
        for value in ("홍길동", "9876", "김철수", "3333", "실종자 발견", "삭제 요청", "최보호", "7777"):
            assert value not in text


async def test_operators_are_refused_and_bad_requests_rejected(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        event_id = await _event(ops, subject=HONG)
        for name, path, body, params in (
                ("subject_search", "/api/v1/privacy/subject-search", {"phone": "010-9876-5432"}, {}),
                ("redact_event", "/", {"roles": ["subject"], "reason": "x"}, {"eventId": event_id})):
            with pytest.raises(UcityError) as refused:
                await ops.call(name, "POST", path, body, role="operator", **params)
            assert refused.value.status == 403
        with pytest.raises(UcityError) as bad:
            await _search(ops)  # nothing to search by
        assert bad.value.status == 400
        with pytest.raises(UcityError) as bad:
            await _search(ops, phone="1234")  # too broad
        assert bad.value.status == 400
        for body in ({"roles": ["subject"]}, {"roles": ["witness"], "reason": "x"}, {"reason": "x"}):
            with pytest.raises(UcityError) as bad:
                await ops.call("redact_event", "POST", "/", body, role="admin", eventId=event_id)
            assert bad.value.status == 400
        with pytest.raises(UcityError) as missing:
            await ops.call("redact_event", "POST", "/", {"roles": ["subject"], "reason": "x"}, role="admin",
                           eventId="nope")
        assert missing.value.status == 404
        refusals = await audit(ops, kind="auth", action="refused")
        assert {line["permission"] for line in refusals} == {"privacy:admin"}
        doc = await ops.ucity.store.get_ops_event(TENANT, event_id)
        assert doc is not None and doc["personal"]["subject"]["name"] == "홍길동"  # nothing changed


def test_the_routes_are_mounted_and_in_the_openapi_document(tmp_path: Path) -> None:
    with TestClient(create_app(ops_settings(tmp_path)), base_url="http://127.0.0.1:8000") as http:
        paths = http.get("/openapi.json").json()["paths"]
        search_doc = paths["/api/v1/privacy/subject-search"]["post"]
        assert "privacy:admin" in search_doc["description"] and search_doc["security"] == [{"bearer": []}]
        assert "privacy:admin" in paths["/api/v1/events/{eventId}/redact"]["post"]["description"]
        url = "/api/v1/privacy/subject-search"
        refused = http.post(url, json={"name": "홍길동"}, headers={"Authorization": f"Bearer {TOKENS['operator']}"})
        assert refused.status_code == 403 and refused.json()["permission"] == "privacy:admin"
        answer = http.post(url, json={"name": "홍길동"}, headers={"Authorization": f"Bearer {TOKENS['admin']}"})
        assert answer.status_code == 200 and answer.json() == {"scanned": 0, "count": 0, "events": []}


def test_the_routes_are_documented() -> None:
    routes = {(r.method, r.path): r for r in ROUTES}
    for key in (("POST", "/api/v1/privacy/subject-search"), ("POST", "/api/v1/events/{eventId}/redact")):
        assert routes[key].permission is Permission.PRIVACY_ADMIN
        assert "privacy:admin" in OPENAPI.routes[key].description
    assert OPENAPI.routes[("POST", "/api/v1/events/{eventId}/redact")].body.__name__ == "RedactIn"  # type: ignore[union-attr]
