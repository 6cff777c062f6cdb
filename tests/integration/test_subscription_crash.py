"""A server killed with SIGKILL during a receiver outage loses no queued NGSI-LD notification (ucity/ngsild/saved.py).

A real `ucity serve` (as tests/integration/test_crash.py) notifies a real local receiver that answers 500: the
notification being retried and those queued behind it are written through to the store. The process is killed
with SIGKILL, the receiver comes back, the server starts again on the same data: every change arrives, in order,
once per notification id (the one that had failed with the id it had).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_subscriptions import WAIT_S, Receiver, prop, subscription
from tests.conftest import free_port
from tests.integration.test_crash import start_server

B1 = "urn:ngsi-ld:Building:crash-1"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def subscriptions_health(client: httpx.Client) -> dict[str, Any]:
    health: dict[str, Any] = client.get("/health").json()["components"]["subscriptions"]
    return health


def test_a_kill_9_during_a_receiver_outage_loses_no_queued_notification(tmp_path: Path, receiver: Receiver,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UCITY_SUBSCRIPTIONS__RETRY_BASE_S", "600")  # one attempt before the kill, no retry
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    receiver.failures["/n"] = 10**6  # the receiver is down
    proc = start_server(tmp_path, port)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.post("/ngsi-ld/v1/entities", json={"id": B1, "type": "Building",
                                                             "temperature": prop(0)}).status_code == 201
            assert client.post("/ngsi-ld/v1/subscriptions",
                               json=subscription(f"{receiver.url}/n")).status_code == 201
            for value in range(1, 6):
                response = client.patch(f"/ngsi-ld/v1/entities/{B1}/attrs", json={"temperature": prop(value)})
                assert response.status_code == 204
            failed = receiver.wait("/n", 1)[0]
            deadline = time.monotonic() + WAIT_S
            while True:  # all five written through (held, and no write outstanding)
                health = subscriptions_health(client)
                if health["saved"] == 5 and not health["savedWriting"]:
                    break
                assert time.monotonic() < deadline, health
                time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert [r.values for r in receiver.on("/n")] == [[1]]  # only the first was tried

    receiver.failures["/n"] = 0  # the receiver is back
    proc = start_server(tmp_path, port)
    try:
        got = receiver.wait("/n", 6)[1:]
        assert [r.values for r in got] == [[1], [2], [3], [4], [5]]
        assert got[0].body["id"] == failed.body["id"]  # the same notification, sent again
        assert len({r.body["id"] for r in got}) == 5
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + WAIT_S
            while subscriptions_health(client)["saved"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert len(receiver.on("/n")) == 6  # delivered and deleted: nothing sent twice
    finally:
        proc.terminate()
        proc.wait(timeout=20)
