"""An event package queued for an agency survives a stop: its outbox entry is stored (ucity/alarms/journal.py) and
the next start delivers it, with the same delivery id and the attempts already made, and marks the linkage
delivered. Real webhook receiver; both store backends; fake time."""

from __future__ import annotations

from typing import Any

import orjson

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.test_linkage import event_body, fire_and_police, nearest_ids
from ucity.alarms.journal import KIND
from ucity.ops.linkage import TOKEN_PLACEHOLDER


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


async def test_a_notice_whose_entry_cannot_be_stored_still_goes(make_ops: MakeOps, receiver: Receiver) -> None:
    """A grant notice (stored on its own, after the grant's commit): if its entry cannot be written it is sent from
    memory, counted."""
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))
        grant = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": (await nearest_ids(ops))[:1],
            "purpose": "도주로 확인"})
        store = ops.ucity.store
        put_docs = store.put_docs

        async def failing(kind: str, docs: list[Any]) -> None:
            if kind == KIND:
                raise OSError("disk full")
            await put_docs(kind, docs)

        store.put_docs = failing  # type: ignore[method-assign]
        await ops.call("revoke_grant", "POST", "/", {"reason": "오인 신고"}, grantId=grant.body["id"])
        await ops.settle()
        notices = [r.json for r in receiver.on("/112") if r.json["event"] == "grant-revoked"]
        assert len(notices) == 1  # sent from memory: nothing dropped
        assert ops.ucity.alarms.health()["outboxStoreFailures"] == 1


async def test_the_package_entry_is_committed_with_the_queued_linkage(make_ops: MakeOps, receiver: Receiver) -> None:
    """QA4 F1: the linkage's `queued` and its package's outbox entry are one commit, so no crash between them can
    leave a queued linkage without a package to send."""
    async with make_ops(**fire_and_police(receiver)) as ops:
        store = ops.ucity.store
        save = store.save_ops_event
        calls: list[tuple[list[str], list[str]]] = []

        async def recording(row: Any, audit: Any, docs: Any = ()) -> None:
            calls.append(([line.action for line in audit], [kind for kind, _, _, _ in docs]))
            await save(row, audit, docs)

        store.save_ops_event = recording  # type: ignore[method-assign]
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
