"""Alarm contact data (notifiers, recipient groups, escalation chains) changed through another process on the same
store (another API process, or the API process a worker shares the store with) is used here within the refresh
period (ucity/alarms/contacts.py `Contacts.start`): two `Contacts` on ONE store are two processes; the fake clock
moves the periodic re-read. On both backends (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.alarms.support import T0, TENANT, City, alarm_settings, matched
from tests.conftest import StoreFactory
from tests.locks import WatchedLock
from ucity.alarms.contacts import Contacts, EscalationChain, NotifierConfig, RecipientGroup
from ucity.core.clock import FakeClock
from ucity.store.base import Store


@pytest.fixture
async def two(make_store: StoreFactory) -> AsyncIterator[tuple[FakeClock, Contacts, Contacts]]:
    clock = FakeClock()
    store_a, store_b = make_store(clock, group_commit_ms=0.5), make_store(clock, group_commit_ms=0.5)
    await store_a.start()
    await store_b.start()
    a, b = Contacts(store_a, [], [], []), Contacts(store_b, [], [], [])
    await a.start(clock, 10)
    await b.start(clock, 10)
    yield clock, a, b
    await a.stop()
    await b.stop()
    await store_a.stop()
    await store_b.stop()


def hook(url: str, notifier_id: str = "room") -> NotifierConfig:
    return NotifierConfig(id=notifier_id, type="webhook", url=url)


async def test_contact_data_changed_on_one_process_is_used_on_the_other_within_the_refresh(two: Any) -> None:
    clock, a, b = two
    changed: list[tuple[str, str]] = []
    b.notifiers.on_change = lambda tenant, item_id: changed.append((tenant, item_id))
    await a.notifiers.put(TENANT, hook("http://one.example/hook"))
    await a.recipients.put(TENANT, RecipientGroup(id="g", notifiers=["room"]))
    await a.escalations.put(TENANT, EscalationChain.model_validate({"id": "c", "steps": [{"delay_s": 0, "group": "g"}]}))
    clock.advance(9.9)
    await b.settle()
    assert b.notifiers.get(TENANT, "room") is None  # not before the period
    clock.advance(0.1)
    await b.settle()
    room = b.notifiers.get(TENANT, "room")
    assert room is not None and room.url == "http://one.example/hook" and changed == [(TENANT, "room")]
    assert b.recipients.get(TENANT, "g") is not None
    chain = b.chain_for(TENANT, "tilt", "warning")
    assert chain is not None and chain.id == "c"
    # changed and deleted on A
    await a.notifiers.put(TENANT, hook("http://two.example/hook"))
    await a.recipients.delete(TENANT, "g")
    await a.escalations.delete(TENANT, "c")
    clock.advance(10)
    await b.settle()
    room = b.notifiers.get(TENANT, "room")
    assert room is not None and room.url == "http://two.example/hook" and changed == [(TENANT, "room")] * 2
    assert b.recipients.get(TENANT, "g") is None and b.chain_for(TENANT, "tilt", "warning") is None
    # nothing new: no hook called
    clock.advance(10)
    await b.settle()
    assert len(changed) == 2
    health = b.health()
    assert (health["notifiers"], health["recipients"], health["escalations"]) == (1, 0, 0)
    assert health["refreshes"] == 3 and health["failures"] == 0 and health["refreshS"] == 10


async def test_a_reread_does_not_undo_a_change_this_process_made_meanwhile(
        two: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, _, b = two
    lock = WatchedLock()
    monkeypatch.setattr(b.recipients, "_lock", lock)
    entered, release = asyncio.Event(), asyncio.Event()
    original = b.recipients._store.list_docs

    async def held(kind: str) -> Any:  # the re-read of the groups reads (none yet), then waits
        docs = await original(kind)
        if kind == "alarm-recipients" and not entered.is_set():
            entered.set()
            await release.wait()
        return docs

    monkeypatch.setattr(b.recipients._store, "list_docs", held)
    clock.advance(10)
    await entered.wait()
    loop = asyncio.get_running_loop()
    put = loop.create_task(b.recipients.put(TENANT, RecipientGroup(id="mine")))
    waiting = loop.create_task(lock.contended.wait())
    await asyncio.wait({put, waiting}, return_when=asyncio.FIRST_COMPLETED)  # the put as far as it goes
    waiting.cancel()
    release.set()
    await put
    await b.settle()
    assert b.recipients.get(TENANT, "mine") is not None


async def test_a_delete_of_an_entry_created_elsewhere_since_the_last_reread(two: Any) -> None:
    _, a, b = two
    await a.recipients.put(TENANT, RecipientGroup(id="g"))
    await b.recipients.delete(TENANT, "g")  # not a 404: B reads the store on a miss (an admin's call)
    assert await a.recipients._store.list_docs("alarm-recipients") == []


async def test_a_failing_reread_keeps_the_contacts_and_logs_once(
        two: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock, a, b = two
    await a.notifiers.put(TENANT, hook("http://one.example/hook"))
    clock.advance(10)
    await b.settle()
    store: Store = b.notifiers._store

    async def down(kind: str) -> Any:
        raise ConnectionError("store down")

    monkeypatch.setattr(store, "list_docs", down)
    with caplog.at_level(logging.INFO, logger="ucity.core.refresh"):
        for _ in range(3):
            clock.advance(10)
            await b.settle()
        assert b.notifiers.get(TENANT, "room") is not None
        assert b.health()["failures"] == 3 and "store down" in b.health()["lastError"]
        monkeypatch.undo()
        clock.advance(10)
        await b.settle()
    assert not b.health()["failing"]
    lines = [r for r in caplog.records if r.name == "ucity.core.refresh"]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO]
    assert "alarm contact data" in lines[0].getMessage()


async def test_the_dispatcher_follows_a_notifier_changed_through_another_process(
        tmp_path: Path, receiver_: Receiver) -> None:
    async with City.running(alarm_settings(tmp_path), T0) as city:
        contacts = city.alarms.contacts
        await contacts.start(city.clock, 10)  # (AlarmService.start, once wired; starting twice is harmless)
        try:
            other = Contacts(city.ucity.store, [], [], [])  # the alarms API of another process on the store
            await other.notifiers.put(TENANT, hook(f"{receiver_.url}/one"))
            await other.recipients.put(TENANT, RecipientGroup(id="g", notifiers=["room"]))
            await other.escalations.put(TENANT, EscalationChain.model_validate(
                {"id": "c", "steps": [{"delay_s": 0, "group": "g"}]}))

            async def advance() -> None:
                city.clock.advance(10)
                await contacts.settle()
                await city.settle()

            await advance()
            await city.publish(matched(entity="urn:ngsi-ld:Device:tilt-1", level="serious"))
            assert len(receiver_.on("/one")) == 1
            # the endpoint moved, on the other process: this one's dispatcher builds the notifier again
            await other.notifiers.put(TENANT, hook(f"{receiver_.url}/two"))
            await advance()
            await city.publish(matched(entity="urn:ngsi-ld:Device:tilt-2", level="serious"))
            assert len(receiver_.on("/one")) == 1 and len(receiver_.on("/two")) == 1
            # the chain deleted there: no notification here any more
            await other.escalations.delete(TENANT, "c")
            await advance()
            await city.publish(matched(entity="urn:ngsi-ld:Device:tilt-3", level="serious"))
            assert len(receiver_.on("/two")) == 1
        finally:
            await contacts.stop()


@pytest.fixture
def receiver_() -> Any:
    with Receiver() as running:
        yield running
