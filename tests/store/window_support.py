"""Shared by the commit-window tests: writes to queue, and a call that holds either store's writer inside
its transaction until released, so that what queues meanwhile is known exactly, whatever the machine's
speed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from ucity.ngsild import ops
from ucity.store.base import Mutation, Store
from ucity.store.sqlite import SqliteStore

T = "urn:ngsi-ld:tenant:default"
BUILDING = "https://smartdatamodels.org/dataModel.Building/Building"
HOUR_MS = 3_600_000.0  # a window this long holding a write would hang the test, not slow it


def create(n: int) -> Mutation:
    doc = {"id": f"urn:ngsi-ld:Building:{n}", "type": [BUILDING],
           "attrs": {"https://smartdatamodels.org/height": [{"type": "Property", "value": n}]}}
    return Mutation(doc["id"], ops.create_op(doc))


async def hold_writer(store: Store) -> tuple[asyncio.Future[object], Callable[[], None]]:
    """A call that keeps the writer busy inside its transaction until the returned function is called
    (SQLite's writer is a thread, PostgreSQL's a task on the event loop)."""
    if isinstance(store, SqliteStore):
        inside, release = threading.Event(), threading.Event()

        def block(conn: object) -> None:
            inside.set()
            release.wait()

        held = asyncio.ensure_future(store._call(block))
        await asyncio.to_thread(inside.wait)
        return held, release.set
    entered, freed = asyncio.Event(), asyncio.Event()

    async def wait(conn: object, tx: object) -> None:
        entered.set()
        await freed.wait()

    held = asyncio.ensure_future(store._call(wait))  # type: ignore[attr-defined]
    await entered.wait()
    return held, freed.set


async def queued(store: Store, count: int) -> None:
    """Until `count` writes wait in the writer's queue."""
    while store._queue.qsize() < count:  # type: ignore[attr-defined]
        await asyncio.sleep(0)
