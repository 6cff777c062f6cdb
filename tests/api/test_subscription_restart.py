"""NGSI-LD notifications survive a restart (QA11 leftover; ucity/ngsild/saved.py).

A started `Ucity` on a fake clock, stopped and started again on the same store (both backends), notifying a real
local receiver: what was queued while the receiver was down, and what a throttling window held, is written to the
store at a graceful stop and sent at the next start, in order and with the same notification ids; during an outage
the queue is written through (the SIGKILL case is tests/integration/test_subscription_crash.py); a healthy
subscription writes nothing there. Across processes (two platforms on one store), only the owner sends a saved
queue again, and never one a running process still holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.api.test_subscriptions import (
    B1,
    T0,
    WAIT_S,
    Broker,
    Receiver,
    _stats_after,
    fake_clock_settings,
    prop,
    receiver,
    subscription,
)
from ucity.app import Ucity
from ucity.core.clock import FakeClock
from ucity.ngsild.saved import HOLDER_KIND, KIND
from ucity.store import open_store

__all__ = ["receiver"]  # the fixture, imported for pytest

REFRESH_S = 10.0


async def started(tmp_path: Path, clock: FakeClock | None = None, **subscriptions: Any) -> Broker:
    clock = clock or FakeClock(T0)
    ucity = Ucity(fake_clock_settings(tmp_path, refresh_s=REFRESH_S, **subscriptions), clock=clock)
    await ucity.start()
    return Broker(ucity, clock)


async def saved_docs(broker: Broker) -> list[dict[str, Any]]:
    docs = [doc for _, _, doc in await broker.ucity.store.list_docs(KIND)]
    return sorted(docs, key=lambda d: (d["queuedAt"], d["order"]))


async def until(check: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def first_of_each_id(got: list[Any]) -> list[Any]:
    """What a receiver that de-duplicates on the notification id keeps, in order of arrival."""
    seen: dict[str, Any] = {}
    for r in got:
        seen.setdefault(r.body["id"], r)
    return list(seen.values())


async def test_what_a_down_receiver_missed_is_sent_after_a_restart_in_order_once_per_id(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.failures["/down"] = 1000
    broker = await started(tmp_path)
    try:
        await broker.create(B1, temperature=prop(0))
        sub_id = await broker.subscribe(subscription(f"{receiver.url}/down"))
        await broker.update(B1, temperature=prop(1))
        await _stats_after(broker, sub_id, attempts=1)  # failed: waiting for its retry (the fake clock holds it)
        for value in (2, 3):
            await broker.update(B1, temperature=prop(value))  # queued behind it, written through
        assert broker.ucity.subscriptions.health()["saved"] == 3
        failed_id = receiver.on("/down")[0].body["id"]
    finally:
        await broker.ucity.stop()
    docs = await stored_docs(tmp_path)
    assert [(d["data"][0]["temperature"]["value"], d["attempts"], d["released"]) for d in docs] == [
        (1, 1, True), (2, 0, True), (3, 0, True)]
    assert docs[0]["id"] == failed_id and {d["subscription"] for d in docs} == {sub_id}

    receiver.failures["/down"] = 0  # the receiver is back
    broker = await started(tmp_path)
    try:
        got = await receiver.await_("/down", 4)  # the failed attempt, then the three, resent
        kept = first_of_each_id(got)
        assert [r.values for r in kept] == [[1], [2], [3]]
        assert [r.body["id"] for r in got[1:]] == [d["id"] for d in docs]  # the same ids, in order
        assert len(got) == 4  # once each (the first had failed)
        await until(lambda: _empty(broker), "the delivered notifications' saved copies were not deleted")
        await broker.update(B1, temperature=prop(4))  # newer ones follow
        assert [r.values for r in await receiver.await_("/down", 5)][-1] == [4]
        assert broker.ucity.subscriptions.health()["saved"] == 0
    finally:
        await broker.ucity.stop()


async def stored_docs(tmp_path: Path) -> list[dict[str, Any]]:
    """The saved notifications in the store, read with no ucity started (a start would send them)."""
    store = open_store(fake_clock_settings(tmp_path))
    await store.start()
    try:
        docs = [doc for _, _, doc in await store.list_docs(KIND)]
    finally:
        await store.stop()
    return sorted(docs, key=lambda d: (d["queuedAt"], d["order"]))


async def _empty(broker: Broker) -> bool:
    return not await saved_docs(broker)


async def test_saved_attempts_count_towards_max_retries_after_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    receiver.failures["/flaky"] = 1000
    broker = await started(tmp_path, max_retries=2)
    try:
        await broker.create(B1, temperature=prop(0))
        sub_id = await broker.subscribe(subscription(f"{receiver.url}/flaky"))
        await broker.update(B1, temperature=prop(1))
        await _stats_after(broker, sub_id, attempts=1)
        broker.clock.advance(1)
        await _stats_after(broker, sub_id, attempts=2)  # 2 of its 3 attempts made
    finally:
        await broker.ucity.stop()
    broker = await started(tmp_path, max_retries=2)
    try:
        await receiver.await_("/flaky", 3)  # its last attempt, at once after the start; then abandoned
        await until(lambda: _abandoned(broker), "not abandoned after its last attempt")
        await until(lambda: _empty(broker), "the abandoned notification's saved copy was not deleted")
        assert len(receiver.on("/flaky")) == 3
    finally:
        await broker.ucity.stop()


async def _abandoned(broker: Broker) -> bool:
    return bool(broker.ucity.subscriptions.abandoned == 1)


async def test_a_throttled_change_at_shutdown_is_sent_after_the_start(tmp_path: Path, receiver: Receiver) -> None:
    broker = await started(tmp_path)
    try:
        await broker.create(B1, temperature=prop(0))
        await broker.subscribe(subscription(f"{receiver.url}/thr", throttling=60))
        await broker.update(B1, temperature=prop(1))
        await receiver.await_("/thr", 1)
        await broker.update(B1, temperature=prop(2))  # inside the window: held until it ends
    finally:
        await broker.ucity.stop()
    assert [r.values for r in receiver.on("/thr")] == [[1]]
    broker = await started(tmp_path)
    try:
        got = await receiver.await_("/thr", 2)
        assert [r.values for r in got] == [[1], [2]]
        await until(lambda: _empty(broker), "the throttled notification's saved copy was not deleted")
    finally:
        await broker.ucity.stop()


async def test_a_healthy_subscription_writes_no_saved_notification(tmp_path: Path, receiver: Receiver) -> None:
    broker = await started(tmp_path)
    kinds: list[str] = []
    store = broker.ucity.store
    put_doc, put_docs = store.put_doc, store.put_docs

    async def spy_put_doc(kind: str, *args: Any) -> None:
        kinds.append(kind)
        await put_doc(kind, *args)

    async def spy_put_docs(kind: str, *args: Any) -> None:
        kinds.append(kind)
        await put_docs(kind, *args)

    store.put_doc, store.put_docs = spy_put_doc, spy_put_docs  # type: ignore[method-assign]
    try:
        await broker.create(B1, temperature=prop(0))
        await broker.subscribe(subscription(f"{receiver.url}/ok"))
        for value in range(1, 21):
            await broker.update(B1, temperature=prop(value))
        got = await receiver.await_("/ok", 1)
        while [v for r in got for v in r.values][-1] != 20:
            await asyncio.sleep(0.01)
            got = receiver.on("/ok")
        assert [v for r in got for v in r.values] == list(range(1, 21))
        broker.clock.advance(REFRESH_S)  # a re-read: no holder document either
        await broker.ucity.subscriptions.refresh.settle()
        assert KIND not in kinds and HOLDER_KIND not in kinds
        assert broker.ucity.subscriptions.health()["saved"] == 0
    finally:
        await broker.ucity.stop()
    assert KIND not in kinds  # nothing pending at the stop: nothing written


async def test_an_outage_that_ends_deletes_what_it_saved_and_saves_no_more(tmp_path: Path,
                                                                           receiver: Receiver) -> None:
    receiver.failures["/blip"] = 1
    broker = await started(tmp_path)
    try:
        await broker.create(B1, temperature=prop(0))
        sub_id = await broker.subscribe(subscription(f"{receiver.url}/blip"))
        await broker.update(B1, temperature=prop(1))
        await _stats_after(broker, sub_id, attempts=1)
        await until(lambda: _count(broker, 1), "the failed notification was not written through")
        broker.clock.advance(1)  # the retry is answered
        await receiver.await_("/blip", 2)
        await until(lambda: _empty(broker), "the delivered notification's saved copy was not deleted")
        await broker.update(B1, temperature=prop(2))
        await receiver.await_("/blip", 3)
        assert broker.ucity.subscriptions.health()["saved"] == 0
        assert await saved_docs(broker) == []
    finally:
        await broker.ucity.stop()


async def _count(broker: Broker, n: int) -> bool:
    return len(await saved_docs(broker)) == n


async def test_only_the_owner_resends_a_released_queue_and_never_a_live_holders(tmp_path: Path,
                                                                                receiver: Receiver) -> None:
    """Two processes on one store: `api` owns no subscription (an API process beside workers), `worker` owns them.
    A queue `api` saved at its graceful stop is sent by `worker` at its next re-read; one `api` holds while it runs
    (an outage) is not."""
    clock = FakeClock(T0)
    receiver.failures["/x"] = 1000
    worker = await started(tmp_path, clock)
    api = await started(tmp_path, clock)
    api.ucity.subscriptions.owns = lambda tenant, key: False
    try:
        await api.create(B1, temperature=prop(0))
        sub_id = await api.subscribe(subscription(f"{receiver.url}/x"))
        await api.update(B1, temperature=prop(1))  # api commits and notifies: the receiver is down
        await _stats_after(api, sub_id, attempts=1)
        await api.update(B1, temperature=prop(2))
        await until(lambda: _count(worker, 2), "the outage was not written through")
        clock.advance(REFRESH_S)  # both re-read: api is alive and holds them, worker does not take them
        await worker.ucity.subscriptions.refresh.settle()
        await api.ucity.subscriptions.refresh.settle()
        assert worker.ucity.subscriptions.health()["saved"] == 0
        await api.ucity.stop()
        before = len(receiver.on("/x"))  # its failed attempts (the first, and its retries meanwhile)
        receiver.failures["/x"] = 0
        clock.advance(REFRESH_S)
        await worker.ucity.subscriptions.refresh.settle()  # the released queue: the owner sends it
        got = first_of_each_id(await receiver.await_("/x", before + 2))
        assert len(receiver.on("/x")) == before + 2
        assert [r.values for r in got] == [[1], [2]]
        await until(lambda: _empty(worker), "the owner did not delete what it delivered")
    finally:
        await worker.ucity.stop()
