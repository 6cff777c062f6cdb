"""A data subject's search and redaction reach every free text of the operations centre (privacy QA10 F4):
the agencies' report notes, every stated linkage purpose, attachment names and descriptions, and the purposes and
revocation reasons of the event's footage grants, as they reach the details and the operators' notes. After the
redaction neither the operators nor the agency see the texts (the event, its trail, the grant and its trail), and
a search finds the person there no more. Both store backends (`make_ops`)."""

from __future__ import annotations

import json
from typing import Any

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, Ops
from tests.ops.test_linkage import audit, event_body, fire_and_police
from ucity.ops.events import redact_trail
from ucity.ops.subjects import REDACTED

NAME, PHONE = "김철수", "010-2468-1357"
NOTE = f"{NAME} 할머니(82) 자택 앞 도착, 아들 {PHONE} 연락"
PURPOSE = f"{NAME} 할머니 자택 주변 확인"
REVOKED = f"{NAME} 가족 요청으로 회수"
ATTACHMENT = {"kind": "image", "name": f"{NAME}_현관.jpg", "description": f"현관 사진, 보호자 {PHONE}"}


async def _search(ops: Ops, **query: str) -> dict[str, Any]:
    resp = await ops.call("subject_search", "POST", "/api/v1/privacy/subject-search", query, role="admin")
    assert resp.status == 200
    body: dict[str, Any] = resp.body
    return body


async def _shared_event(ops: Ops) -> tuple[str, str]:
    """An event shared with the police (a linkage with a purpose, its grant revoked with a reason), with an
    attachment, on which the police reported back with a note that names the person: (event id, grant id)."""
    created = await ops.call("create_event", "POST", "/", event_body("112_DISPATCH", "robbery",
                                                                     attachments=[ATTACHMENT]))
    event_id = str(created.body["id"])
    link = (await ops.call("request_linkage", "POST", "/", {"agency": "police-112", "purpose": PURPOSE},
                           eventId=event_id)).body
    assert link["grant"], "the city's cameras near the event: the linkage's grant"
    reported = await ops.call("agency_report", "POST", "/", {"status": "arrived", "note": NOTE}, role="police",
                              eventId=event_id)
    assert reported.status == 201
    await ops.call("revoke_grant", "POST", "/", {"reason": REVOKED}, grantId=link["grant"])
    return event_id, str(link["grant"])


async def test_agency_notes_and_grant_texts_are_found_and_redacted(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event_id, grant_id = await _shared_event(ops)
        # before: the agency reads the note, the purpose and the reason (phones masked, the name is no pattern)
        police = json.dumps((await ops.call("get_event", role="police", eventId=event_id)).body, ensure_ascii=False)
        assert NAME in police and PHONE not in police and "010-****-1357" in police
        grant = json.dumps((await ops.call("get_grant", role="police", grantId=grant_id)).body, ensure_ascii=False)
        assert NAME in grant

        # the search finds the person in the free texts: which fields, which parts, never a value
        by_name = await _search(ops, name=f" {NAME} ")
        assert [e["id"] for e in by_name["events"]] == [event_id]
        assert by_name["events"][0]["matches"] == [
            {"role": "freeText", "fields": ["name"], "texts": ["attachments", "linkages", "agencyReports", "grants"]}]
        by_phone = await _search(ops, phone="+82 10 2468 1357")
        assert by_phone["events"][0]["matches"] == [
            {"role": "freeText", "fields": ["phone"], "texts": ["attachments", "agencyReports"]}]
        assert (await _search(ops, name="박영희"))["count"] == 0  # nobody else
        answers = json.dumps([by_name, by_phone], ensure_ascii=False)
        assert NAME not in answers and "2468" not in answers
        searches = await audit(ops, kind="privacy", action="subject-search")
        assert [line["freeTextMatched"] for line in searches] == [1, 1, 0]

        # the redaction replaces every one of them, the grant's too, and says so in its audit line
        resp = await ops.call("redact_event", "POST", "/", {"freeText": True, "reason": "본인 삭제 요청"},
                              role="admin", eventId=event_id)
        assert resp.status == 200
        assert resp.body["redactions"][0]["parts"] == {
            "freeText": ["details", "attachments", "linkages", "agencyReports", "grants"]}
        (line,) = await audit(ops, kind="privacy", action="redacted")
        assert line["outcome"] == "ok" and line["grantsRedacted"] == 1
        assert line["parts"]["freeText"] == ["details", "attachments", "linkages", "agencyReports", "grants"]
        assert NAME not in json.dumps(line, ensure_ascii=False)

        # the agency's view (the event and its trail, the grant and its trail) and the operators' hold none of it
        police_body = (await ops.call("get_event", role="police", eventId=event_id)).body
        assert [r["note"] for r in police_body["agencyReports"]] == [REDACTED]
        assert police_body["agencyStatus"]["police-112"]["status"] == "arrived"  # the report itself stays
        grant_body = (await ops.call("get_grant", role="police", grantId=grant_id)).body
        assert grant_body["purpose"] == REDACTED and grant_body["revokeReason"] == REDACTED
        operator_body = (await ops.call("get_event", eventId=event_id)).body
        assert operator_body["linkages"][0]["purpose"] == REDACTED
        assert operator_body["attachments"][0]["name"] == REDACTED
        for shown in (police_body, grant_body, operator_body):
            text = json.dumps(shown, ensure_ascii=False)
            assert NAME not in text and "1357" not in text
        # nor the stored records
        stored = json.dumps([await ops.ucity.store.get_ops_event(TENANT, event_id),
                             await ops.ucity.store.get_grant(TENANT, grant_id)], ensure_ascii=False)
        assert NAME not in stored and "2468" not in stored
        # and a search finds the person there no more; a second redaction finds nothing left
        assert (await _search(ops, name=NAME))["count"] == 0
        assert (await _search(ops, phone=PHONE))["count"] == 0
        await ops.call("redact_event", "POST", "/", {"freeText": True, "reason": "재요청"}, role="admin",
                       eventId=event_id)
        assert [x["outcome"] for x in await audit(ops, kind="privacy", action="redacted")] == ["ok", "unchanged"]


async def test_every_stated_linkage_purpose_is_redacted(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        created = await ops.call("create_event", "POST", "/", event_body("DISASTER", "flood"))
        event_id = str(created.body["id"])
        doc = await ops.ucity.store.get_ops_event(TENANT, event_id)
        assert doc is not None
        # a linkage asked for twice, the second time with another need (QA15 F9a: kept in `purposes`)
        link = {"id": "lk-1", "agency": "disaster-room", "service": "DISASTER", "status": "held", "purpose": "",
                "reason": None, "purposes": [{"at": "2026-03-02T00:00:00.000000Z", "by": "x", "purpose": PURPOSE}]}
        events = ops.center.events
        await events.change(TENANT, event_id, lambda e: (e.linkages.append(link), [
            events.audit.row(TENANT, "event", "test", "x", event=event_id)])[1])
        found = await _search(ops, name=NAME)
        assert found["events"][0]["matches"] == [{"role": "freeText", "fields": ["name"], "texts": ["linkages"]}]
        await ops.call("redact_event", "POST", "/", {"freeText": True, "reason": "삭제"}, role="admin",
                       eventId=event_id)
        stored = await ops.ucity.store.get_ops_event(TENANT, event_id)
        assert stored is not None and stored["linkages"][0]["purposes"][0]["purpose"] == REDACTED
        assert (await _search(ops, name=NAME))["count"] == 0


def test_a_redacted_trail_hides_the_typed_texts_up_to_the_redaction_only() -> None:
    at, later = "2026-03-02T00:00:00.000000Z", "2026-03-02T01:00:00.000000Z"
    lines = [{"kind": "grant", "action": "issued", "at": at, "purpose": PURPOSE},
             {"kind": "grant", "action": "renewed", "at": at, "outcome": "denied", "reason": "grant-expired"},
             {"kind": "linkage", "action": "rejected", "at": at, "reason": REVOKED},
             {"kind": "grant", "action": "revoked", "at": later, "reason": "새 사유"}]
    shown = redact_trail(lines, at)
    assert [line.get("purpose") or line.get("reason") for line in shown] == [
        REDACTED, "grant-expired", REDACTED, "새 사유"]
    assert redact_trail(lines, None) == lines
