"""An event package queued for an agency survives a stop: its outbox entry is stored (ucity/alarms/journal.py) and
the next start delivers it, with the same delivery id and the attempts already made, and marks the linkage
delivered. Real webhook receiver; both store backends; fake time."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.test_linkage import event_body, fire_and_police, nearest_ids
from ucity.alarms.journal import KIND
from ucity.ops.linkage import TOKEN_PLACEHOLDER


def record_event_saves(store: Any) -> list[tuple[list[str], list[str]]]:
    """Record each `save_ops_event` of `store` as (audit actions, kinds of the documents in its commit)."""
    save = store.save_ops_event
    calls: list[tuple[list[str], list[str]]] = []

    async def recording(row: Any, audit: Any, docs: Any = ()) -> None:
        calls.append(([line.action for line in audit], [kind for kind, _, _, _ in docs]))
        await save(row, audit, docs)

    store.save_ops_event = recording
    return calls


async def test_a_package_queued_at_a_stop_is_delivered_after_the_restart(make_ops: MakeOps,
                                                                         receiver: Receiver) -> None:
    receiver.status["/119"] = 503
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        await ops.settle()
        (refused,) = receiver.on("/119")
        [(_, _, entry)] = await ops.ucity.store.list_docs(KIND)
        assert (entry["channel"], entry["endpoint"], entry["entity"], entry["attempts"]) == (
            "agency", "fire-119", created.body["id"], 1)
        event = (await ops.call("get_event", eventId=created.body["id"])).body
        assert event["linkages"][0]["status"] == "queued"
    receiver.status["/119"] = 200
    async with make_ops(cameras=False, **fire_and_police(receiver)) as ops:
        await ops.settle()
        posted = receiver.on("/119")
        assert len(posted) == 2
        assert posted[1].headers["x-ucity-delivery"] == refused.headers["x-ucity-delivery"]
        assert posted[1].json["package"]["event"]["id"] == created.body["id"]
        assert posted[1].json["package"] == refused.json["package"]  # the package as built, cameras and links
        event = (await ops.call("get_event", eventId=created.body["id"])).body
        assert event["linkages"][0]["status"] == "delivered"
        assert await ops.ucity.store.list_docs(KIND) == []


async def test_a_delivered_package_leaves_no_entry(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        await ops.settle()
        assert len(receiver.on("/119")) == 1
        assert await ops.ucity.store.list_docs(KIND) == []


async def test_grant_notices_are_committed_with_the_grant_change(make_ops: MakeOps, receiver: Receiver) -> None:
    """A `grant-renewed` or `grant-revoked` notice's outbox entry is written in the commit that renews or revokes the
    grant: no crash between the two leaves a changed grant whose agency is never told. The renewal's entry keeps no
    token; the agency receives the new one."""
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": (await nearest_ids(ops))[:1],
            "purpose": "도주로 확인"})
        store = ops.ucity.store
        save = store.save_grant
        calls: list[tuple[list[str], list[Any]]] = []

        async def recording(row: Any, audit: Any, expected_version: Any = None, docs: Any = ()) -> bool:
            calls.append(([line.action for line in audit], list(docs)))
            return await save(row, audit, expected_version, docs)

        store.save_grant = recording  # type: ignore[method-assign]
        receiver.status["/112"] = 503  # held in the outbox: the stored entry can be read
        renewed = await ops.call("renew_grant", "POST", "/", {}, role="police", grantId=grant.body["id"])
        await ops.settle()
        [(actions, docs)] = calls
        assert actions == ["renewed"] and [kind for kind, _, _, _ in docs] == [KIND]
        [(_, _, entry)] = await store.list_docs(KIND)
        assert entry["notification"]["event"] == "grant-renewed"
        token = receiver.on("/112")[-1].json["package"]["grant"]["token"]
        assert token in renewed.body["links"][0]["stream"] and token not in orjson.dumps(entry).decode()
        receiver.status["/112"] = 200
        await ops.call("revoke_grant", "POST", "/", {"reason": "오인 신고"}, grantId=grant.body["id"])
        await ops.advance(2)
        assert calls[-1][0] == ["revoked"] and [kind for kind, _, _, _ in calls[-1][1]] == [KIND]
        notices = [r.json["event"] for r in receiver.on("/112") if r.json["event"].startswith("grant-")]
        assert notices == ["grant-renewed", "grant-renewed", "grant-revoked"]  # refused once, then sent; revoked
        assert await store.list_docs(KIND) == []


async def test_a_grant_change_that_is_not_committed_sends_no_notice(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": (await nearest_ids(ops))[:1]})
        store = ops.ucity.store

        async def failing(*args: Any, **kwargs: Any) -> bool:
            raise OSError("disk full")

        store.save_grant = failing  # type: ignore[method-assign]
        with pytest.raises(OSError):
            await ops.call("revoke_grant", "POST", "/", {"reason": "오인 신고"}, grantId=grant.body["id"])
        await ops.settle()
        assert [r.json["event"] for r in receiver.on("/112") if r.json["event"] == "grant-revoked"] == []
        assert await store.list_docs(KIND) == []


async def test_a_rejection_notice_is_committed_with_the_rejection(make_ops: MakeOps, receiver: Receiver) -> None:
    """An operator's rejection of a held request, and the event's end rejecting another: each `linkage-rejected`
    notice's entry is in the commit that rejects the linkage."""
    async with make_ops(**fire_and_police(receiver)) as ops:
        store = ops.ucity.store
        calls = record_event_saves(store)
        for end in ("operator", "event"):
            created = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "noise"),
                                     role="police")
            [held] = created.body["linkages"]
            calls.clear()
            if end == "operator":
                await ops.call("reject_linkage", "POST", "/", {"reason": "범죄 아님"}, eventId=created.body["id"],
                               linkageId=held["id"])
            else:
                await ops.call("event_status", "POST", "/", {"status": "cancelled"}, eventId=created.body["id"])
            await ops.settle()
            assert [kinds for actions, kinds in calls if "rejected" in actions] == [[KIND]], end
            notice = receiver.on("/112")[-1].json
            assert (notice["event"], notice["package"]["linkage"]["id"]) == ("linkage-rejected", held["id"]), end
        assert await store.list_docs(KIND) == []


async def test_the_package_entry_is_committed_with_the_queued_linkage(make_ops: MakeOps, receiver: Receiver) -> None:
    """QA4 F1: the linkage's `queued` and its package's outbox entry are one commit, so no crash between them can
    leave a queued linkage without a package to send."""
    async with make_ops(**fire_and_police(receiver)) as ops:
        store = ops.ucity.store
        calls = record_event_saves(store)
        await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        await ops.settle()
        queued = [call for call in calls if "queued" in call[0]]
        assert queued and queued[0][1] == [KIND]
        assert len(receiver.on("/119")) == 1 and await store.list_docs(KIND) == []


async def test_no_footage_token_is_stored_with_a_package_or_its_dead_letter(make_ops: MakeOps,
                                                                          receiver: Receiver) -> None:
    """QA4 F2: a footage token opens footage until its grant expires and ucity stores none: the outbox entry and the
    dead letter keep a placeholder; the agency receives the working token, signed again from the stored grant."""
    receiver.status["/119"] = 503
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        assert created.status == 201
        await ops.settle()
        (refused,) = receiver.on("/119")
        sent = refused.json["package"]
        token = sent["grant"]["token"]
        assert len(token) > 40 and token in sent["cameras"][0]["stream"]  # the agency gets working links
        [(_, _, entry)] = await ops.ucity.store.list_docs(KIND)
        stored = orjson.dumps(entry).decode()
        assert token not in stored and TOKEN_PLACEHOLDER in stored
        await ops.advance(2)
        await ops.advance(4)  # retries run out: a dead letter
        letters = await ops.ucity.alarms.dispatcher.dead_letters("urn:ngsi-ld:tenant:default")
        assert len(letters) == 1 and token not in orjson.dumps(letters).decode()
        assert receiver.on("/119")[-1].json["package"]["grant"]["token"] == token  # every attempt: the same token


async def test_a_dead_lettered_package_replayed_is_delivered_and_its_linkage_too(make_ops: MakeOps,
                                                                                 receiver: Receiver) -> None:
    receiver.status["/119"] = 503
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        await ops.settle()
        await ops.advance(2)
        await ops.advance(4)  # retries run out
        event = (await ops.call("get_event", eventId=created.body["id"])).body
        assert event["linkages"][0]["status"] == "failed"
        dispatcher = ops.ucity.alarms.dispatcher
        (letter,) = await dispatcher.dead_letters("urn:ngsi-ld:tenant:default")
        assert letter["notifier"] == "agency:fire-119" and letter["linkage"] == event["linkages"][0]["id"]
        receiver.status["/119"] = 200
        replayed = await dispatcher.replay("urn:ngsi-ld:tenant:default", letter["id"])
        assert replayed["queued"] is True
        await ops.settle()
        last = receiver.on("/119")[-1]
        assert last.headers["x-ucity-delivery"] == letter["id"]
        token = last.json["package"]["grant"]["token"]
        assert token != TOKEN_PLACEHOLDER and token in last.json["package"]["cameras"][0]["stream"]
        event = (await ops.call("get_event", eventId=created.body["id"])).body
        assert event["linkages"][0]["status"] == "delivered"
        assert await dispatcher.dead_letters("urn:ngsi-ld:tenant:default") == []
        assert await ops.ucity.store.list_docs(KIND) == []
