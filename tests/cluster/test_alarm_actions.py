"""Scale-out: an operator's action on an alarm goes through an API process, while a worker judges the alarm (its
escalation, its next changes). The API process acts on the stored alarm (not the copy it read at start), and the
worker reads the alarm again once told through the event stream: an acknowledged alarm escalates no further, and
the worker's later changes start from the operator's. Real NATS JetStream and PostgreSQL on loopback; one fake
platform clock for both processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.alarms.support import T0, matched
from tests.natsserver import NatsServer, running_nats
from ucity.app import Ucity
from ucity.core.clock import FakeClock
from ucity.core.config import Settings, load_settings

TENANT = "urn:ngsi-ld:tenant:default"
ENTITY = "urn:ngsi-ld:Building:b1"
WAIT_S = 30.0


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    yield from running_nats()


def settings(tmp_path: Path, store_url: str, bus_url: str) -> Settings:
    contacts = {
        "notifiers": [{"id": "sms", "type": "sms"}],
        "recipients": [{"id": "duty", "members": [{"name": "김당직", "contacts": [{"notifier": "sms", "address": "010-1"}]}]},
                       {"id": "boss", "members": [{"name": "박과장", "contacts": [{"notifier": "sms", "address": "010-2"}]}]}],
        "escalations": [{"id": "all", "steps": [{"delay_s": 0, "group": "duty"}, {"delay_s": 300, "group": "boss"}]}],
    }
    return load_settings(environment="test", data_dir=str(tmp_path / "data"),
                         store={"url": store_url, "group_commit_ms": 1.0},
                         bus={"url": bus_url, "partitions": 4, "lease_s": 3, "ack_wait_s": 2, "worker_id": "w1"},
                         alarms={"webhook_secret": "test-webhook-secret-0123456789", **contacts})


def sent_to(app: Ucity) -> list[str]:
    instance: Any = app.alarms.dispatcher.notifier(TENANT, "sms")
    return [r["to"] for r in instance.recorded]


async def until(condition: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        await asyncio.sleep(0.01)


async def test_an_acknowledgement_through_the_api_process_stops_the_workers_escalation(
        tmp_path: Path, postgres_url: str, nats_server: NatsServer) -> None:
    clock = FakeClock(T0)
    worker = Ucity(settings(tmp_path, postgres_url, nats_server.url), clock=clock, role="worker")
    await worker.start()
    api: Ucity | None = None
    try:
        await until(lambda: worker.worker.owns(TENANT, ENTITY), "the worker owns the entity")
        await worker.platform.bus.publish(matched(ENTITY, "warning", "tilt", entity_types=("Building",)))
        await worker.alarms.settle()
        alarm = worker.alarms.active_alarm(TENANT, ENTITY, "tilt")
        assert alarm is not None and sent_to(worker) == ["010-1"]  # the first step, from the worker

        api = Ucity(settings(tmp_path, postgres_url, nats_server.url), clock=clock)  # reads the open alarm
        await api.start()
        await worker.platform.bus.publish(matched(ENTITY, "serious", "tilt", entity_types=("Building",)))
        await worker.alarms.settle()  # the worker raised its level; the API process's copy is older
        assert api.alarms.get_open(TENANT, alarm.id).level == "warning"  # type: ignore[union-attr]
        assert (await api.alarms.load(TENANT, alarm.id)).level == "serious"  # read: the stored one

        assert sent_to(worker) == ["010-1", "010-1"]  # raised, then escalated: the chain begins again
        acted = await api.alarms.act(TENANT, alarm.id, "acknowledge", "operator-kim")
        assert (acted.status, acted.level) == ("active-acknowledged", "serious")  # not taken back to warning
        await until(lambda: worker.alarms.get_open(TENANT, alarm.id).status == "active-acknowledged",  # type: ignore[union-attr]
                    "the worker read the acknowledged alarm again")
        assert worker.alarms.escalator.pending == 0
        # (the worker may read it again before it is told: the acknowledgement's follow-up, which it sends, records
        # its delivery on the alarm as stored, QA9 F6)
        await until(lambda: worker.worker.stats["alarms"] == 1, "the worker was told of the operator's change")

        clock.advance(301)  # the second step's delay: acknowledged, so nobody more is told
        await worker.alarms.settle()
        await worker.platform.bus.publish(matched(ENTITY, "serious", "tilt", entity_types=("Building",)))
        await worker.alarms.settle()  # the worker's next change starts from the acknowledged alarm
        await api.alarms.settle()
        # The acknowledgement, told to the group already notified: stored by the API process and handed to the worker
        # owning the entity, which sends it (and would send it again after a crash); no step to the boss (010-2).
        await until(lambda: len(sent_to(worker)) == 3, "the worker sent the acknowledgement's follow-up")
        assert sent_to(worker) == ["010-1", "010-1", "010-1"] and sent_to(api) == []
        assert api.platform.health()["forwarder"]["notificationsHandedOver"] == 1
        assert worker.worker.stats["notifications"] == 1
        await until(lambda: api.alarms.dispatcher.journal.held == set() and
                    worker.alarms.dispatcher.journal.held == set(), "nothing left queued")
        stored = await worker.store.get_alarm(TENANT, alarm.id)
        assert stored is not None and stored["status"] == "active-acknowledged"
        assert api.platform.health()["forwarder"]["alarmsForwarded"] >= 1
    finally:
        if api is not None:
            await api.stop()
        await worker.stop()


async def test_the_api_processs_alarm_stream_shows_the_workers_alarms(
        tmp_path: Path, postgres_url: str, nats_server: NatsServer) -> None:
    clock = FakeClock(T0)
    worker = Ucity(settings(tmp_path, postgres_url, nats_server.url), clock=clock, role="worker")
    api = Ucity(settings(tmp_path, postgres_url, nats_server.url), clock=clock)
    await worker.start()
    await api.start()
    try:
        await until(lambda: worker.worker.owns(TENANT, ENTITY), "the worker owns the entity")
        await worker.platform.bus.publish(matched(ENTITY, "warning", "tilt", entity_types=("Building",)))
        await worker.alarms.settle()
        alarm = worker.alarms.active_alarm(TENANT, ENTITY, "tilt")
        assert alarm is not None

        def streamed() -> list[tuple[str, str, str]]:
            return [(e.event, e.data["id"], e.data["status"]) for e in api.alarms.sse.backlog(TENANT, "0")]

        await until(lambda: ("alarm.raised", alarm.id, "active-unacknowledged") in streamed(),
                    "the worker's alarm on the API process's stream")
        await api.alarms.act(TENANT, alarm.id, "acknowledge", "operator-kim")
        await until(lambda: worker.alarms.get_open(TENANT, alarm.id).status == "active-acknowledged",  # type: ignore[union-attr]
                    "the worker read the acknowledged alarm again")
        assert [e for e in streamed() if e[0] == "alarm.acknowledged"] == [
            ("alarm.acknowledged", alarm.id, "active-acknowledged")]  # its own event once: not echoed back
        assert worker.alarms.sse.backlog(TENANT, "0")[-1].event == "alarm.raised"  # workers stream only their own
        assert api.platform.health()["alarmFanout"]["received"] >= 1
        assert worker.platform.health()["alarmFanout"]["sent"] >= 1
    finally:
        await api.stop()
        await worker.stop()
