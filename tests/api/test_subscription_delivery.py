"""NGSI-LD notification delivery: what a receiver outage costs and what is counted (QA11 F1, F4, F6, F8, F9).

On a fake clock (a started `Ucity` driven through its handlers, notifying a real local receiver, as in
test_subscriptions.py): the retry schedule survives an outage of minutes, a notification given up is counted on
the subscription and on /health (also after the subscription is deleted, like `dropped`), and a shutdown says how
many notifications it discards. Over HTTP: MQTT endpoints are 422 OperationNotSupported, an invalid q is
reported once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import assert_problem
from tests.api.test_subscriptions import (
    B1,
    SUBS,
    T0,
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
from ucity.core.config import load_settings
from ucity.ngsild.subscriptions import SubscriptionService

__all__ = ["receiver"]  # the fixture, imported for pytest


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def started(tmp_path: Path, **subscriptions: Any) -> Broker:
    clock = FakeClock(T0)
    ucity = Ucity(fake_clock_settings(tmp_path, **subscriptions), clock=clock)
    await ucity.start()
    return Broker(ucity, clock)


@pytest.fixture
async def default_retries(tmp_path: Path) -> AsyncIterator[Broker]:
    """A broker with the default retry settings (fake_clock_settings shortens them)."""
    broker = await started(tmp_path, max_retries=10, retry_base_s=2.0, retry_max_s=120.0)
    try:
        yield broker
    finally:
        await broker.ucity.stop()


def test_the_default_schedule_is_capped_backoff_of_about_ten_minutes(tmp_path: Path) -> None:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data")).subscriptions
    assert (settings.max_retries, settings.retry_base_s, settings.retry_max_s) == (10, 2.0, 120.0)
    waits = [min(settings.retry_max_s, settings.retry_base_s * 2**n) for n in range(settings.max_retries)]
    assert waits == [2, 4, 8, 16, 32, 64, 120, 120, 120, 120]
    assert sum(waits) == 606  # the README and docs/operations.md say "about 10 minutes"


async def test_a_notification_survives_a_receiver_outage_of_minutes(default_retries: Broker,
                                                                    receiver: Receiver) -> None:
    broker = default_retries
    receiver.failures["/outage"] = 8  # down for 6 minutes: 8 attempts fail, the 9th is answered
    await broker.create(B1, temperature=prop(0))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/outage"))
    await broker.update(B1, temperature=prop(1))
    waits = [2, 4, 8, 16, 32, 64, 120, 120]  # doubling from retry_base_s, then capped at retry_max_s
    for attempt, wait in enumerate(waits, start=1):
        stats = await _stats_after(broker, sub_id, attempts=attempt)
        assert stats["lastFailure"] == iso(sum(waits[:attempt - 1]))  # each attempt when it was due
        broker.clock.advance(wait)
    got = await receiver.await_("/outage", 9)
    stats = await _stats_after(broker, sub_id, attempts=9)
    assert (stats["status"], stats["timesSent"], stats["timesFailed"]) == ("ok", 9, 8)
    assert stats["lastSuccess"] == iso(366)
    assert "timesAbandoned" not in stats
    assert len({r.body["id"] for r in got}) == 1 and got[-1].values == [1]  # one notification, retried
    assert broker.ucity.subscriptions.health()["abandoned"] == 0


async def test_an_abandoned_notification_is_counted_on_the_subscription_and_on_health(
        tmp_path: Path, receiver: Receiver) -> None:
    broker = await started(tmp_path, max_retries=2, retry_base_s=1.0, retry_max_s=1.5)
    try:
        receiver.failures["/down"] = 3  # the first attempt and both retries fail
        await broker.create(B1, temperature=prop(0))
        sub_id = await broker.subscribe(subscription(f"{receiver.url}/down"))
        await broker.update(B1, temperature=prop(1))
        await broker.update(B1, temperature=prop(2))  # queued behind the first
        await _stats_after(broker, sub_id, attempts=1)
        broker.clock.advance(1)
        await _stats_after(broker, sub_id, attempts=2)
        broker.clock.advance(1.5)  # 2 s doubled, capped at retry_max_s
        got = await receiver.await_("/down", 4)
        assert [r.values for r in got] == [[1], [1], [1], [2]]
        stats = await _stats_after(broker, sub_id, attempts=4)
        assert (stats["timesAbandoned"], stats["timesSent"], stats["timesFailed"], stats["status"]) == (1, 4, 3, "ok")
        service: SubscriptionService = broker.ucity.subscriptions
        assert service.health()["abandoned"] == 1
        broker.clock.advance(5)  # the counters are persisted with the others

        async def stored() -> dict[str, Any]:
            docs = {key: doc for _, key, doc in await broker.ucity.store.list_docs("subscription")}
            return docs[sub_id]["notification"]  # type: ignore[no-any-return]

        for _ in range(500):
            if (await stored()).get("timesAbandoned") == 1:
                break
            await asyncio.sleep(0.01)
        assert (await stored())["timesAbandoned"] == 1
        resp = await broker.call(service.delete, "DELETE", f"{SUBS}/{sub_id}", subscriptionId=sub_id)
        assert resp.status == 204
        assert service.health()["abandoned"] == 1  # kept after the subscription is gone
    finally:
        await broker.ucity.stop()


async def test_dropped_notifications_stay_on_health_after_the_subscription_is_deleted(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.gates["/held"] = threading.Event()  # the first POST waits: what follows queues up
    broker = await started(tmp_path, queue_size=1)
    try:
        await broker.create(B1, temperature=prop(0))
        sub_id = await broker.subscribe(subscription(f"{receiver.url}/held"))
        await broker.update(B1, temperature=prop(1))
        await receiver.await_("/held", 1)  # in flight, held
        await broker.update(B1, temperature=prop(2))  # queued
        await broker.update(B1, temperature=prop(3))  # the queue (size 1) drops value 2
        service: SubscriptionService = broker.ucity.subscriptions
        assert service.health()["dropped"] == 1
        resp = await broker.call(service.delete, "DELETE", f"{SUBS}/{sub_id}", subscriptionId=sub_id)
        assert resp.status == 204
        assert service.health()["dropped"] == 1
    finally:
        receiver.gates["/held"].set()
        await broker.ucity.stop()


async def test_shutdown_logs_how_many_notifications_it_discards(tmp_path: Path, receiver: Receiver,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    broker = await started(tmp_path)
    receiver.failures["/gone"] = 10
    await broker.create(B1, temperature=prop(0))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/gone"))
    await broker.update(B1, temperature=prop(1))
    await _stats_after(broker, sub_id, attempts=1)  # failed: now waiting for its retry
    await broker.update(B1, temperature=prop(2))  # queued behind it
    with caplog.at_level(logging.INFO, logger="ucity.ngsild.subscriptions"):
        await broker.ucity.stop()
    lines = [r.getMessage() for r in caplog.records if "at shutdown" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("subscriptions: 2 notifications not yet delivered")


async def test_a_quiet_shutdown_says_nothing_is_lost(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = await started(tmp_path)
    with caplog.at_level(logging.INFO, logger="ucity.ngsild.subscriptions"):
        await broker.ucity.stop()
    assert [r.getMessage() for r in caplog.records if "at shutdown" in r.getMessage()] == [
        "subscriptions: no notification pending at shutdown"]


@pytest.mark.parametrize("uri", ["mqtt://broker:1883/city/notify", "mqtts://broker:8883/t", "MQTT://broker/t"])
def test_mqtt_endpoints_are_not_supported(client: TestClient, uri: str) -> None:
    body = assert_problem(client.post(SUBS, json=subscription(uri)), 422, "OperationNotSupported")
    assert "MQTT notification endpoints are not supported" in body["detail"]
    assert client.get(SUBS).json() == []
    created = client.post(SUBS, json=subscription("http://a.b/n"))
    sub_id = created.headers["location"].rsplit("/", 1)[1]
    patched = client.patch(f"{SUBS}/{sub_id}", json={"notification": {"endpoint": {"uri": uri}}})
    assert_problem(patched, 422, "OperationNotSupported")


def test_an_invalid_q_is_reported_once(client: TestClient) -> None:
    body = assert_problem(client.post(SUBS, json=subscription("http://a.b/n", q="temperature>")), 400,
                          "BadRequestData")
    assert body["detail"].startswith("잘못된 q: ") and body["detail"].count(" / invalid q: ") == 1
    assert body["detail"].count("invalid q") == 1
