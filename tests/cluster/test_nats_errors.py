"""The NATS client's own errors reach ucity's log as one warning line each, never a traceback: a worker's log with
a traceback reads as a crash (the fault test looks for them), while a lost connection or an internal subscription's
timeout at a drain is something the client recovers from."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from tests.natsserver import NatsServer, running_nats
from ucity.cluster.jetstream import JetStream
from ucity.core.config import BusSettings


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    yield from running_nats()


def test_the_clients_errors_are_one_warning_line_each(nats_server: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        stream = JetStream(BusSettings(url=nats_server.url, partitions=2), "errors-test")
        await stream.start()
        try:
            with caplog.at_level(logging.WARNING):
                nats_server.stop()  # the client loses its server and reports it through its error callback
                for _ in range(100):
                    if any(r.name == "ucity.cluster.jetstream" for r in caplog.records):
                        break
                    await asyncio.sleep(0.05)
        finally:
            await stream.stop()

    asyncio.run(run())
    ours = [r for r in caplog.records if r.name == "ucity.cluster.jetstream" and r.levelno == logging.WARNING]
    assert ours, "the lost connection was not reported"
    assert all(r.exc_info is None and "Traceback" not in r.getMessage() for r in ours)
    assert ours[0].getMessage().startswith(f"NATS {nats_server.url}: ")
    assert not [r for r in caplog.records if r.name.startswith("nats") and r.exc_info]  # the client's default is off
