"""QA10 F3 (ops part): free text of the operations centre holds personal data.

(a) An event's `details` (and the operators' status notes, a linkage's purpose or reason) are masked
    (`freetext.mask_free_text`: phones, registration numbers, e-mail) for callers without `personal:read`, and in
    what goes to agencies (their role has no `personal:read`): packages, the outbox, dead letters.
(b) The audit log (kept for `retention.audit_days`, longer than the event) never holds a note's text: the note is
    kept on the event, its status line says how long it was and whether it held personal data.
"""

from __future__ import annotations

import json

import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.test_linkage import audit, event_body, fire_and_police
from ucity.ops.freetext import holds_personal, mask_free_text

PHONE = "010-9876-5432"
DETAILS = f"신고자 홍길동 {PHONE}, 주민번호 900101-1234567, hong.gd@example.com. 2026-12-07 14:05 접수"
NOTE = "보호자 최보호 010-7777-8888 통화함"


@pytest.mark.parametrize(("text", "masked"), [
    ("010-1234-5678", "010-****-5678"),
    ("연락처 01012345678", "연락처 010****5678"),
    ("홍길동010-1234-5678", "홍길동010-****-5678"),
    ("신고자_010-1234-5678.jpg", "신고자_010-****-5678.jpg"),
    ("010 1234 5678", "010 **** 5678"),
    ("010.1234.5678", "010.****.5678"),
    ("011-123-4567", "011-***-4567"),
    ("02-123-4567", "02-***-4567"),
    ("02-1234-5678로 전화", "02-****-5678로 전화"),
    ("(02) 1234-5678", "(02) ****-5678"),
    ("031-123-4567", "031-***-4567"),
    ("064-712-3456", "064-***-3456"),
    ("0311234567", "031***4567"),
    ("070-1234-5678", "070-****-5678"),
    ("0505-123-4567", "0505-***-4567"),
    ("+82 10 1234 5678", "+82 ** **** 5678"),
    ("+82-10-1234-5678", "+82-**-****-5678"),
    ("+82 (0)2 123 4567", "+82 (*)* *** 4567"),
    ("+821012345678", "+821*****5678"),
    ("900101-1234567", "******-*******"),
    ("주민 850315-2345678 외국인 010203-5123456", "주민 ******-******* 외국인 ******-*******"),
    ("9001011234567", "*************"),
    ("hong.gd@example.com", "h******@example.com"),
    ("메일 a@b.kr 로", "메일 a*@b.kr 로"),
    ("전화번호는 010-1234-5678이고 02-123-4567입니다", "전화번호는 010-****-5678이고 02-***-4567입니다"),
])
def test_mask_free_text_masks_korean_personal_data(text: str, masked: str) -> None:
    assert mask_free_text(text) == masked
    assert holds_personal(text)
    assert mask_free_text(masked) == masked  # idempotent: masking a masked text changes nothing


@pytest.mark.parametrize("text", [
    "2026-12-07", "2026.12.07", "2026/12/07", "2026-12-07T05:00:00Z", "14:05:33", "오후 2시 05분",
    "112-20260302-0001", "사건 20260302-000123", "119-2026-000123",
    "127.0276, 37.4979", "37.5665,126.9780", "126.8874 37.4954", "IP 10.0.12.34",
    "금액 1,234,567원", "3층 창문에서 연기", "1588-1234", "101동 1203호", "v1.2.3", "",
    "901301-1234567",  # no month 13: not a registration number
    "010-1234-56789",  # one digit too many: no phone number
])
def test_mask_free_text_leaves_what_only_looks_like_numbers(text: str) -> None:
    assert mask_free_text(text) == text
    assert not holds_personal(text)


async def test_details_and_notes_are_masked_for_agencies_and_lists(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body(
            "112_DISPATCH", "robbery", details=DETAILS), role="police")
        event_id = created.body["id"]
        await ops.call("event_status", "POST", "/", {"status": "dispatched", "note": NOTE}, eventId=event_id)

        # the agency (no personal:read) reads the details masked, and no operator notes at all
        police = (await ops.call("get_event", role="police", eventId=event_id)).body
        assert police["details"] == ("신고자 홍길동 010-****-5432, 주민번호 ******-*******, h******@example.com. "
                                     "2026-12-07 14:05 접수")
        assert "notes" not in police and "7777-8888" not in json.dumps(police, ensure_ascii=False)
        # lists mask for everybody, as they mask `personal`
        [listed] = (await ops.call("list_events")).body["events"]
        assert PHONE not in listed["details"] and listed["notes"][0]["text"] == "보호자 최보호 010-****-8888 통화함"
        # an operator's read shows them, audited as a read of personal data (which parts, never the values)
        shown = (await ops.call("get_event", eventId=event_id)).body
        assert shown["details"] == DETAILS
        assert [(n["text"], n["status"], n["by"]) for n in shown["notes"]] == [(NOTE, "dispatched", "operator:op-kim")]
        [read] = await audit(ops, action="personal-read")
        assert read["freeText"] == ["details", "notes"]
        assert PHONE not in json.dumps(read, ensure_ascii=False)


async def test_packages_outbox_and_dead_letters_hold_masked_details(make_ops: MakeOps, receiver: Receiver) -> None:
    receiver.status["/119"] = 503
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events",
                                 event_body("119_DISPATCH", "fire", details=DETAILS))
        sent = receiver.on("/119")[0].json
        assert sent["package"]["event"]["details"].startswith("신고자 홍길동 010-****-5432, 주민번호 ******-*******")
        await ops.advance(2)
        await ops.advance(4)
        letters = await ops.ucity.alarms.dispatcher.dead_letters("urn:ngsi-ld:tenant:default")
        assert letters[0]["notification"]["package"]["event"]["id"] == created.body["id"]
        for copy in (sent, letters):
            dumped = json.dumps(copy, ensure_ascii=False)
            assert PHONE not in dumped and "1234567" not in dumped and "hong.gd@" not in dumped
        # the event keeps the text for operators
        assert (await ops.call("get_event", eventId=created.body["id"])).body["details"] == DETAILS


async def test_audit_lines_hold_no_free_text(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events",
                                 event_body("112_VIDEO", "missing_person", details=DETAILS), role="police")
        event_id = created.body["id"]
        await ops.call("event_status", "POST", "/", {"status": "acknowledged", "note": NOTE}, eventId=event_id)
        await ops.call("event_status", "POST", "/", {"status": "dispatched", "note": "순찰차 2대 출동"},
                       eventId=event_id)
        await ops.call("add_attachment", "POST", "/", {"name": f"신고자_{PHONE}.jpg",
                                                       "url": "https://vms.guro.example/a.jpg"}, eventId=event_id)
        held = await ops.call("request_linkage", "POST", "/", {"service": "112_VIDEO",
                                                               "purpose": f"보호자 {PHONE} 요청"}, role="police",
                              eventId=event_id)
        assert held.body["status"] == "held"
        await ops.call("reject_linkage", "POST", "/", {"reason": f"보호자 {PHONE} 취소 요청"},
                       eventId=event_id, linkageId=held.body["id"])
        await ops.call("create_grant", "POST", "/", {"agency": "police-112", "event": event_id, "cameras": [
            c["id"] for c in (await ops.call("list_cameras")).body["cameras"][:1]],
            "purpose": f"신고자 {PHONE} 위치 확인"})

        lines = await audit(ops)
        dumped = json.dumps(lines, ensure_ascii=False)
        for leak in (PHONE, "9876", "7777-8888", "최보호", "순찰차", "1234567", "hong.gd"):
            assert leak not in dumped, leak
        status = [(line["to"], line["noteChars"], line["noteMasked"]) for line in lines if line["action"] == "status"
                  and "noteChars" in line]
        assert sorted(status) == [("acknowledged", len(NOTE), True), ("dispatched", len("순찰차 2대 출동"), False)]
        # only ucity's own notes (ids) stay in lines: `linkage <id>`, `grant <id>`, `경보 종결 alarm closed: <id>`
        assert all(line["note"].startswith(("linkage lk-", "grant ", "경보 종결 alarm closed: "))
                   for line in lines if "note" in line)
        # the agency reads its own linkage's purpose and reason masked
        police = (await ops.call("get_event", role="police", eventId=event_id)).body
        assert PHONE not in json.dumps(police, ensure_ascii=False)
        assert police["linkages"][0]["reason"] == "보호자 010-****-5432 취소 요청"
        assert police["attachments"][0]["name"] == "신고자_010-****-5432.jpg"
        # the notes stay with the event (retention purges them with it)
        shown = (await ops.call("get_event", eventId=event_id)).body
        assert [n["text"] for n in shown["notes"]] == [NOTE, "순찰차 2대 출동"]
