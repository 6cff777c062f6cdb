"""Webhooks to a real local HTTP receiver: signature, retries with backoff in fake time, dead
letters in the API, and a receiver that is down delaying nothing else."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.alarms.conftest import free_port
from tests.alarms.receiver import Receiver
from tests.alarms.support import SECRET, City, matched
from ucity.alarms.notifiers.webhook import verify


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def hooks(city: City, receiver: Receiver, down_url: str) -> None:
    for notifier in ({"id": "ok", "type": "webhook", "url": f"{receiver.url}/ok", "headers": {"X-City": "guro"}},
                     {"id": "down", "type": "webhook", "url": down_url},
                     {"id": "refusing", "type": "webhook", "url": f"{receiver.url}/refuse"}):
        assert (await city.collection("notifiers", "create", notifier)).status == 201
    group = {"id": "agencies", "notifiers": ["ok", "down", "refusing"]}
    assert (await city.collection("recipients", "create", group)).status == 201
    chain = {"id": "all", "steps": [{"delay_s": 0, "group": "agencies"}]}
    assert (await city.collection("escalations", "create", chain)).status == 201


async def test_signed_posts_retries_and_dead_letters(city: City, receiver: Receiver) -> None:
    receiver.status["/refuse"] = 400
    down_url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    await hooks(city, receiver, down_url)
    started = time.monotonic()
    await city.publish(matched(level="serious"))
    alarm = city.active()

    (got,) = receiver.on("/ok")
    assert verify(SECRET.encode(), got.body, got.headers["x-ucity-signature"])
    assert got.headers["x-ucity-signature"].startswith("sha256=") and got.headers["x-city"] == "guro"
    assert got.headers["x-ucity-timestamp"] == str(int(city.clock.now().timestamp()))
    assert not verify(b"another-secret", got.body, got.headers["x-ucity-signature"])
    body = got.json
    assert (body["event"], body["alarm"]["id"], body["alarm"]["level"], body["group"], body["sentAt"]) == (
        "raised", alarm.id, "serious", "agencies", "2026-03-02T00:00:00.000000Z")
    assert body["subject"] == {"ko": f"[심각] 경보 발생: tilt @ {alarm.entity_id}",
                               "en": f"[Serious] Alarm raised: tilt @ {alarm.entity_id}"}
    assert body["id"] == got.headers["x-ucity-delivery"]

    down = city.alarms.dispatcher.outbox("urn:ngsi-ld:tenant:default", "down")
    assert (down.stats.failed_attempts, down.stats.state) == (1, "backoff")
    # The down endpoint is waiting for its retry; the others are not held up by it.
    await city.publish(matched(entity="urn:ngsi-ld:Device:other", level="warning"))
    assert len(receiver.on("/ok")) == 2
    assert time.monotonic() - started < 5.0  # no real waiting: backoff runs on the fake clock

    await city.advance(1.9)
    assert down.stats.failed_attempts == 1
    await city.advance(0.2)
    assert down.stats.failed_attempts == 2  # retried 2 s after the first failure
    await city.advance(4.0)  # then 4 s later: the third and last attempt; the next notification starts
    assert (down.stats.dead, down.stats.failed_attempts) == (1, 4)
    await city.advance(2.0)  # (each retry is armed after the previous attempt failed: one advance each)
    await city.advance(4.0)
    assert (down.stats.dead, down.stats.failed_attempts, down.queued) == (2, 6, 0)

    letters = (await city.call("dead_letters")).body["deadLetters"]
    assert sorted((d["notifier"], d["attempts"], d["error"][:12]) for d in letters) == [
        ("down", 3, "ConnectError"), ("down", 3, "ConnectError"), ("refusing", 1, "HTTP 400"), ("refusing", 1, "HTTP 400")]
    assert letters[0]["notifier"] == "down" and letters[0]["notification"]["alarm"]["entity_id"] == "urn:ngsi-ld:Device:other"
    assert {d["notification"]["alarm"]["id"] for d in letters} == {alarm.id, city.active("urn:ngsi-ld:Device:other").id}
    assert city.alarms.dispatcher.describe("urn:ngsi-ld:tenant:default", "ok")["delivery"]["sent"] == 2
    shown = {n["id"]: n for n in (await city.collection("notifiers", "list")).body}
    assert shown["ok"]["headers"] == {"X-City": "***"} and shown["ok"]["signed"] is True
    assert SECRET not in str(shown)


async def test_a_receiver_that_comes_back_gets_the_retry(city: City, receiver: Receiver) -> None:
    receiver.status["/flaky"] = 503
    assert (await city.collection("notifiers", "create", {"id": "flaky", "type": "webhook",
                                                          "url": f"{receiver.url}/flaky"})).status == 201
    assert (await city.collection("recipients", "create", {"id": "g", "notifiers": ["flaky"]})).status == 201
    assert (await city.collection("escalations", "create", {"id": "c", "steps": [{"delay_s": 0, "group": "g"}]})).status == 201
    await city.publish(matched(level="caution"))
    assert len(receiver.on("/flaky")) == 1
    del receiver.status["/flaky"]
    await city.advance(2)
    first, second = receiver.on("/flaky")
    assert first.headers["x-ucity-delivery"] == second.headers["x-ucity-delivery"]  # the same notification again
    assert (await city.call("dead_letters")).body == {"total": 0, "deadLetters": []}
