"""Scale-out: a worker whose store refuses a batch of readings (Unavailable: PostgreSQL restarting) leaves them
for redelivery, and their devices count as heard (`HealthMonitor.refused`): a device that keeps sending through a
store outage does not go offline because ucity could not write. Real NATS JetStream and PostgreSQL on loopback, a
fake platform clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.test_worker_reload import first_report, settings
from tests.ingest.test_health import ENTITY, START, measure
from tests.natsserver import NatsServer, running_nats
from ucity.app import Ucity
from ucity.core.clock import FakeClock
from ucity.core.errors import Unavailable
from ucity.ingest import DeviceStatusChanged


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    yield from running_nats()


async def until(test: Any, what: str) -> None:
    for _ in range(2000):
        if test():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never: {what}")


async def test_readings_the_store_refused_keep_their_device_online(
        tmp_path: Path, postgres_url: str, nats_server: NatsServer) -> None:
    clock = FakeClock(START)
    await first_report(tmp_path, postgres_url, clock)

    app = Ucity(settings(tmp_path, postgres_url, nats_server.url), clock=clock, role="worker")
    worker = app.worker
    refused = {"down": True, "batches": 0}
    write = worker.writer.write

    async def store_down(writes: list[Any]) -> list[Any]:
        if refused["down"]:
            refused["batches"] += 1
            return [Unavailable("the database is restarting")] * len(writes)
        return await write(writes)

    worker.writer.write = store_down  # type: ignore[method-assign]
    events: list[DeviceStatusChanged] = []

    async def collect(event: DeviceStatusChanged) -> None:
        events.append(event)

    app.platform.bus.subscribe(DeviceStatusChanged, collect)
    await app.start()
    # An API process: it puts the reading on the stream (HTTP 200) and judges no device
    front = Ucity(settings(tmp_path / "api", postgres_url, nats_server.url), clock=clock)
    await front.start()
    try:
        await until(lambda: worker.owns("guro", ENTITY), "the worker owns p1")
        clock.advance(100)  # p1 reported at START; its threshold is 3 x 60 s
        await measure(front, "p1", {"o": False})  # on the stream; the worker's store refuses it
        await until(lambda: refused["batches"] > 0, "the batch was refused")
        clock.advance(150)  # START + 250: past START + 180, not past the refused reading + 180
        await app.ingest.monitor.drain()
        await app.alarms.drain()
        assert events == []
        assert app.alarms.active_alarm("guro", ENTITY, "device-offline") is None
        record = app.ingest.monitor.get("guro", "p1")
        assert record is not None and record.status == "online"
        refused["down"] = False  # the store is back: the redelivered reading is committed
        await until(lambda: record.last_reported == START + (clock.now() - START), "the reading was committed")
        assert events == []
    finally:
        await front.stop()
        await app.stop()
