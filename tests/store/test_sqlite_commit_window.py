"""The SQLite writer's commit window: writes queued together commit in one transaction, and a lone write
is not held for the window (it commits once the queue is drained and nothing more comes).

The writer is held inside a transaction by a call that waits on an event, so what queues meanwhile is
known exactly, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ucity.core.bus import Context
from ucity.core.clock import FakeClock
from ucity.ngsild import ops
from ucity.store.base import Mutation
from ucity.store.sqlite import SqliteStore

T = "urn:ngsi-ld:tenant:default"
BUILDING = "https://smartdatamodels.org/dataModel.Building/Building"
HOUR_MS = 3_600_000.0


def create(n: int) -> Mutation:
    doc = {"id": f"urn:ngsi-ld:Building:{n}", "type": [BUILDING],
           "attrs": {"https://smartdatamodels.org/height": [{"type": "Property", "value": n}]}}
    return Mutation(doc["id"], ops.create_op(doc))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    # A one-hour window: a write held for it would hang the test, not slow it.
    s = SqliteStore(tmp_path / "w.db", FakeClock(), group_commit_ms=HOUR_MS, group_commit_max=500)
    await s.start()
    yield s
    await s.stop()


async def hold_writer(store: SqliteStore) -> tuple[asyncio.Future[object], threading.Event]:
    """A call that keeps the writer busy inside its transaction until the returned event is set."""
    inside, release = threading.Event(), threading.Event()

    def block(conn: object) -> None:
        inside.set()
        release.wait()

    held = asyncio.ensure_future(store._call(block))
    await asyncio.to_thread(inside.wait)
    return held, release


async def test_writes_queued_together_commit_in_one_transaction(store: SqliteStore) -> None:
    held, release = await hold_writer(store)
    commits, ops_before = store.commits, store.committed_ops
    writes = asyncio.ensure_future(asyncio.gather(*(store.mutate(T, [create(n)], Context()) for n in range(50))))
    while store._queue.qsize() < 50:  # every write is queued behind the held transaction
        await asyncio.sleep(0)
    release.set()
    await held
    results = await writes
    assert all(r[0].operation == "create" for r in results)
    # the held call's transaction, then one for the 50 writes that were waiting together
    assert store.commits - commits == 2
    assert store.committed_ops - ops_before == 51


async def test_a_lone_write_is_not_held_for_the_window(store: SqliteStore) -> None:
    # Nothing else is queued or arriving: the write commits without waiting for company (the window is an
    # hour; the generous timeout only turns a regression into a failure instead of a hang).
    for n in range(3):
        result = await asyncio.wait_for(store.mutate(T, [create(n)], Context()), timeout=120)
        assert result[0].operation == "create"
    assert store.commits == 3
    assert await store.get_entity(T, "urn:ngsi-ld:Building:2") is not None


async def test_a_write_arriving_while_a_batch_commits_joins_the_next_one(store: SqliteStore) -> None:
    held, release = await hold_writer(store)
    first = asyncio.ensure_future(store.mutate(T, [create(1)], Context()))
    while store._queue.qsize() < 1:
        await asyncio.sleep(0)
    release.set()
    await held
    assert (await first)[0].operation == "create"
    assert store.commits == 2  # the held call's, then the write's own: neither waited for the hour
