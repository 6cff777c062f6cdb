"""Consistency of the operations centre's sharing state (QA pass of stop 20): a disabled or deleted agency keeps no
grant, token or footage link working; renewals and revocations of one grant are serialized; a crash between an
event's close and its grants' revocation is repaired at the next start; rejected requests are announced; a footage
link without `ops.grant_secret` is audited."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, Ops, agency, ops_settings
from tests.ops.test_linkage import audit, event_body, fire_and_police, link_parts, nearest_ids, open_link
from ucity.core.clock import to_iso
from ucity.core.errors import UcityError
from ucity.core.http import Req, Resp
from ucity.ops.grants import InvalidGrantTransition

GANGNAM = agency("gangnam-112", "police", ["112_DISPATCH"])


async def as_token(ops: Ops, name: str, token: str, params: dict[str, str] | None = None, **path: str) -> Any:
    """A handler called with an issued token (its value, not a role of tests/ops/support.py); a refusal returned."""
    req = Req("GET", "/api/v1/x", params={k: [v] for k, v in (params or {}).items()},
              headers={"authorization": f"Bearer {token}"}, path_params=path)
    try:
        resp: Resp = await getattr(ops.ucity.ops_api, name)(req)
        return resp
    except UcityError as exc:
        return exc
    finally:
        await ops.settle()


async def follow(ops: Ops, link: str, token: str) -> Any:
    camera, kind, grant = link_parts(link)
    return await as_token(ops, "camera_stream" if kind == "stream" else "camera_still", token, {"grant": grant},
                          cameraId=camera)


async def share_with(ops: Ops, agency_id: str) -> dict[str, Any]:
    event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
    grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
        "agency": agency_id, "event": event.body["id"], "cameras": (await nearest_ids(ops))[:2]})
    assert grant.status == 201
    body: dict[str, Any] = grant.body
    return body


# -- 1. agencies ----------------------------------------------------------------------------------------------
async def test_a_disabled_agency_loses_its_grants_and_its_tokens_stop_until_it_is_enabled(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        assert (await ops.call("create_agency", "POST", "/", GANGNAM, role="admin")).status == 201
        token = (await ops.call("create_token", "POST", "/", {"id": "gangnam-1", "role": "agency",
                                                               "agency": "gangnam-112"}, role="admin")).body["token"]
        grant = await share_with(ops, "gangnam-112")
        link = grant["links"][0]["stream"]
        assert (await follow(ops, link, token)).status == 307

        disabled = await ops.call("put_agency", "PUT", "/", {**GANGNAM, "enabled": False}, role="admin",
                                  agencyId="gangnam-112")
        assert disabled.status == 200 and disabled.body["enabled"] is False
        # its live grant is revoked, audited with the reason ...
        stored = (await ops.call("get_grant", grantId=grant["id"])).body
        assert (stored["status"], stored["revokeReason"], stored["revokedBy"]) == ("revoked", "agency disabled",
                                                                                   "admin:admin")
        # ... its links are refused (audited), and so is its token anywhere in the API (audited)
        denied = await follow(ops, link, token)
        assert denied.status == 403 and denied.extra["reason"] == "agency-disabled"
        refused = await as_token(ops, "list_events", token)
        assert refused.status == 403 and refused.extra["reason"] == "agency-disabled"
        assert "gangnam-112" in refused.detail
        assert (await as_token(ops, "me", token)).status == 403
        lines = await audit(ops, agency="gangnam-112")
        kinds = [(a["kind"], a["action"], a["outcome"], a.get("reason")) for a in lines]
        assert kinds[-4:] == [("grant", "revoked", "ok", "agency disabled"),
                              ("grant", "access", "denied", "agency-disabled"),
                              ("auth", "refused", "denied", "agency-disabled"),
                              ("auth", "refused", "denied", "agency-disabled")]
        assert lines[-2]["token"] == "gangnam-1" and lines[-2]["actor"] == "agency:gangnam-1"
        # nothing can be shared with it meanwhile
        with pytest.raises(UcityError) as refused_share:
            await share_with(ops, "gangnam-112")
        assert refused_share.value.status == 400

        # enabled again: its terminals work again without new tokens; revoked grants stay revoked
        await ops.call("put_agency", "PUT", "/", GANGNAM, role="admin", agencyId="gangnam-112")
        assert (await as_token(ops, "list_events", token)).status == 200
        again = await follow(ops, link, token)
        assert again.status == 403 and again.extra["reason"] == "revoked"


async def test_a_deleted_agency_loses_its_grants_and_its_issued_tokens_for_good(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        await ops.call("create_agency", "POST", "/", GANGNAM, role="admin")
        token = (await ops.call("create_token", "POST", "/", {"id": "gangnam-1", "role": "agency",
                                                               "agency": "gangnam-112"}, role="admin")).body["token"]
        grant = await share_with(ops, "gangnam-112")
        assert (await ops.call("delete_agency", "DELETE", "/", role="admin", agencyId="gangnam-112")).status == 204
        stored = (await ops.call("get_grant", grantId=grant["id"])).body
        assert (stored["status"], stored["revokeReason"]) == ("revoked", "agency deleted")
        assert (await as_token(ops, "list_events", token)).status == 401  # revoked, not only refused
        assert "gangnam-1" not in [t["id"] for t in (await ops.call("list_tokens", role="admin")).body]
        revoked = await audit(ops, kind="auth", action="token-revoked")
        assert [(a["token"], a["agency"], a["reason"], a["actor"]) for a in revoked] == [
            ("gangnam-1", "gangnam-112", "agency deleted", "admin:admin")]
        # an agency registered again under that id does not bring the old terminal back
        await ops.call("create_agency", "POST", "/", GANGNAM, role="admin")
        assert (await as_token(ops, "list_events", token)).status == 401
        assert (await follow(ops, grant["links"][0]["stream"], token)).status == 401


async def test_configured_agencies_stay_read_only(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(cameras=False, **fire_and_police(receiver)) as ops:
        for call in (ops.call("put_agency", "PUT", "/", {**fire_and_police(receiver)["agencies"][0],
                                                            "enabled": False}, role="admin", agencyId="fire-119"),
                     ops.call("delete_agency", "DELETE", "/", role="admin", agencyId="fire-119")):
            with pytest.raises(UcityError) as read_only:
                await call
            assert read_only.value.status == 409
        assert (await ops.call("list_events", role="fire")).status == 200


async def test_configured_tokens_of_unknown_agencies_are_reported_at_start(make_ops: MakeOps,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    # police-112 is configured; the test settings' fire and disaster terminals name agencies nobody configured
    async with make_ops(cameras=False, agencies=[agency("police-112", "police", ["112_VIDEO"])]) as ops:
        warnings = ops.center.health()["configWarnings"]
        assert [w.split(",")[0] for w in warnings] == [
            "ops.tokens: token fire-terminal names agency fire-119",
            "ops.tokens: token disaster-terminal names agency disaster-room"]
        assert all(w in caplog.text for w in warnings)
        refused = await as_token_role(ops, "list_events", "fire")
        assert refused.status == 403 and refused.extra["reason"] == "agency-unknown"
        assert (await ops.call("list_events", role="police")).status == 200
        # registering the agency through the API is enough: no restart, no configuration change
        await ops.call("create_agency", "POST", "/", agency("fire-119", "fire", ["119_DISPATCH"]), role="admin")
        assert (await ops.call("list_events", role="fire")).status == 200


async def as_token_role(ops: Ops, name: str, role: str) -> Any:
    try:
        return await ops.call(name, role=role)
    except UcityError as exc:
        return exc


async def test_a_disabled_agency_is_sent_nothing_and_its_linkage_is_refused_as_disabled(make_ops: MakeOps,
                                                                                          receiver: Receiver) -> None:
    coast = agency("coast-122", "other", ["112_VIDEO", "DISASTER"], receiver.url + "/coast")
    async with make_ops() as ops:
        await ops.call("create_agency", "POST", "/", coast, role="admin")
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "robbery"))
        event_id = created.body["id"]
        shared = await ops.call("request_linkage", "POST", "/", {"agency": "coast-122"}, eventId=event_id)
        assert shared.status == 201 and [r.json["event"] for r in receiver.on("/coast")] == ["linkage"]
        # disabling revokes its grant, and tells it nothing (QA2 D2: operations-center.md §1 and §4 now agree)
        await ops.call("put_agency", "PUT", "/", {**coast, "enabled": False}, role="admin", agencyId="coast-122")
        assert (await ops.call("get_grant", grantId=shared.body["grant"])).body["status"] == "revoked"
        # a linkage for it is refused because it is disabled, not for a service it does receive (QA2 6) ...
        with pytest.raises(UcityError) as refused:
            await ops.call("request_linkage", "POST", "/", {"agency": "coast-122"}, eventId=event_id)
        assert refused.value.status == 400 and refused.value.extra["reason"] == "agency-disabled"
        assert refused.value.detail == "기관 coast-122 사용 중지됨 / agency coast-122 is disabled"
        # ... audited as a denied request (not counted as a request in the statistics), with no linkage made
        [line] = await audit(ops, kind="linkage", outcome="denied")
        assert (line["action"], line["agency"], line["event"], line["reason"], line["service"], line["actor"]) == (
            "requested", "coast-122", event_id, "agency-disabled", "112_VIDEO", "operator:op-kim")
        assert (await ops.call("grant_stats")).body["agencies"]["coast-122"]["requested"] == 1
        assert len((await ops.call("get_event", eventId=event_id)).body["linkages"]) == 1
        # deleting it tells it nothing either
        await ops.call("delete_agency", "DELETE", "/", role="admin", agencyId="coast-122")
        assert [r.json["event"] for r in receiver.on("/coast")] == ["linkage"]


async def test_approving_a_held_linkage_of_a_disabled_agency_is_refused_before_anything_is_written(
        make_ops: MakeOps) -> None:
    coast = agency("coast-122", "other", ["112_VIDEO"], autoServices=["112_VIDEO"])
    async with make_ops() as ops:
        await ops.call("create_agency", "POST", "/", coast, role="admin")
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "noise"))
        event_id, [held] = created.body["id"], created.body["linkages"]
        assert (held["agency"], held["status"]) == ("coast-122", "held")
        await ops.call("put_agency", "PUT", "/", {**coast, "enabled": False}, role="admin", agencyId="coast-122")
        with pytest.raises(UcityError) as refused:
            await ops.call("approve_linkage", "POST", "/", {}, eventId=event_id, linkageId=held["id"])
        assert refused.value.status == 400 and refused.value.extra["reason"] == "agency-disabled"
        # still waiting (not left `approved` with nothing sent), the refusal audited, no grant issued
        [link] = (await ops.call("get_event", eventId=event_id)).body["linkages"]
        assert (link["status"], link["decidedAt"]) == ("held", None)
        lines = [(a["action"], a["outcome"], a.get("reason")) for a in await audit(ops, kind="linkage")]
        assert lines == [("requested", "held", "crime-type-not-listed"), ("approved", "denied", "agency-disabled")]
        assert (await ops.call("list_grants", params={"event": event_id})).body["total"] == 0
        # enabled again, the operator's approval goes through
        await ops.call("put_agency", "PUT", "/", coast, role="admin", agencyId="coast-122")
        approved = await ops.call("approve_linkage", "POST", "/", {}, eventId=event_id, linkageId=held["id"])
        assert approved.body["status"] == "ready"


# -- 2. one grant, one writer ------------------------------------------------------------------------------------
async def test_a_renewal_and_a_revocation_at_once_both_count(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        grant = await share_with(ops, "police-112")
        grants = ops.center.grants
        real_get = grants.store.get_grant
        reads: list[str] = []
        renew_read = asyncio.Event()
        revoke_read = asyncio.Event()
        release = asyncio.Event()

        async def get_grant(tenant: str, grant_id: str) -> Any:
            # The renewal reads the grant, then waits until the test lets it write: without a lock per grant, the
            # revocation reads the same state meanwhile, and whichever writes last undoes the other.
            reads.append("renew" if not reads else "revoke")
            doc = await real_get(tenant, grant_id)
            if len(reads) == 1:
                renew_read.set()
                await release.wait()
            else:
                revoke_read.set()
            return doc

        grants.store.get_grant = get_grant
        try:
            police = ops.center.auth.sources[0].lookup("police-token-0123456789abcdef")
            renewal = asyncio.create_task(grants.renew(TENANT, grant["id"], police))
            await renew_read.wait()
            revocation = asyncio.create_task(grants.revoke(TENANT, grant["id"], "operator:op-kim", "종결"))
            await asyncio.sleep(0)  # the revocation runs up to its first wait: the grant's lock, or its read
            if reads == ["renew", "revoke"]:
                await revoke_read.wait()  # (without the lock) its read is done before the renewal writes
            release.set()
            renewed = await renewal
            revoked = await revocation
        finally:
            grants.store.get_grant = real_get
        assert renewed.grant.renewals == 1 and revoked.renewals == 1  # the revocation saw the renewal
        stored = (await ops.call("get_grant", grantId=grant["id"])).body
        assert (stored["status"], stored["renewals"]) == ("revoked", 1)
        # and a second revocation is refused rather than written (and announced) again
        with pytest.raises(InvalidGrantTransition):
            await grants.revoke(TENANT, grant["id"], "operator:op-kim", "again")
        lines = await audit(ops, grant=grant["id"], kind="grant")  # (the direct share's linkage lines aside)
        assert [a["action"] for a in lines] == ["issued", "renewed", "revoked"]


# -- 3. a crash between closing an event and revoking its grants --------------------------------------------------
async def test_the_next_start_revokes_grants_a_crash_left_live(make_ops: MakeOps, receiver: Receiver,
                                                               tmp_path: Path) -> None:
    config = fire_and_police(receiver)
    async with make_ops(**config) as ops:
        closed = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        grant_id = closed.body["linkages"][0]["grant"]
        open_event = await share_with(ops, "police-112")

        async def crashed(*args: Any) -> list[Any]:
            return []  # the process died after the status change was written

        ops.center.grants.revoke_for_event = crashed
        for status in ("dispatched", "closed"):
            await ops.call("event_status", "POST", "/", {"status": status}, eventId=closed.body["id"])
        assert (await ops.call("get_grant", grantId=grant_id)).body["status"] == "active"
        # until the next start, the live grant's links are refused anyway (audited)
        link = receiver.on("/119")[0].json["package"]["cameras"][0]["stream"]
        denied = await open_link(ops, link, "fire")
        assert denied.status == 403 and denied.extra["reason"] == "event-closed"
    async with Ops.running(ops_settings(tmp_path, **config), cameras=False) as again:
        stored = (await again.call("get_grant", grantId=grant_id)).body
        assert (stored["status"], stored["revokeReason"], stored["revokedBy"]) == ("revoked", "event closed",
                                                                                   "system")
        lines = await audit(again, grant=grant_id, action="revoked")
        assert [(a["actor"], a["reason"]) for a in lines] == [("system", "event closed")]
        notices = [r.json["package"] for r in receiver.on("/119") if r.json["event"] == "grant-revoked"]
        assert notices == [{"grant": {"id": grant_id, "reason": "event closed", "cameras": stored["cameras"],
                                      "revokedAt": stored["revokedAt"], "expiresAt": stored["expiresAt"]},
                            "event": {"id": closed.body["id"]}}]
        # the grant of an open event is left alone
        assert (await again.call("get_grant", grantId=open_event["id"])).body["status"] == "active"


async def test_the_next_start_revokes_grants_of_an_agency_disabled_before_a_crash(make_ops: MakeOps,
                                                                                  tmp_path: Path) -> None:
    async with make_ops() as ops:
        await ops.call("create_agency", "POST", "/", GANGNAM, role="admin")
        grant = await share_with(ops, "gangnam-112")

        async def crashed(*args: Any) -> list[Any]:
            return []

        ops.center.grants.revoke_for_agency = crashed
        await ops.call("put_agency", "PUT", "/", {**GANGNAM, "enabled": False}, role="admin", agencyId="gangnam-112")
        assert (await ops.call("get_grant", grantId=grant["id"])).body["status"] == "active"
    async with Ops.running(ops_settings(tmp_path), cameras=False) as again:
        stored = (await again.call("get_grant", grantId=grant["id"])).body
        assert (stored["status"], stored["revokeReason"]) == ("revoked", "agency disabled")


# -- 4. rejected requests are announced -----------------------------------------------------------------------------
async def test_held_requests_rejected_by_the_close_or_an_operator_are_announced(make_ops: MakeOps,
                                                                                 receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        by_close = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "noise"),
                                  role="police")
        by_operator = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "noise"),
                                     role="police")
        [held_close], [held_operator] = by_close.body["linkages"], by_operator.body["linkages"]
        assert held_close["status"] == held_operator["status"] == "held"
        await ops.call("event_status", "POST", "/", {"status": "cancelled", "note": "오인 신고"},
                       eventId=by_close.body["id"])
        await ops.call("reject_linkage", "POST", "/", {"reason": "영상 불필요"}, eventId=by_operator.body["id"],
                       linkageId=held_operator["id"])
        notices = [r.json for r in receiver.on("/112")]
        assert [n["event"] for n in notices] == ["linkage-rejected", "linkage-rejected"]
        assert notices[0]["subject"] == {"ko": "연계 요청 거절", "en": "Linkage request rejected"}
        assert [n["package"] for n in notices] == [
            {"linkage": {"id": held_close["id"], "service": "112_VIDEO", "reason": "event cancelled",
                         "decidedBy": "operator:op-kim"}, "event": {"id": by_close.body["id"], "status": "cancelled"}},
            {"linkage": {"id": held_operator["id"], "service": "112_VIDEO", "reason": "영상 불필요",
                         "decidedBy": "operator:op-kim"}, "event": {"id": by_operator.body["id"], "status": "received"}}]
        # the close wrote the rejection with the status, in one write (one audit batch, no second event change)
        event = (await ops.call("get_event", eventId=by_close.body["id"])).body
        assert [(x["status"], x["reason"]) for x in event["linkages"]] == [("rejected", "event cancelled")]
        trail = [(h["kind"], h["action"]) for h in event["history"]]
        assert trail[-2:] == [("event", "status"), ("linkage", "rejected")]
        assert trail[-1] != trail[-2] and event["history"][-1]["at"] == event["history"][-2]["at"]


async def test_a_rejected_linkage_records_when_it_was_decided(make_ops: MakeOps, receiver: Receiver) -> None:
    # QA2 7: approved linkages carried decidedAt, rejected ones kept null (PLAT-R4: who decided, and when)
    async with make_ops(**fire_and_police(receiver)) as ops:
        by_operator, by_cancel, by_close = [
            (await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "noise"),
                            role="police")).body for _ in range(3)]
        await ops.advance(60)
        rejected = await ops.call("reject_linkage", "POST", "/", {"reason": "영상 불필요"},
                                  eventId=by_operator["id"], linkageId=by_operator["linkages"][0]["id"])
        assert (rejected.body["status"], rejected.body["decidedAt"]) == ("rejected", to_iso(ops.clock.now()))
        operator_time = to_iso(ops.clock.now())
        await ops.advance(60)
        await ops.call("event_status", "POST", "/", {"status": "cancelled"}, eventId=by_cancel["id"])
        cancel_time = to_iso(ops.clock.now())
        await ops.advance(60)
        for status in ("dispatched", "closed"):
            await ops.call("event_status", "POST", "/", {"status": status}, eventId=by_close["id"])
        close_time = to_iso(ops.clock.now())
        decided = [(await ops.call("get_event", eventId=e["id"])).body["linkages"][0]
                   for e in (by_operator, by_cancel, by_close)]
        assert [(x["status"], x["decidedBy"], x["decidedAt"]) for x in decided] == [
            ("rejected", "operator:op-kim", operator_time), ("rejected", "operator:op-kim", cancel_time),
            ("rejected", "operator:op-kim", close_time)]


# -- 5. no grant secret ------------------------------------------------------------------------------------------
async def test_a_footage_link_without_a_grant_secret_is_audited(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, grant_secret=None, agencies=[agency("police-112", "police", ["112_VIDEO"])]) \
            as ops:
        with pytest.raises(UcityError) as unavailable:
            await ops.call("camera_stream", params={"grant": "v1.e30.AAAA"}, role="police", cameraId="gate-1")
        assert unavailable.value.status == 503
        [line] = await audit(ops, action="access")
        assert (line["outcome"], line["reason"], line["camera"], line["actor"], line["footage"]) == (
            "failed", "grant-secret-not-configured", "gate-1", "agency:police-terminal", "stream")
        assert "v1.e30" not in str(line)  # never a token

