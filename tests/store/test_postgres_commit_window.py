"""The PostgreSQL writer's own commit path (what both stores share is in test_commit_window.py): a write
arriving while the writer waits for company joins the batch, alarm saves of a batch are written together
(and a bad one still fails alone), and the writer keeps its connection from batch to batch (and connects
again when it is lost).

The writer is held inside a transaction by a call that waits on an event, so what queues meanwhile is
known exactly, whatever the machine's speed; no test depends on how long anything takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest

from tests.store.window_support import BUILDING, HOUR_MS, T, create, hold_writer, queued
from ucity.core.bus import Context
from ucity.core.clock import FakeClock
from ucity.core.errors import Unavailable
from ucity.store.base import AlarmRow
from ucity.store.postgres import PostgresStore


def alarm(n: int, status: str = "active-unack", alarm_id: str | None = None) -> AlarmRow:
    alarm_id = alarm_id or f"alarm-{n}"
    return AlarmRow(tenant=T, id=alarm_id, entity_id=f"urn:ngsi-ld:Building:{n}", entity_type=BUILDING,
                    rule_id="r", kind="safety", level="caution", status=status, active=True, derived=False,
                    parent_id=None, outcome=None, assignee=None, raised_at=1, updated_at=1 + n, acked_at=None,
                    cleared_at=None, closed_at=None, bbox=None, doc={"id": alarm_id, "status": status})


def entry(seq: int, action: str) -> dict[str, Any]:
    return {"seq": seq, "at": "2026-03-01T00:00:00Z", "action": action, "actor": "test"}


@pytest.fixture
async def store(postgres_url: str, store_backend: str) -> AsyncIterator[PostgresStore]:
    if store_backend != "postgresql":
        pytest.skip("PostgreSQL's writer (runs once, on the [postgresql] backend)")
    # A one-hour window: a write held for it would hang the test, not slow it.
    s = PostgresStore(postgres_url, FakeClock(), group_commit_ms=HOUR_MS, group_commit_max=500)
    await s.start()
    yield s
    await s.stop()


async def test_a_write_arriving_while_the_writer_waits_joins_its_batch(store: PostgresStore) -> None:
    # Gap and window of an hour, at most two writes a batch: the first write waits for company, the second
    # one arrives while it waits and fills the batch.
    store.group_commit_idle_s, store.group_commit_max = HOUR_MS / 1000, 2
    first = asyncio.ensure_future(store.mutate(T, [create(1)], Context()))
    while store._arrived is None:  # the writer has the first write and waits for the next one
        await asyncio.sleep(0)
    second = asyncio.ensure_future(store.mutate(T, [create(2)], Context()))
    assert (await first)[0].operation == "create"
    assert (await second)[0].operation == "create"
    assert store.commits == 1


async def test_alarm_saves_of_a_batch_are_written_together_in_order(store: PostgresStore) -> None:
    held, release = await hold_writer(store)
    saves: list[Awaitable[object]] = []
    for n in range(20):  # alarm saves and entity writes interleaved, as the alarm service sends them
        saves.append(store.save_alarm(alarm(n), [entry(1, "raised")]))
        saves.append(store.mutate(T, [create(n)], Context()))
    # the same alarm twice in one batch: the later save wins, and both history entries are kept
    saves.append(store.save_alarm(alarm(0, "active-ack"), [entry(2, "acknowledged")]))
    pending = asyncio.ensure_future(asyncio.gather(*saves))
    await queued(store, len(saves))
    release()
    await held
    await pending
    # the held call's transaction, the alarm saves' (ahead of the entity writes: `urgent_first`), the writes'
    assert store.commits == 3
    assert (await store.get_alarm(T, "alarm-0")) == {"id": "alarm-0", "status": "active-ack"}
    assert [h["action"] for h in await store.alarm_history(T, "alarm-0")] == ["raised", "acknowledged"]
    assert (await store.get_alarm(T, "alarm-19")) == {"id": "alarm-19", "status": "active-unack"}
    assert await store.get_entity(T, "urn:ngsi-ld:Building:19") is not None


async def test_a_bad_alarm_save_fails_alone(store: PostgresStore) -> None:
    held, release = await hold_writer(store)
    good = [store.save_alarm(alarm(n), [entry(1, "raised")]) for n in range(3)]
    bad = store.save_alarm(alarm(9, alarm_id="bad\x00id"), [])  # PostgreSQL text cannot hold NUL
    write = store.mutate(T, [create(1)], Context())
    pending = asyncio.ensure_future(asyncio.gather(*good, bad, write, return_exceptions=True))
    await queued(store, 5)
    release()
    await held
    *saved, failed, written = await pending
    assert saved == [None, None, None]
    assert isinstance(failed, Unavailable)
    assert written[0].operation == "create"
    assert [await store.get_alarm(T, f"alarm-{n}") is not None for n in range(3)] == [True, True, True]


async def test_the_writer_keeps_its_connection_and_connects_again_when_it_is_lost(store: PostgresStore) -> None:
    await store.mutate(T, [create(1)], Context())
    conn = store._conn
    assert conn is not None
    await store.mutate(T, [create(2)], Context())
    assert store._conn is conn  # not given back (and reset) after each batch
    await store.pool.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
    # The batch that finds the connection lost fails (as it did with a connection from the pool) ...
    lost = (await store.mutate(T, [create(3)], Context()))[0]
    assert isinstance(lost, Unavailable) or lost.operation == "create"
    result = await store.mutate(T, [create(4)], Context())  # ... and the next one connects again
    assert not isinstance(result[0], Exception) and result[0].operation == "create"
    assert store._conn is not None and store._conn is not conn
    assert await store.get_entity(T, "urn:ngsi-ld:Building:4") is not None
