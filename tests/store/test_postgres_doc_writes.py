"""PostgreSQL: document writes (`put_doc(s)`, `delete_doc(s)`) are written at the end of their batch, all
together and in the order they came, so they do not split the batch's run of mutations (the rules engine
writes its states once per batch of readings); `delete_doc` still tells whether it removed a document.

The writer is held inside a transaction by a call that waits on an event, so what queues meanwhile is
known exactly; no test depends on how long anything takes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from tests.store.test_postgres_commit_window import store
from tests.store.window_support import T, create, hold_writer, queued
from ucity.core.bus import Context
from ucity.store.postgres import PostgresStore

__all__ = ["store"]  # the fixture (a PostgreSQL store with a one-hour commit window), imported for pytest


async def batch(store: PostgresStore, writes: list[Awaitable[Any]]) -> list[Any]:
    """Run `writes` in one batch (queued while the writer is held)."""
    held, release = await hold_writer(store)
    pending = asyncio.ensure_future(asyncio.gather(*writes))
    await queued(store, len(writes))
    release()
    await held
    return list(await pending)


async def test_document_writes_of_a_batch_keep_their_order(store: PostgresStore) -> None:
    await store.put_doc("k", T, "gone", {"n": 0})
    results = await batch(store, [
        store.put_docs("k", [(T, "a", {"n": 1}), (T, "b", {"n": 1})]),
        store.delete_doc("k", T, "a"),  # removes the put just before it
        store.put_doc("k", T, "a", {"n": 2}),  # and is put again
        store.delete_docs("k", [(T, "b"), (T, "gone")]),
        store.delete_doc("k", T, "missing"),
        store.put_docs("k", [(T, "b", {"n": 3})]),
        store.delete_doc("k", T, "b"),
        store.put_doc("k", T, "c", {"n": 4}),
        store.put_doc("k", T, "c", {"n": 5}),  # the later put of a key wins
    ])
    assert results == [None, True, None, None, False, None, True, None, None]
    assert sorted((k, d["n"]) for _, k, d in await store.list_docs("k")) == [("a", 2), ("c", 5)]


async def test_document_writes_do_not_split_the_batchs_mutations(store: PostgresStore,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    segments: list[int] = []
    run_segment = store._run_segment

    async def counted(conn: Any, groups: list[Any], tx: Any) -> None:
        if groups:
            segments.append(len(groups))
        await run_segment(conn, groups, tx)

    monkeypatch.setattr(store, "_run_segment", counted)
    writes: list[Awaitable[Any]] = []
    for n in range(6):  # entity writes and rule-state snapshots interleaved, as a storm sends them
        writes.append(store.mutate(T, [create(n)], Context()))
        writes.append(store.put_docs("rule-state", [(T, f"r|{n}", {"n": n})]))
    writes.append(store.delete_docs("rule-state", [(T, "r|0")]))
    await batch(store, writes)
    assert segments == [6]  # one run of mutations: the document writes went at the end
    assert sorted(k for _, k, _ in await store.list_docs("rule-state")) == [f"r|{n}" for n in range(1, 6)]
    assert all([await store.get_entity(T, f"urn:ngsi-ld:Building:{n}") is not None for n in range(6)])


async def test_a_failed_document_write_fails_alone(store: PostgresStore) -> None:
    results = await asyncio.gather(*[store.put_doc("k", T, "fine", {"n": 1})], return_exceptions=True)
    assert results == [None]
    held, release = await hold_writer(store)
    pending = asyncio.ensure_future(asyncio.gather(
        store.put_doc("k", T, "ok", {"n": 1}), store.put_doc("k", T, "bad\x00key", {"n": 2}),
        store.mutate(T, [create(1)], Context()), return_exceptions=True))
    await queued(store, 3)
    release()
    await held
    ok, bad, written = await pending
    assert ok is None and isinstance(bad, Exception) and written[0].operation == "create"
    assert sorted(k for _, k, _ in await store.list_docs("k")) == ["fine", "ok"]
