"""Queued alarm notifications are in the store: stored with the alarm change's commit, rewritten after each failed
attempt, deleted when delivered or dead-lettered, and sent again after a restart (same id, attempts counted).
Real webhooks to a local HTTP receiver; both store backends; fake time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.alarms.support import SENSOR, T0, TENANT, City, alarm_settings, matched
from ucity.alarms.journal import KIND, Journal, notification_doc, notification_fields
from ucity.alarms.notifiers.base import Notification, Recipient
from ucity.core.clock import FakeClock
from ucity.core.errors import NotFound
from ucity.ops.linkage import PackageNotification


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def hook(city: City, receiver: Receiver, members: bool = False) -> None:
    notifier = {"id": "room", "type": "webhook", "url": f"{receiver.url}/room"}
    assert (await city.collection("notifiers", "create", notifier)).status == 201
    group: dict[str, Any] = {"id": "duty", "notifiers": ["room"]}
    if members:
        group["members"] = [{"name": "김당직", "contacts": [{"notifier": "room", "address": "kim@example.org"}]}]
    assert (await city.collection("recipients", "create", group)).status == 201
    chain = {"id": "all", "steps": [{"delay_s": 0, "group": "duty"}]}
    assert (await city.collection("escalations", "create", chain)).status == 201


async def stored(city: City) -> list[dict[str, Any]]:
    return [doc for _, _, doc in await city.ucity.store.list_docs(KIND)]


async def test_a_notification_queued_at_a_stop_is_sent_after_the_restart(tmp_path: Path, receiver: Receiver) -> None:
    settings = alarm_settings(tmp_path)
    receiver.status["/room"] = 503
    async with City.running(settings, T0) as city:
        await hook(city, receiver)
        await city.publish(matched(level="serious"))
        alarm = city.active()
        (first,) = receiver.on("/room")  # tried once, refused
        (entry,) = await stored(city)
        assert (entry["channel"], entry["endpoint"], entry["entity"], entry["attempts"], entry["lastError"]) == (
            "alarm", "room", SENSOR, 1, "HTTP 503")
        assert entry["notification"]["alarm"]["id"] == alarm.id
        assert entry["notification"]["id"] == first.headers["x-ucity-delivery"]
        assert (city.alarms.health()["notificationsQueued"], city.alarms.health()["outboxStoreFailures"]) == (1, 0)
    receiver.status["/room"] = 200
    async with City.running(settings, T0 + timedelta(minutes=5)) as city:
        await city.settle()
        again = receiver.on("/room")
        assert len(again) == 2  # the refused attempt, then the one after the restart
        assert again[1].headers["x-ucity-delivery"] == first.headers["x-ucity-delivery"]  # same id: receivers dedupe
        assert again[1].json["alarm"]["id"] == alarm.id and again[1].json["group"] == "duty"
        assert await stored(city) == []  # delivered: the entry is gone
        assert city.alarms.dispatcher.describe(TENANT, "room")["delivery"]["sent"] == 1
    async with City.running(settings, T0 + timedelta(minutes=10)) as city:
        await city.settle()
        assert len(receiver.on("/room")) == 2  # nothing left to send


async def test_attempts_count_across_a_restart_and_a_dead_letter_removes_the_entry(tmp_path: Path,
                                                                                   receiver: Receiver) -> None:
    settings = alarm_settings(tmp_path)  # 3 attempts, 2 s doubling
    receiver.status["/room"] = 503
    async with City.running(settings, T0) as city:
        await hook(city, receiver)
        await city.publish(matched(level="serious"))
        await city.advance(2.0)
        (entry,) = await stored(city)
        assert entry["attempts"] == 2
    async with City.running(settings, T0 + timedelta(minutes=5)) as city:
        await city.settle()  # the third and last attempt, at once after the start
        assert len(receiver.on("/room")) == 3
        assert await stored(city) == []
        (letter,) = (await city.call("dead_letters")).body["deadLetters"]
        assert (letter["notifier"], letter["attempts"], letter["error"]) == ("room", 3, "HTTP 503")


async def test_delivered_notifications_leave_no_entry_and_each_recipient_has_its_own(city: City,
                                                                                     receiver: Receiver) -> None:
    await hook(city, receiver, members=True)
    await city.publish(matched(level="serious"))
    posted = receiver.on("/room")
    assert len(posted) == 2  # the member at the notifier's address, then the group endpoint
    assert {p.headers["x-ucity-delivery"] for p in posted} == {p.json["id"] for p in posted}
    assert await stored(city) == []
    assert city.alarms.dispatcher.journal.held == set()


async def test_the_entries_are_written_in_the_alarm_changes_commit(city: City, receiver: Receiver) -> None:
    """The notifications of a change reach the store in the same `save_alarms` call as the alarm's row."""
    await hook(city, receiver)
    store = city.ucity.store
    save_alarms = store.save_alarms
    calls: list[tuple[list[str], list[str]]] = []

    async def recording(saves: list[Any], docs: Any = ()) -> None:
        calls.append(([row.id for row, _ in saves], [key for _, _, key, _ in docs]))
        await save_alarms(saves, docs)

    store.save_alarms = recording  # type: ignore[method-assign]
    await city.publish(matched(level="serious"))
    alarm = city.active()
    (delivered,) = receiver.on("/room")
    # The raise and its first escalation step (both rows of the alarm), with the step's notification.
    assert calls[0] == ([alarm.id, alarm.id], [delivered.json["id"]])
    before = len(calls)
    await city.act(alarm.id, "acknowledge")  # the follow-up to the group already told: in the ack's own save
    # (then the record of its delivery in the alarm's history, a save of its own without notifications)
    assert calls[before][0] == [alarm.id] and len(calls[before][1]) == 1
    assert calls[-1] == ([alarm.id], [])
    assert receiver.on("/room")[-1].json["event"] == "acknowledged"


async def test_resume_sends_only_what_this_process_owns_and_does_not_hold(tmp_path: Path, receiver: Receiver) -> None:
    settings = alarm_settings(tmp_path)
    receiver.status["/room"] = 503
    async with City.running(settings, T0) as city:
        await hook(city, receiver)
        await city.publish(matched(level="serious"))
        dispatcher = city.alarms.dispatcher
        assert await dispatcher.resume(lambda tenant, entity: True) == 0  # held: in backoff in this process
        assert len(receiver.on("/room")) == 1
    async with City.running(settings, T0 + timedelta(minutes=1)) as city:
        await city.settle()
        assert len(receiver.on("/room")) == 2  # resumed at start, refused again
        dispatcher = city.alarms.dispatcher
        # As a worker that gains the partition while the previous owner still retries (here: forgetting that
        # this process holds it): the entry is queued a second time, and both copies go, with one id.
        dispatcher.journal.held.clear()
        assert await dispatcher.resume(lambda tenant, entity: entity != SENSOR) == 0  # another worker's entity
        receiver.status["/room"] = 200
        assert await dispatcher.resume(lambda tenant, entity: entity == SENSOR) == 1
        await city.advance(4.0)  # the retry in backoff, then the resumed copy behind it
        posted = receiver.on("/room")
        assert len(posted) == 4 and len({p.headers["x-ucity-delivery"] for p in posted}) == 1
        assert await stored(city) == []


async def test_an_entry_settled_while_resume_reads_the_store_is_not_sent_again(city: City, receiver: Receiver) -> None:
    """A delivery that ends while `resume` reads the entries (at start, behind a notice sent before it; at a worker's
    rebalance) leaves its entry in what the read returns; it is not queued a second time."""
    receiver.status["/room"] = 503
    await hook(city, receiver)
    await city.publish(matched(level="serious"))
    (entry,) = await stored(city)
    journal = city.alarms.dispatcher.journal
    settled = entry["notification"]["id"]
    assert journal.held == {settled}
    read = journal.pending

    async def settling_meanwhile() -> Any:
        found = await read()
        journal.held.discard(settled)  # as `Journal.done`, whose delete comes after the read
        return found

    journal.pending = settling_meanwhile  # type: ignore[method-assign]
    assert await city.alarms.dispatcher.resume(lambda tenant, entity: True) == 0
    assert len(receiver.on("/room")) == 1


async def test_a_settled_entry_stays_held_until_its_deletion_is_written(city: City, receiver: Receiver) -> None:
    """The other order of the race above: a delivery settles, and a resume reads before the entry's deletion is
    written. The notification is held until then, so the resume skips it (a start's sweep notice was sent twice)."""
    receiver.status["/room"] = 503
    await hook(city, receiver)
    await city.publish(matched(level="serious"))
    (entry,) = await stored(city)
    journal, store = city.alarms.dispatcher.journal, city.ucity.store
    settled = SimpleNamespace(id=entry["notification"]["id"], tenant=TENANT)
    written = asyncio.Event()
    delete = store.delete_doc

    async def slow_delete(*args: Any) -> None:
        await written.wait()
        await delete(*args)

    store.delete_doc = slow_delete  # type: ignore[method-assign]
    done = asyncio.get_running_loop().create_task(journal.done(settled))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert settled.id in journal.held  # the deletion is not written yet
    assert await city.alarms.dispatcher.resume(lambda tenant, entity: True) == 0
    written.set()
    await done
    assert settled.id not in journal.held and await stored(city) == []


async def test_an_unreadable_or_unknown_entry_is_left_in_the_store(city: City, caplog: pytest.LogCaptureFixture) -> None:
    store = city.ucity.store
    await store.put_doc(KIND, TENANT, "broken", {"channel": "alarm"})
    await store.put_doc(KIND, TENANT, "future", {"channel": "carrier-pigeon", "endpoint": "x", "entity": SENSOR,
                                                 "queuedAt": "2026-03-02T00:00:00Z", "attempts": 0,
                                                 "notification": {"id": "future", "tenant": TENANT}})
    assert await city.alarms.dispatcher.resume(lambda tenant, entity: True) == 0
    assert sorted(key for _, key, _ in await store.list_docs(KIND)) == ["broken", "future"]
    assert "unreadable" in caplog.text and "unknown channel carrier-pigeon" in caplog.text


def test_a_notification_and_a_package_survive_their_stored_form() -> None:
    plain = Notification("urn:ucity:notification:1", TENANT, "raised", "2026-03-02T00:00:00.000000Z",
                         {"id": "a1"}, {"ko": "제목", "en": "Subject"}, {"ko": "본문", "en": "Text"}, "duty", 1,
                         Recipient("김당직", "010-1234-5678", "ko"))
    assert Notification(**notification_fields(notification_doc(plain))) == plain
    package = PackageNotification("urn:ucity:notification:2", TENANT, "linkage", "2026-03-02T00:00:00.000000Z", {},
                                  {"ko": "s", "en": "s"}, {"ko": "t", "en": "t"}, package={"version": 1}, linkage="L1")
    assert PackageNotification(**notification_fields(notification_doc(package))) == package


def test_entries_keep_the_order_they_were_queued_in() -> None:
    journal = Journal(None, FakeClock(T0))  # type: ignore[arg-type]  # entries only: no store needed
    notes = [Notification(f"n{i}", TENANT, "raised", "t", {}, {}, {}) for i in range(3)]
    orders = [journal.entry("alarm", "room", SENSOR, n)[2]["order"] for n in notes]
    assert orders == sorted(orders) and len(set(orders)) == 3


async def test_a_failure_preparing_notifications_does_not_keep_the_alarm_from_being_saved(
        city: City, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    await hook(city, receiver)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in a group")

    city.alarms.dispatcher.prepare = broken
    await city.publish(matched(level="serious"))
    alarm = city.active()
    assert alarm is not None and await city.ucity.store.get_alarm(TENANT, alarm.id) is not None
    assert "notifications could not be prepared" in caplog.text and receiver.on("/room") == []


async def test_a_dead_letter_replayed_goes_again_with_its_id(city: City, receiver: Receiver) -> None:
    receiver.status["/room"] = 400  # a retry cannot help: a dead letter at once
    await hook(city, receiver)
    await city.publish(matched(level="serious"))
    (letter,) = (await city.call("dead_letters")).body["deadLetters"]
    assert await stored(city) == []
    receiver.status["/room"] = 200  # the receiver is fixed
    resp = await city.call("replay_dead_letter", "POST", "/", letterId=letter["id"])
    assert resp.status == 202 and resp.body == {"id": letter["id"], "notifier": "room", "queued": True}
    await city.settle()
    refused, sent = receiver.on("/room")
    assert sent.headers["x-ucity-delivery"] == refused.headers["x-ucity-delivery"] == letter["id"]
    assert sent.json["alarm"]["id"] == letter["notification"]["alarm"]["id"] and sent.json["group"] == "duty"
    assert (await city.call("dead_letters")).body["deadLetters"] == [] and await stored(city) == []
    with pytest.raises(NotFound):
        await city.call("replay_dead_letter", "POST", "/", letterId=letter["id"])


async def test_a_dead_letter_taken_while_a_replay_reads_it_is_not_sent_by_the_replay(city: City,
                                                                                     receiver: Receiver) -> None:
    """An operator's resend (ucity/ops) claims a dead letter by deleting it; an admin replay that read the letter
    just before must not send it a second time, nor leave an outbox entry that a restart would send."""
    receiver.status["/room"] = 400
    await hook(city, receiver)
    await city.publish(matched(level="serious"))
    (letter,) = (await city.call("dead_letters")).body["deadLetters"]
    receiver.status["/room"] = 200
    store = city.ucity.store
    reads = store.list_docs

    async def read_then_taken(kind: str) -> Any:
        docs = await reads(kind)
        if kind == "alarm-dead-letter":  # the resend's claim lands right after the replay read the letter
            await store.delete_doc(kind, TENANT, letter["id"])
        return docs

    store.list_docs = read_then_taken
    try:
        with pytest.raises(NotFound):
            await city.call("replay_dead_letter", "POST", "/", letterId=letter["id"])
    finally:
        store.list_docs = reads
    await city.settle()
    assert len(receiver.on("/room")) == 1  # only the first, refused attempt
    assert await stored(city) == []
