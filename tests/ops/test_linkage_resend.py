"""QA7 F12: an operator sends a failed linkage's package again (`POST /events/{id}/linkages/{id}/resend`), which only an
administrator could do before (the dead-letter replay, config:admin). Its dead letter is sent once: a resend then an
administrator's replay of the same letter delivers it one time. Real webhook receiver, fake time, both backends."""

from __future__ import annotations

from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, Ops
from tests.ops.test_linkage import audit, event_body, fire_and_police, link_parts
from ucity.core.errors import NotFound
from ucity.ops.auth import Forbidden
from ucity.ops.events import InvalidEventTransition
from ucity.ops.linkage import TOKEN_PLACEHOLDER
from ucity.ops.openapi import DOCS

RESEND = "/api/v1/events/{eventId}/linkages/{linkageId}/resend"


async def failed_linkage(ops: Ops, receiver: Receiver) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A 119 event whose package became a dead letter: (event id, its linkage, the dead letter)."""
    receiver.status["/119"] = 503
    created = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
    await ops.advance(2)
    await ops.advance(4)  # ops.retry of the tests: 3 attempts, then a dead letter
    event = (await ops.call("get_event", eventId=created.body["id"])).body
    (link,) = event["linkages"]
    assert link["status"] == "failed"
    (letter,) = await ops.ucity.alarms.dispatcher.dead_letters(TENANT)
    assert letter["linkage"] == link["id"]
    return created.body["id"], link, letter


async def resend(ops: Ops, event_id: str, linkage_id: str, role: str = "operator", body: Any = None) -> Any:
    return await ops.call("resend_linkage", "POST", RESEND, body, role=role, eventId=event_id, linkageId=linkage_id)


def delivered(receiver: Receiver) -> list[Any]:
    return [r for r in receiver.on("/119") if r.json.get("event") == "linkage"]


async def test_an_operator_resends_a_failed_package_once(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event_id, link, letter = await failed_linkage(ops, receiver)
        tries = len(delivered(receiver))
        receiver.status["/119"] = 200  # the 119 system is back
        resp = await resend(ops, event_id, link["id"], body={"reason": "119 시스템 복구"})
        assert resp.status == 202 and resp.body["status"] == "queued"
        assert resp.body["resentBy"] == "operator:op-kim" and resp.body["resends"] == 1
        await ops.settle()
        sent = delivered(receiver)[tries:]
        assert len(sent) == 1 and sent[0].headers["x-ucity-delivery"] == letter["id"]  # the same delivery id
        token = sent[0].json["package"]["grant"]["token"]
        assert token != TOKEN_PLACEHOLDER and link_parts(sent[0].json["package"]["cameras"][0]["stream"])[2] == token
        event = (await ops.call("get_event", eventId=event_id)).body
        assert event["linkages"][0]["status"] == "delivered"
        (line,) = await audit(ops, kind="linkage", action="resent")
        assert (line["actor"], line["event"], line["linkage"], line["deadLetter"], line["attempts"], line["reasonChars"],
                line["reasonMasked"]) == ("operator:op-kim", event_id, link["id"], letter["id"], 3,
                                          len("119 시스템 복구"), False)
        assert "reason" not in line  # the typed reason stays on the linkage, not in the audit log (FIX-H)
        assert line["at"]  # when
        # The administrator replays the same dead letter afterwards: it is gone, nothing is sent twice.
        with pytest.raises(NotFound):
            await ops.ucity.alarms.dispatcher.replay(TENANT, letter["id"])
        await ops.advance(60)
        assert len(delivered(receiver)[tries:]) == 1
        # Delivered now: a resend is refused.
        with pytest.raises(InvalidEventTransition) as refused:
            await resend(ops, event_id, link["id"])
        assert refused.value.status == 409 and refused.value.extra["reason"] == "linkage-not-failed"
        assert "failed" in refused.value.detail and "실패" in refused.value.detail


async def test_a_resend_after_an_administrators_replay_sends_nothing_more(make_ops: MakeOps,
                                                                          receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event_id, link, letter = await failed_linkage(ops, receiver)
        tries = len(delivered(receiver))
        receiver.status["/119"] = 200
        await ops.ucity.alarms.dispatcher.replay(TENANT, letter["id"])  # queued again; the linkage says failed still
        with pytest.raises(InvalidEventTransition) as refused:
            await resend(ops, event_id, link["id"])
        assert refused.value.extra["reason"] == "no-dead-letter"
        await ops.settle()
        assert len(delivered(receiver)[tries:]) == 1


async def test_a_second_resend_is_refused(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event_id, link, _ = await failed_linkage(ops, receiver)  # the receiver still answers 503
        first = await resend(ops, event_id, link["id"])
        assert first.status == 202
        with pytest.raises(InvalidEventTransition) as refused:
            await resend(ops, event_id, link["id"])
        assert refused.value.extra["reason"] == "linkage-not-failed"  # queued, not failed


async def test_an_agency_may_not_resend(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event_id, link, letter = await failed_linkage(ops, receiver)
        with pytest.raises(Forbidden) as refused:
            await resend(ops, event_id, link["id"], role="fire")
        assert refused.value.status == 403 and "events:manage" in refused.value.detail
        (line,) = await audit(ops, kind="auth", action="refused")
        assert line["permission"] == "events:manage" and line["path"] == RESEND
        assert [d["id"] for d in await ops.ucity.alarms.dispatcher.dead_letters(TENANT)] == [letter["id"]]


async def test_a_package_whose_grant_expired_is_not_resent(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event_id, link, letter = await failed_linkage(ops, receiver)
        await ops.advance(31 * 60)  # the grant's 30 minutes are over
        with pytest.raises(InvalidEventTransition) as refused:
            await resend(ops, event_id, link["id"])
        assert refused.value.extra["reason"] == "grant-expired" and "renew" in refused.value.detail
        assert [d["id"] for d in await ops.ucity.alarms.dispatcher.dead_letters(TENANT)] == [letter["id"]]


def test_the_route_is_documented() -> None:
    doc = DOCS[("POST", RESEND)]
    assert doc.statuses == (202,) and "409" in doc.problems and "403" in doc.problems
    assert "events:manage" in doc.description
