"""A scale-out worker whose re-read of the owned state fails (the store restarting) during a rebalance: it
keeps its leases and stays healthy, judges nothing and takes no batch meanwhile, shows the pending re-read
in its health, retries with backoff (on its retry clock, a fake one here), and once a retry succeeds its
devices have their health timers again. Real NATS JetStream and PostgreSQL on loopback, fake clocks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.test_health import ENTITY, START, measure, provision
from tests.natsserver import NatsServer, running_nats
from ucity.app import Ucity
from ucity.cluster.worker import _RELOAD_RETRY_MAX_S, retry_delay
from ucity.core.clock import FakeClock
from ucity.core.config import Settings, load_settings
from ucity.core.errors import Unavailable
from ucity.ingest import DeviceStatusChanged


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    yield from running_nats()


def settings(tmp_path: Path, store_url: str, bus_url: str = "") -> Settings:
    bus = {"url": bus_url, "partitions": 4, "lease_s": 5, "ack_wait_s": 3, "worker_id": "w1"} if bus_url else {}
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"url": store_url, "group_commit_ms": 1.0},
                         ingest={"intervals_by_type": {"ParkingSpot": 60.0}, "offline_after_intervals": 3}, bus=bus)


def test_retry_delays_are_jittered_and_capped() -> None:
    for attempt in (1, 2, 5, 40, 10_000):
        delays = {retry_delay(attempt) for _ in range(50)}
        assert len(delays) > 1  # jittered
        assert all(0 < d <= _RELOAD_RETRY_MAX_S for d in delays)
    assert max(retry_delay(1) for _ in range(50)) <= 0.5 < min(retry_delay(40) for _ in range(50))


async def first_report(tmp_path: Path, postgres_url: str, clock: FakeClock) -> None:
    """p1 provisioned and its first report committed by a process without the bus (then stopped)."""
    api = Ucity(settings(tmp_path, postgres_url), clock=clock)  # provisioning and a first report, no bus
    await api.start()
    try:
        await provision(api, [{"device_id": "p1"}])
        await measure(api, "p1", {"o": True})
        await api.ingest.monitor.drain()
        await api.publisher.drain()
    finally:
        await api.stop()


async def test_a_failed_reload_is_retried_and_the_devices_get_their_timers(
        tmp_path: Path, postgres_url: str, nats_server: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ucity.cluster.worker")
    clock = FakeClock(START)
    await first_report(tmp_path, postgres_url, clock)

    app = Ucity(settings(tmp_path, postgres_url, nats_server.url), clock=clock, role="worker")
    worker = app.worker
    worker.retry_clock = retry_clock = FakeClock(START)
    failing = {"left": 0}
    open_alarms = app.store.open_alarms

    async def flaky() -> Any:
        if failing["left"]:
            failing["left"] -= 1
            raise Unavailable("the database is restarting")
        return await open_alarms()

    app.store.open_alarms = flaky  # type: ignore[method-assign]
    start = worker.start

    async def start_with_the_store_failing() -> None:  # alarms and ingest started fine; the rebalance fails
        failing["left"] = 2
        await start()

    worker.start = start_with_the_store_failing
    events: list[DeviceStatusChanged] = []

    async def collect(event: DeviceStatusChanged) -> None:
        events.append(event)

    app.platform.bus.subscribe(DeviceStatusChanged, collect)
    await app.start()  # the worker starts although its first re-read failed
    try:
        health = worker.health()
        assert health["ok"] and health["reloadPending"] and health["reloadFailures"] == 1
        assert health["partitions"] == [0, 1, 2, 3] and "restarting" in health["reloadError"]
        assert app.platform.health()["worker"]["ok"]
        assert not worker.owns("guro", ENTITY)  # judges nothing from the state the failed re-read left
        record = app.ingest.monitor.get("guro", "p1")
        assert record is not None and record.timer is None

        clock.advance(600)  # p1 silent far past its deadline: nobody may announce it from a half-read state
        await app.ingest.monitor.drain()
        assert events == [] and app.alarms.active_alarm("guro", ENTITY, "device-offline") is None
        await measure(app, "p1", {"o": False})  # on the stream (HTTP 200), but no batch is taken while pending

        for _ in range(2000):  # each retry waits on the retry clock: move it until a retry succeeds
            if not worker.health()["reloadPending"]:
                break
            retry_clock.advance(_RELOAD_RETRY_MAX_S)
            await asyncio.sleep(0.005)
        health = worker.health()
        assert not health["reloadPending"] and health["reloadFailures"] == 0 and health["ok"]
        assert failing["left"] == 0  # the second attempt failed too, the third succeeded
        assert worker.owns("guro", ENTITY)
        await app.ingest.monitor.drain()
        await app.alarms.drain()
        logged = [r.getMessage() for r in caplog.records if r.name == "ucity.cluster.worker"]
        assert sum("retrying with backoff" in m for m in logged) == 1  # once per state change, not per retry
        assert sum("read after 2 failed attempt(s)" in m for m in logged) == 1

        for _ in range(2000):  # it takes batches again: the report sent while pending comes through
            if events and events[-1].status == "online":
                break
            await asyncio.sleep(0.005)
        # Judged from the state as read (p1 silent: offline, alarmed), then the report held back: had a batch been
        # taken while pending, the re-read would have found the report and p1 would never have gone offline.
        assert [(e.device_id, e.status) for e in events] == [("p1", "offline"), ("p1", "online")]
        await app.alarms.drain()
        assert app.alarms.active_alarm("guro", ENTITY, "device-offline") is None
    finally:
        await app.stop()
