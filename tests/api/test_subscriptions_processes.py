"""NGSI-LD subscriptions across processes on one store (several API processes, or workers beside them): a
subscription created, changed or deleted through one process is known to the other within
`subscriptions.refresh_s`, and the other's delivery counters neither revive a deleted subscription nor take back
a change. Two started platforms on one store and one fake clock stand for the two processes; both store
backends; a real local HTTP receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_subscriptions import (
    B1,
    SUBS,
    T0,
    Broker,
    Receiver,
    fake_clock_settings,
    prop,
    receiver,
    subscription,
)
from ucity.app import Ucity
from ucity.core.clock import FakeClock
from ucity.core.errors import AlreadyExists, NotFound

__all__ = ["receiver"]  # the fixture, imported for pytest

REFRESH_S = 10.0


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[Broker, Broker]]:
    clock = FakeClock(T0)
    settings = fake_clock_settings(tmp_path, refresh_s=REFRESH_S)
    a, b = Ucity(settings, clock=clock), Ucity(settings, clock=clock)
    await a.start()
    await b.start()
    try:
        yield Broker(a, clock), Broker(b, clock)
    finally:
        await b.stop()
        await a.stop()


async def refreshed(*brokers: Broker) -> None:
    brokers[0].clock.advance(REFRESH_S)
    for broker in brokers:
        await broker.ucity.subscriptions.refresh.settle()


async def known(broker: Broker, sub_id: str) -> bool:
    try:
        await broker.status(sub_id)
    except NotFound:
        return False
    return True


async def stored(broker: Broker, sub_id: str) -> dict[str, Any] | None:
    docs = {key: doc for _, key, doc in await broker.ucity.store.list_docs("subscription")}
    return docs.get(sub_id)


async def test_a_subscription_made_on_one_process_notifies_from_the_other(two: tuple[Broker, Broker],
                                                                          receiver: Receiver) -> None:
    a, b = two
    await b.create(B1, temperature=prop(0))
    sub_id = await a.subscribe(subscription(f"{receiver.url}/x", watchedAttributes=["temperature"]))
    assert not await known(b, sub_id)  # not before the period
    await b.update(B1, temperature=prop(1))  # B commits (a worker, say): nobody told yet
    await refreshed(a, b)
    assert await known(b, sub_id)
    await b.update(B1, temperature=prop(2))
    assert [r.values for r in await receiver.await_("/x", 1)] == [[2]]
    assert b.ucity.subscriptions.health()["refresh"]["refreshes"] >= 1


async def test_a_change_and_a_deletion_reach_the_other_process(two: tuple[Broker, Broker], receiver: Receiver) -> None:
    a, b = two
    await b.create(B1, temperature=prop(0))
    sub_id = await a.subscribe(subscription(f"{receiver.url}/y"))
    await refreshed(a, b)
    await a.patch_sub(sub_id, {"isActive": False})  # paused through A
    await refreshed(a, b)
    assert (await b.status(sub_id))["isActive"] is False
    await b.update(B1, temperature=prop(1))
    resp = await a.call(a.ucity.subscriptions.delete, "DELETE", f"{SUBS}/{sub_id}", subscriptionId=sub_id)
    assert resp.status == 204
    await refreshed(a, b)
    assert not await known(b, sub_id)
    await b.update(B1, temperature=prop(2))
    assert receiver.received == []  # paused, then deleted: B never notified


async def test_counters_written_by_the_other_process_neither_revive_nor_take_back(
        two: tuple[Broker, Broker], receiver: Receiver) -> None:
    a, b = two
    await b.create(B1, temperature=prop(0))
    sub_id = await a.subscribe(subscription(f"{receiver.url}/z"))
    await refreshed(a, b)
    await b.update(B1, temperature=prop(1))
    await receiver.await_("/z", 1)
    await a.patch_sub(sub_id, {"throttling": 5})  # A changes it while B holds delivery counters to write
    await b.ucity.subscriptions._flush()  # B's counters, over the definition it still holds
    changed = await stored(a, sub_id)
    assert changed is not None and changed["throttling"] == 5  # not taken back
    await refreshed(a, b)  # B learns of the change; its counters are kept and written over the new definition
    assert b.ucity.subscriptions.subs[("urn:ngsi-ld:tenant:default", sub_id)].doc["throttling"] == 5
    await b.ucity.subscriptions._flush()
    b.ucity.subscriptions._dirty.add(("urn:ngsi-ld:tenant:default", sub_id))
    await b.ucity.subscriptions._flush()
    after = await stored(a, sub_id)
    assert after is not None and after["throttling"] == 5 and after["notification"]["timesSent"] == 1
    resp = await a.call(a.ucity.subscriptions.delete, "DELETE", f"{SUBS}/{sub_id}", subscriptionId=sub_id)
    assert resp.status == 204
    b.ucity.subscriptions._dirty.add(("urn:ngsi-ld:tenant:default", sub_id))
    await b.ucity.subscriptions._flush()  # before B's re-read: the deleted one is not written back
    assert await stored(a, sub_id) is None


async def test_one_id_created_on_both_processes_is_created_once(two: tuple[Broker, Broker], receiver: Receiver) -> None:
    a, b = two
    body = subscription(f"{receiver.url}/w", id="urn:ngsi-ld:Subscription:duty")
    await a.subscribe(body)
    with pytest.raises(AlreadyExists):  # B has not re-read yet: the store refuses the second
        await b.call(b.ucity.subscriptions.create, "POST", SUBS, body)
    await refreshed(a, b)
    assert await known(b, "urn:ngsi-ld:Subscription:duty")


async def test_a_periodic_subscription_held_by_both_is_sent_by_its_owner_only(two: tuple[Broker, Broker],
                                                                               receiver: Receiver) -> None:
    a, b = two
    a.ucity.subscriptions.owns = lambda tenant, key: False  # A as an API process beside workers
    await a.create(B1, temperature=prop(1))
    sub_id = await a.subscribe(subscription(f"{receiver.url}/every", timeInterval=60))
    await refreshed(a, b)  # both hold it now (B read it on its refresh, at 09:00:10)
    assert await known(b, sub_id)
    for period in (1, 2):  # A's periods fall due too (its timers run), but only B queues a notification
        a.clock.advance(60)
        await receiver.await_("/every", period)
        assert (a.sub(sub_id).notifications, b.sub(sub_id).notifications) == (0, period)
