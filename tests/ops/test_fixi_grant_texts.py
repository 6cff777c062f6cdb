"""FIX-I: the texts an operator types on a footage grant; on both backends (tests/ops/conftest.py `make_ops`).

* A grant's `purpose` and revocation `revokeReason` are masked for an agency (as an event's free text:
  `freetext.mask_free_text`) in every grant response it gets (list, read, its own renewal); operators
  (`personal:read`) see them as typed.
* Grant audit lines keep the length of those texts (`purposeChars`/`purposeMasked`, `reasonChars`/`reasonMasked`),
  never the text (the audit log cannot be rewritten by a data subject's redaction); a code reason (`event closed`)
  stays as it is.
* The grant statistics count the grants narrowed by a camera change (`narrowed`).
"""

from __future__ import annotations

from typing import Any

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import POINT
from tests.ops.test_linkage import audit, event_body, fire_and_police, nearest_ids

PURPOSE = "보호자 김철수 010-1234-5678 요청, 도주로 확인"
REASON = "오인 신고 (신고자 02-123-4567 확인)"
MASKED_PURPOSE = "보호자 김철수 010-****-5678 요청, 도주로 확인"
MASKED_REASON = "오인 신고 (신고자 02-***-4567 확인)"


async def test_an_agency_sees_the_grant_texts_masked_and_operators_as_typed(make_ops: MakeOps,
                                                                             receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
        cameras = (await nearest_ids(ops))[:2]
        created = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": cameras, "purpose": PURPOSE})
        assert created.status == 201 and created.body["purpose"] == PURPOSE  # the operator who typed it
        grant_id = created.body["id"]
        renewed = await ops.call("renew_grant", "POST", "/", {}, role="police", grantId=grant_id)
        assert renewed.status == 200 and renewed.body["purpose"] == MASKED_PURPOSE
        revoked = await ops.call("revoke_grant", "POST", "/", {"reason": REASON}, grantId=grant_id)
        assert (revoked.body["purpose"], revoked.body["revokeReason"]) == (PURPOSE, REASON)
        # the agency's grant-revoked notice (its webhook, the outbox, dead letters) carries the reason masked too
        notices = [r.json for r in receiver.on("/112") if r.json["event"] == "grant-revoked"]
        assert notices and notices[0]["package"]["grant"]["reason"] == MASKED_REASON
        assert "4567" in str(notices[0]) and "123-4567" not in str(notices[0])

        seen = (await ops.call("get_grant", role="police", grantId=grant_id)).body
        assert (seen["purpose"], seen["revokeReason"]) == (MASKED_PURPOSE, MASKED_REASON)
        [listed] = (await ops.call("list_grants", role="police", params={"event": event.body["id"]})).body["grants"]
        assert (listed["purpose"], listed["revokeReason"]) == (MASKED_PURPOSE, MASKED_REASON)
        operator = (await ops.call("get_grant", grantId=grant_id)).body
        assert (operator["purpose"], operator["revokeReason"]) == (PURPOSE, REASON)
        [op_listed] = (await ops.call("list_grants", params={"event": event.body["id"]})).body["grants"]
        assert (op_listed["purpose"], op_listed["revokeReason"]) == (PURPOSE, REASON)

        # the audit keeps how long the texts were and that they held personal data, never the texts
        lines = {line["action"]: line for line in await audit(ops, kind="grant", grant=grant_id)
                 if line["action"] in ("issued", "revoked")}
        issued, revoked_line = lines["issued"], lines["revoked"]
        assert (issued["purposeChars"], issued["purposeMasked"]) == (len(PURPOSE), True) and "purpose" not in issued
        assert (revoked_line["reasonChars"], revoked_line["reasonMasked"]) == (len(REASON), True)
        assert "reason" not in revoked_line
        for line in (issued, revoked_line):
            assert "김철수" not in str(line) and "5678" not in str(line) and "4567" not in str(line)


async def test_a_code_reason_stays_in_the_audit_line(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
        event_id = event.body["id"]
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event_id, "cameras": (await nearest_ids(ops))[:1]})
        [issued] = await audit(ops, kind="grant", grant=grant.body["id"], action="issued")
        assert "purpose" not in issued and issued["purposeChars"] == len("operator share")
        for status in ("dispatched", "closed"):
            assert (await ops.call("event_status", "POST", "/", {"status": status}, eventId=event_id)).status == 200
        [revoked] = await audit(ops, kind="grant", grant=grant.body["id"], action="revoked")
        assert revoked["reason"] == "event closed" and "reasonChars" not in revoked
        seen = (await ops.call("get_grant", role="police", grantId=grant.body["id"])).body
        assert seen["revokeReason"] == "event closed" and seen["purpose"] == "operator share"


async def test_grant_statistics_count_narrowed_grants(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        camera = {"id": "c-200", "lon": POINT[0] + 0.0003, "lat": POINT[1], "cameraType": "PTZ",
                  "streamURL": "rtsp://vms.guro.example/live/c-200"}
        assert (await ops.call("create_camera", "POST", "/", camera, role="admin")).status == 201
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
        other = next(c for c in await nearest_ids(ops) if c != "c-200")
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": ["c-200", other], "purpose": "추적"})
        assert grant.status == 201
        assert (await ops.call("delete_camera", "DELETE", "/", role="admin", cameraId="c-200")).status == 204
        stored: dict[str, Any] = (await ops.call("get_grant", grantId=grant.body["id"])).body
        assert stored["status"] == "active" and stored["cameras"] == [other]
        stats = (await ops.call("grant_stats")).body["agencies"]["police-112"]
        assert (stats["narrowed"], stats["revoked"]) == (1, 0)
