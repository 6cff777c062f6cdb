"""The writer's commit window, on both stores: writes queued together commit in one transaction, and a
lone write is not held for the window (it commits once the queue is drained and nothing more comes).
PostgreSQL's own commit path (alarm saves per batch, its kept connection) is in
test_postgres_commit_window.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import StoreFactory
from tests.store.window_support import HOUR_MS, T, create, hold_writer, queued
from ucity.core.bus import Context
from ucity.core.clock import FakeClock, to_iso
from ucity.store.base import Doc, Mutation, Outcome, Store


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store(FakeClock(), group_commit_ms=HOUR_MS, group_commit_max=500)
    await s.start()
    yield s
    await s.stop()


async def test_writes_queued_together_commit_in_one_transaction(store: Store) -> None:
    held, release = await hold_writer(store)
    commits, ops_before = store.commits, store.committed_ops  # type: ignore[attr-defined]
    writes = asyncio.ensure_future(asyncio.gather(*(store.mutate(T, [create(n)], Context()) for n in range(50))))
    await queued(store, 50)  # every write is queued behind the held transaction
    release()
    await held
    results = await writes
    assert all(r[0].operation == "create" for r in results)
    # the held call's transaction, then one for the 50 writes that were waiting together
    assert store.commits - commits == 2  # type: ignore[attr-defined]
    assert store.committed_ops - ops_before == 51  # type: ignore[attr-defined]


async def test_a_lone_write_is_not_held_for_the_window(store: Store) -> None:
    # Nothing else is queued or arriving: the write commits without waiting for company (the window is an
    # hour; the generous timeout only turns a regression into a failure instead of a hang).
    for n in range(3):
        result = await asyncio.wait_for(store.mutate(T, [create(n)], Context()), timeout=120)
        assert result[0].operation == "create"
    assert store.commits == 3  # type: ignore[attr-defined]
    assert await store.get_entity(T, "urn:ngsi-ld:Building:2") is not None


async def test_a_write_arriving_while_a_batch_commits_joins_the_next_one(store: Store) -> None:
    held, release = await hold_writer(store)
    first = asyncio.ensure_future(store.mutate(T, [create(1)], Context()))
    await queued(store, 1)
    release()
    await held
    assert (await first)[0].operation == "create"
    assert store.commits == 2  # type: ignore[attr-defined]  # the held call's, then the write's own


async def test_writes_committed_together_share_the_time_of_their_transaction(store: Store) -> None:
    # The time of a batch's writes is read once per transaction (SQLite) or segment (PostgreSQL), not once
    # per write: writes queued together share it, even if the clock moves while they are applied.
    clock: FakeClock = store.clock  # type: ignore[attr-defined]
    made = create(1)

    def slow(before: Doc | None, now: str) -> Outcome:
        clock.advance(5)  # time passes while the first write is applied
        return made.apply(before, now)

    held, release = await hold_writer(store)
    first = asyncio.ensure_future(store.mutate(T, [Mutation(made.entity_id, slow)], Context()))
    second = asyncio.ensure_future(store.mutate(T, [create(2)], Context()))
    await queued(store, 2)
    start = to_iso(clock.now())
    release()
    await held
    a, b = (await first)[0], (await second)[0]
    assert isinstance(a, Outcome) and isinstance(b, Outcome) and a.doc and b.doc
    assert a.doc["modifiedAt"] == b.doc["modifiedAt"] == b.doc["createdAt"] == start
    (c,) = await store.mutate(T, [create(3)], Context())  # the next transaction reads the clock again
    assert isinstance(c, Outcome) and c.doc and c.doc["modifiedAt"] == to_iso(clock.now()) != start
