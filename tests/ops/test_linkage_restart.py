"""An event package queued for an agency survives a stop: its outbox entry is stored (ucity/alarms/journal.py) and
the next start delivers it, with the same delivery id and the attempts already made, and marks the linkage
delivered. Real webhook receiver; both store backends; fake time."""

from __future__ import annotations

from typing import Any

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.test_linkage import event_body, fire_and_police
from ucity.alarms.journal import KIND


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


async def test_a_package_whose_entry_cannot_be_stored_still_goes(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        store = ops.ucity.store
        put_docs = store.put_docs

        async def failing(kind: str, docs: list[Any]) -> None:
            if kind == KIND:
                raise OSError("disk full")
            await put_docs(kind, docs)

        store.put_docs = failing  # type: ignore[method-assign]
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        await ops.settle()
        assert len(receiver.on("/119")) == 1  # sent from memory: nothing dropped
        assert ops.ucity.alarms.health()["outboxStoreFailures"] == 1
        event = (await ops.call("get_event", eventId=created.body["id"])).body
        assert event["linkages"][0]["status"] == "delivered"
