"""Subscriptions and personal entities (QA10 F5, FIX-B of stop 26, ucity/ngsild/subscriptions.py `WITHHOLD`).

A subscription created (or last changed) with the token guard on by a caller without `personal:read` never carries
an entity of a personal type in a notification, however it is matched: an entity of several types selected through
its non-personal one, a personal type added to an entity later, a periodic (`timeInterval`) subscription, or what was
queued for the subscription before such a caller changed its endpoint. The entity is left out, as a query by that
caller would leave it out; `/health` counts it and one log line per subscription says so, never a value.

A started ucity on a fake clock, called through its framework-free handlers, notifying a real local receiver (the
`Receiver` of test_subscriptions.py), on both store backends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.api.test_subscriptions import WAIT_S, Receiver, receiver
from ucity.app import Ucity
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.core.http import Req, Resp
from ucity.ngsild.subscriptions import WITHHOLD
from ucity.ops.auth import ROLE_PERMISSIONS, Principal, Role

__all__ = ["receiver"]  # the fixture, imported for pytest

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TENANT = "urn:ngsi-ld:tenant:default"
SUBS = "/ngsi-ld/v1/subscriptions"
PHONE = "010-9876-5432"
WEARABLE = "urn:ngsi-ld:Device:wearable-1"  # a Device and a Person
PLAIN = "urn:ngsi-ld:Device:d0"
LATER = "urn:ngsi-ld:Device:d1"  # becomes a Person too
OPERATOR = Principal("op-1", Role.OPERATOR, ROLE_PERMISSIONS[Role.OPERATOR])
# A data pipeline's token: data:read and data:write without personal:read.
FEED = Principal("feed", Role.INGEST, ROLE_PERMISSIONS[Role.INGEST])
# Configured, so that the token registry knows them: a subscription's notifications follow the right of the token
# that last set it (ucity/ngsild/sub_owner.py), and a token the registry does not know counts as revoked.
TOKENS = [{"id": "op-1", "token": "o" * 32, "role": "operator"}, {"id": "feed", "token": "f" * 32, "role": "ingest"}]


def entity(entity_id: str, types: str | list[str], rate: int) -> dict[str, Any]:
    out: dict[str, Any] = {"id": entity_id, "type": types, "heartRate": {"type": "Property", "value": rate}}
    if "Person" in types:
        out["telephone"] = {"type": "Property", "value": PHONE}
    return out


class Broker:
    def __init__(self, ucity: Ucity, clock: FakeClock) -> None:
        self.ucity = ucity
        self.clock = clock

    async def call(self, handler: Any, method: str, path: str, body: Any, principal: Principal | None,
                   **path_params: str) -> Resp:
        req = Req(method=method, path=path, headers={"content-type": "application/json"},
                  body=orjson.dumps(body) if body is not None else b"", path_params=path_params, principal=principal)
        resp: Resp = await handler(req)
        return resp

    async def upsert(self, *entities: dict[str, Any]) -> None:
        resp = await self.call(self.ucity.ngsild.batch, "POST", "/ngsi-ld/v1/entityOperations/upsert",
                               list(entities), OPERATOR, op="upsert")
        assert resp.status in (201, 204), resp.body
        await self.ucity.publisher.drain()

    async def rate(self, entity_id: str, value: int) -> None:
        resp = await self.call(self.ucity.ngsild.update_attrs, "PATCH", f"/ngsi-ld/v1/entities/{entity_id}/attrs",
                               {"heartRate": {"type": "Property", "value": value}}, OPERATOR, entityId=entity_id)
        assert resp.status == 204, resp.body
        await self.ucity.publisher.drain()

    async def subscribe(self, body: dict[str, Any], principal: Principal | None) -> None:
        resp = await self.call(self.ucity.subscriptions.create, "POST", SUBS, body, principal)
        assert resp.status == 201, resp.body

    async def patch(self, sub_id: str, fragment: dict[str, Any], principal: Principal | None) -> None:
        resp = await self.call(self.ucity.subscriptions.update, "PATCH", f"{SUBS}/{sub_id}", fragment, principal,
                               subscriptionId=sub_id)
        assert resp.status == 204, resp.body

    def stored(self, sub_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.ucity.subscriptions.subs[(TENANT, sub_id)].doc
        return doc


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    clock = FakeClock(T0)
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"),
                             store={"group_commit_ms": 1.0, "exclusive": False},
                             server={"require_auth": True}, ops={"admin_token": "a" * 32, "tokens": TOKENS})
    ucity = Ucity(settings, clock=clock)
    await ucity.start()
    try:
        yield Broker(ucity, clock)
    finally:
        await ucity.stop()


def subscription(sub_id: str, uri: str, **members: Any) -> dict[str, Any]:
    return {"id": sub_id, "type": "Subscription", "entities": [{"type": "Device"}],
            "notification": {"endpoint": {"uri": uri}}, **members}


def notified(receiver: Receiver, path: str) -> list[str]:
    return [e["id"] for r in receiver.on(path) for e in r.body["data"]]


async def await_ids(receiver: Receiver, path: str, wanted: set[str]) -> None:
    """Until `path` was notified of every entity of `wanted` (queued notifications may come merged)."""
    def wait() -> None:
        with receiver._cond:
            receiver._cond.wait_for(lambda: wanted <= set(notified(receiver, path)), WAIT_S)

    await asyncio.to_thread(wait)
    assert wanted <= set(notified(receiver, path)), notified(receiver, path)


async def test_a_subscription_of_a_caller_without_personal_read_leaves_personal_entities_out(
        broker: Broker, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    await broker.upsert(entity(WEARABLE, ["Device", "Person"], 70), entity(PLAIN, "Device", 60),
                        entity(LATER, "Device", 50))
    await broker.subscribe(subscription("urn:ngsi-ld:Subscription:feed", f"{receiver.url}/feed",
                                        watchedAttributes=["heartRate"]), FEED)
    await broker.subscribe(subscription("urn:ngsi-ld:Subscription:byid", f"{receiver.url}/byid",
                                        entities=[{"type": "Device", "id": WEARABLE}]), FEED)
    await broker.subscribe(subscription("urn:ngsi-ld:Subscription:ops", f"{receiver.url}/ops",
                                        watchedAttributes=["heartRate"]), OPERATOR)
    assert broker.stored("urn:ngsi-ld:Subscription:feed")[WITHHOLD] is True
    assert WITHHOLD not in broker.stored("urn:ngsi-ld:Subscription:ops")
    caplog.set_level(logging.WARNING, logger="ucity.ngsild.subscriptions")
    await broker.rate(WEARABLE, 71)  # a Person, selected as a Device
    await broker.upsert(entity(LATER, ["Device", "Person"], 51))  # a personal type added later
    await broker.rate(PLAIN, 61)
    # The operator's subscription gets all three; the feed's only the plain Device (delivery is in order).
    await await_ids(receiver, "/ops", {WEARABLE, LATER, PLAIN})
    await receiver.await_("/feed", 1)
    assert notified(receiver, "/feed") == [PLAIN]
    assert receiver.on("/byid") == [] and PHONE not in str([r.body for r in receiver.on("/feed")])
    health = broker.ucity.subscriptions.health()
    assert health["personalWithheld"] == 3  # the wearable to /feed and /byid, the later Person to /feed
    lines = [r.getMessage() for r in caplog.records if "personal type" in r.getMessage()]
    assert len(lines) == 2 and all(PHONE not in line and WEARABLE not in line for line in lines)
    # The mark is stored, never shown.
    resp = await broker.call(broker.ucity.subscriptions.retrieve, "GET", f"{SUBS}/urn:ngsi-ld:Subscription:feed",
                             None, FEED, subscriptionId="urn:ngsi-ld:Subscription:feed")
    assert WITHHOLD not in str(resp.body)


async def test_a_change_by_a_caller_without_personal_read_marks_it_and_one_by_a_holder_lifts_it(
        broker: Broker, receiver: Receiver) -> None:
    await broker.upsert(entity(WEARABLE, ["Device", "Person"], 70), entity(PLAIN, "Device", 60))
    sub_id = "urn:ngsi-ld:Subscription:ops"
    await broker.subscribe(subscription(sub_id, f"{receiver.url}/ops", watchedAttributes=["heartRate"]), OPERATOR)
    # A token without personal:read points the operator's subscription at its own endpoint: no Person goes there.
    await broker.patch(sub_id, {"notification": {"endpoint": {"uri": f"{receiver.url}/stolen"}}}, FEED)
    assert broker.stored(sub_id)[WITHHOLD] is True
    await broker.rate(WEARABLE, 71)
    await broker.rate(PLAIN, 61)
    await receiver.await_("/stolen", 1)
    assert notified(receiver, "/stolen") == [PLAIN]
    await broker.patch(sub_id, {"notification": {"endpoint": {"uri": f"{receiver.url}/back"}}}, OPERATOR)
    assert WITHHOLD not in broker.stored(sub_id)
    await broker.rate(WEARABLE, 72)
    await receiver.await_("/back", 1)
    assert notified(receiver, "/back") == [WEARABLE]


async def test_periodic_notifications_of_a_caller_without_personal_read_leave_personal_entities_out(
        broker: Broker, receiver: Receiver) -> None:
    await broker.upsert(entity(WEARABLE, ["Device", "Person"], 70), entity(PLAIN, "Device", 60))
    await broker.subscribe(subscription("urn:ngsi-ld:Subscription:every", f"{receiver.url}/every",
                                        timeInterval=60), FEED)
    await broker.subscribe(subscription("urn:ngsi-ld:Subscription:ops", f"{receiver.url}/opsevery",
                                        timeInterval=60), OPERATOR)
    broker.clock.advance(60)
    await receiver.await_("/opsevery", 1)
    assert sorted(notified(receiver, "/opsevery")) == sorted([PLAIN, WEARABLE])
    await receiver.await_("/every", 1)
    assert notified(receiver, "/every") == [PLAIN]


async def test_what_was_held_before_the_mark_was_set_goes_out_without_personal_entities(
        broker: Broker, receiver: Receiver) -> None:
    await broker.upsert(entity(WEARABLE, ["Device", "Person"], 70), entity(PLAIN, "Device", 60))
    sub_id = "urn:ngsi-ld:Subscription:ops"
    await broker.subscribe(subscription(sub_id, f"{receiver.url}/first", watchedAttributes=["heartRate"],
                                        throttling=10), OPERATOR)
    await broker.rate(PLAIN, 61)  # sent at once: the throttling window starts
    await receiver.await_("/first", 1)
    await broker.rate(WEARABLE, 71)  # held by the window (rendered for the operator's subscription)
    await broker.rate(PLAIN, 62)
    await broker.patch(sub_id, {"notification": {"endpoint": {"uri": f"{receiver.url}/stolen"}}}, FEED)
    broker.clock.advance(10)  # the window ends: what it held goes to the new endpoint, without the Person
    got = await receiver.await_("/stolen", 1)
    assert [e["id"] for e in got[0].body["data"]] == [PLAIN]
    assert broker.ucity.subscriptions.health()["personalWithheld"] == 1


async def test_with_the_guard_off_nothing_is_marked(broker: Broker, receiver: Receiver) -> None:
    await broker.upsert(entity(WEARABLE, ["Device", "Person"], 70))
    await broker.subscribe(subscription("urn:ngsi-ld:Subscription:dev", f"{receiver.url}/dev",
                                        watchedAttributes=["heartRate"]), None)
    assert WITHHOLD not in broker.stored("urn:ngsi-ld:Subscription:dev")
    await broker.rate(WEARABLE, 71)
    await receiver.await_("/dev", 1)
    assert notified(receiver, "/dev") == [WEARABLE]
