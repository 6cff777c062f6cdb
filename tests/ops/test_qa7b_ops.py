"""QA7 S2 findings of the operations centre: a direct share reaches its agency and lets it see the event (F4), an
agency's own renewals are bounded (F5), a 112 case number reported again gives its event (F9), and an IoT event
follows its alarm's close (F10)."""

from __future__ import annotations

from typing import Any

import orjson

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, Ops
from tests.ops.test_alarm_events import SENSOR, iot_events, matched, publish
from tests.ops.test_linkage import audit, event_body, fire_and_police, nearest_ids, open_link
from ucity.alarms.journal import KIND
from ucity.ops.linkage import TOKEN_PLACEHOLDER


async def _error(ops: Ops, name: str, method: str = "POST", body: Any = None, role: str = "operator",
                 **path: str) -> Any:
    try:
        return await ops.call(name, method, "/", body, role=role, **path)
    except Exception as exc:  # a UcityError: its status and ProblemDetails for the assertions
        return exc


# -- F4: a direct share -----------------------------------------------------------------------------------
async def test_a_direct_share_is_sent_to_the_agency_which_then_sees_the_event(make_ops: MakeOps,
                                                                               receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
        event_id = event.body["id"]
        assert event.body["linkages"] == []  # the police do not receive 112_DISPATCH automatically
        assert (await _error(ops, "get_event", "GET", role="police", eventId=event_id)).status == 404
        cameras = (await nearest_ids(ops))[:2]
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event_id, "cameras": cameras, "purpose": "용의자 도주로 확인"})
        assert grant.status == 201

        # the 112 room's webhook gets the package, as for a linkage, with footage links that open
        [sent] = [r.json for r in receiver.on("/112")]
        assert sent["event"] == "linkage" and sent["package"]["direct"] is True
        package = sent["package"]
        assert package["grant"]["id"] == grant.body["id"] and package["event"]["id"] == event_id
        assert package["service"] == "112_DISPATCH" and package["agency"] == "police-112"
        assert sorted(c["id"] for c in package["cameras"]) == sorted(cameras)
        assert (await open_link(ops, package["cameras"][0]["stream"], "police")).status == 307

        # the agency sees the event it got footage for (its list, the event, the package), only its own linkage
        seen = await ops.call("get_event", role="police", eventId=event_id)
        [link] = seen.body["linkages"]
        assert (link["id"], link["direct"], link["grant"], link["status"], link["requestedBy"]) == (
            package["linkage"], True, grant.body["id"], "delivered", "operator:op-kim")
        assert seen.body["status"] == "sharing"
        listed = await ops.call("list_events", role="police")
        assert event_id in [e["id"] for e in listed.body["events"]]
        again = await ops.call("linkage_package", role="police", eventId=event_id, linkageId=link["id"])
        assert again.body["grant"]["id"] == grant.body["id"]
        assert (await _error(ops, "get_event", "GET", role="fire", eventId=event_id)).status == 404
        lines = await audit(ops, event=event_id, kind="linkage")
        assert [(x["action"], x["actor"], x.get("direct")) for x in lines] == [
            ("queued", "operator:op-kim", True), ("delivered", "system", None)]


async def test_a_direct_share_for_an_agency_without_webhook_is_ready(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("DISASTER", "flood"))
        await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "disaster-room", "event": event.body["id"], "cameras": (await nearest_ids(ops))[:1]})
        seen = await ops.call("get_event", role="disaster", eventId=event.body["id"])
        assert [(x["status"], x["direct"]) for x in seen.body["linkages"]] == [("ready", True)]


# -- F5: bounded renewals ------------------------------------------------------------------------------------
async def test_an_agency_renews_its_grant_a_bounded_number_of_times(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver), grant_max_renewals=2) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "theft"))
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": (await nearest_ids(ops))[:1]})
        grant_id = grant.body["id"]
        for count in (1, 2):
            await ops.advance(10 * 60)
            renewed = await ops.call("renew_grant", "POST", "/", {}, role="police", grantId=grant_id)
            assert renewed.status == 200 and renewed.body["agencyRenewals"] == count
        await ops.advance(10 * 60)
        refused = await _error(ops, "renew_grant", body={}, role="police", grantId=grant_id)
        assert refused.status == 409
        problem = refused.to_problem()
        assert problem["reason"] == "renewal-limit" and problem["type"] == "urn:ucity:errors:RenewalRefused"
        assert "갱신 한도(2회)" in problem["detail"] and "renewal limit (2)" in problem["detail"]
        # an operator may still renew it; that does not count as the agency's
        by_operator = await ops.call("renew_grant", "POST", "/", {}, grantId=grant_id)
        assert (by_operator.body["renewals"], by_operator.body["agencyRenewals"]) == (3, 2)
        lines = await audit(ops, grant=grant_id, action="renewed")
        assert [(x["actor"], x["outcome"], x.get("reason")) for x in lines] == [
            ("agency:police-terminal", "ok", None), ("agency:police-terminal", "ok", None),
            ("agency:police-terminal", "denied", "renewal-limit"), ("operator:op-kim", "ok", None)]


async def test_an_agency_renewal_stops_at_the_longest_lifetime(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver), grant_max_total_minutes=60) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "theft"))
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": (await nearest_ids(ops))[:1]})
        grant_id = grant.body["id"]
        await ops.advance(20 * 60)
        first = await ops.call("renew_grant", "POST", "/", {}, role="police", grantId=grant_id)
        assert first.body["expiresAt"] == "2026-03-02T00:50:00.000000Z"
        await ops.advance(20 * 60)  # 00:40: 30 more minutes would pass 01:00, 60 minutes after the issue
        second = await ops.call("renew_grant", "POST", "/", {}, role="police", grantId=grant_id)
        assert second.body["expiresAt"] == "2026-03-02T01:00:00.000000Z"
        await ops.advance(5 * 60)
        refused = await _error(ops, "renew_grant", body={}, role="police", grantId=grant_id)
        assert refused.status == 409 and refused.to_problem()["reason"] == "lifetime-limit"
        assert "공유 최대 기간(60분)" in refused.to_problem()["detail"]
        by_operator = await ops.call("renew_grant", "POST", "/", {}, grantId=grant_id)
        assert by_operator.body["expiresAt"] == "2026-03-02T01:15:00.000000Z"


# -- F9: idempotent reports ---------------------------------------------------------------------------------
async def test_a_case_number_reported_again_gives_its_event(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        body = event_body("112_VIDEO", "robbery", sourceRef="2026-112-000123")
        first = await ops.call("create_event", "POST", "/api/v1/events", body, role="police")
        retry = await ops.call("create_event", "POST", "/api/v1/events", body, role="police")
        assert (first.status, retry.status) == (201, 200)
        assert retry.body["id"] == first.body["id"] and retry.headers["Location"] == f"/api/v1/events/{first.body['id']}"
        assert len(retry.body["linkages"]) == 1
        grants = await ops.call("list_grants")
        assert grants.body["total"] == 1
        assert len([r for r in receiver.on("/112") if r.json["event"] == "linkage"]) == 1
        events = await ops.call("list_events", params={"service": "112_VIDEO"})
        assert events.body["total"] == 1
        lines = await audit(ops, event=first.body["id"], kind="event", action="created")
        assert [(x["action"], x["outcome"]) for x in lines] == [("created", None), ("created", "duplicate")]
        # the same number from another agency is another case; a report without a number is always new
        fire = await ops.call("create_event", "POST", "/api/v1/events",
                              event_body("119_DISPATCH", "fire", sourceRef="2026-112-000123"), role="fire")
        assert fire.status == 201 and fire.body["id"] != first.body["id"]
        plain = [await ops.call("create_event", "POST", "/api/v1/events", event_body("DISASTER", "flood"))
                 for _ in range(2)]
        assert [p.status for p in plain] == [201, 201] and plain[0].body["id"] != plain[1].body["id"]


# -- F10: the event of a closed alarm ----------------------------------------------------------------------
async def _alarm_event(ops: Ops) -> tuple[str, dict[str, Any]]:
    await publish(ops, matched("warning"))
    alarm = ops.ucity.alarms.active_alarm(TENANT, SENSOR, "tilt-ladder")
    assert alarm is not None
    [event] = await iot_events(ops)
    return alarm.id, event


async def _close_alarm(ops: Ops, alarm_id: str, outcome: str) -> None:
    await ops.ucity.alarms.act(TENANT, alarm_id, "acknowledge", "operator:op-lee")
    await ops.ucity.alarms.act(TENANT, alarm_id, "close", "operator:op-lee", outcome=outcome)
    await ops.settle()


async def _trail(ops: Ops, event_id: str) -> list[tuple[Any, ...]]:
    history = (await ops.call("get_event", eventId=event_id)).body["history"]
    return [(h["action"], h["actor"], h.get("from"), h.get("to")) for h in history]


async def test_closing_its_alarm_closes_an_untouched_event(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        alarm_id, event = await _alarm_event(ops)
        assert event["status"] == "received"
        await _close_alarm(ops, alarm_id, "real")
        [after] = await iot_events(ops)
        assert after["status"] == "closed"
        assert await _trail(ops, event["id"]) == [
            ("created", "system", None, None), ("status", "system", "received", "acknowledged"),
            ("status", "system", "acknowledged", "closed")]
        history = (await ops.call("get_event", eventId=event["id"])).body["history"]
        assert history[-1]["note"] == f"경보 종결 alarm closed: {alarm_id} (real)"


async def test_a_false_alarm_cancels_its_event(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        alarm_id, event = await _alarm_event(ops)
        await _close_alarm(ops, alarm_id, "false-device")
        [after] = await iot_events(ops)
        assert after["status"] == "cancelled"
        assert await _trail(ops, event["id"]) == [
            ("created", "system", None, None), ("status", "system", "received", "cancelled")]


async def test_an_event_an_operator_took_up_stays_with_a_note(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        alarm_id, event = await _alarm_event(ops)
        await ops.call("event_status", "POST", "/", {"status": "acknowledged"}, eventId=event["id"])
        await _close_alarm(ops, alarm_id, "real")
        [after] = await iot_events(ops)
        assert after["status"] == "acknowledged"  # the operator's to close
        trail = await _trail(ops, event["id"])
        assert trail[-1] == ("alarm-closed", "system", None, None)
        history = (await ops.call("get_event", eventId=event["id"])).body["history"]
        assert history[-1]["alarm"] == alarm_id and history[-1]["alarmOutcome"] == "real"


async def test_a_direct_share_is_committed_with_its_linkage_and_survives_a_stop(make_ops: MakeOps,
                                                                               receiver: Receiver) -> None:
    """The package's outbox entry is written in the commit that adds the direct linkage, as a linkage's: a stop
    before the agency answered sends it at the next start, and the linkage ends `delivered`."""
    receiver.status["/112"] = 503
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
        store = ops.ucity.store
        save = store.save_ops_event
        commits: list[tuple[list[str], list[str]]] = []

        async def recording(row: Any, audit: Any, docs: Any = ()) -> Any:
            commits.append(([f"{line.kind}/{line.action}" for line in audit], [kind for kind, _, _, _ in docs]))
            return await save(row, audit, docs)

        store.save_ops_event = recording  # type: ignore[method-assign]
        await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": (await nearest_ids(ops))[:1]})
        assert commits[0] == (["linkage/queued", "event/status"], [KIND])
        [(_, _, entry)] = await store.list_docs(KIND)
        assert (entry["endpoint"], entry["entity"]) == ("police-112", event.body["id"])
        assert TOKEN_PLACEHOLDER in orjson.dumps(entry).decode()  # no footage token is stored
    receiver.status["/112"] = 200
    async with make_ops(cameras=False, **fire_and_police(receiver)) as ops:
        await ops.settle()
        delivered = [r.json for r in receiver.on("/112") if r.json["event"] == "linkage"]
        assert len(delivered) == 2 and delivered[1]["package"]["direct"] is True
        seen = await ops.call("get_event", role="police", eventId=event.body["id"])
        assert [x["status"] for x in seen.body["linkages"]] == ["delivered"]
