"""SQLite writer: calls that touch neither entities nor history (documents, alarms, operations events,
audit) run between a batch's mutations without flushing their pending writes or re-reading instance rids;
calls that do touch history still flush first. Traced on the writer's own connection, inside one batch
formed while the writer is held, so the batch's content is known exactly."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from tests.store.window_support import HOUR_MS, T, create
from ucity.core.bus import Context
from ucity.core.clock import FakeClock
from ucity.ngsild import ops
from ucity.store.base import AlarmRow, Mutation, TemporalQuery
from ucity.store.sqlite import NEXT_RID, SqliteStore

HEIGHT = "https://smartdatamodels.org/height"


def alarm(n: int) -> AlarmRow:
    alarm_id = f"alarm-{n}"
    return AlarmRow(tenant=T, id=alarm_id, entity_id=f"urn:ngsi-ld:Building:{n}", entity_type="B", rule_id="r",
                    kind="safety", level="caution", status="active-unack", active=True, derived=False,
                    parent_id=None, outcome=None, assignee=None, raised_at=1, updated_at=1 + n, acked_at=None,
                    cleared_at=None, closed_at=None, bbox=None, doc={"id": alarm_id, "status": "active-unack"})


def height(n: int, value: int) -> Mutation:
    entity_id = f"urn:ngsi-ld:Building:{n}"
    return Mutation(entity_id, ops.update_op({"id": entity_id, "attrs": {HEIGHT: [{"type": "Property", "value": value}]}}))


async def _one_batch(path: Path, between: Any, calls: int, transactions: int = 1) -> tuple[SqliteStore, list[str]]:
    """Hold the writer, queue create(1), `between(store)` (which queues `calls` writes at once), an update
    of building 1 and create(2), release; returns the store and the statements the batch ran."""
    store = SqliteStore(path, FakeClock(), group_commit_ms=HOUR_MS, group_commit_max=500)
    await store.start()
    traced: list[str] = []
    inside, release = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(traced.append)  # the writer's connection: every later statement is seen
        inside.set()
        release.wait()

    held = asyncio.ensure_future(store._call(block))
    await asyncio.to_thread(inside.wait)
    first = asyncio.ensure_future(store.mutate(T, [create(1)], Context()))
    middle = asyncio.ensure_future(between(store))
    update = asyncio.ensure_future(store.mutate(T, [height(1, 10)], Context()))
    last = asyncio.ensure_future(store.mutate(T, [create(2)], Context()))
    while store._queue.qsize() < 3 + calls:
        await asyncio.sleep(0)
    commits = store.commits
    release.set()
    await asyncio.gather(held, first, middle, update, last)
    # the held call's batch, then all the others together (an alarm save ahead of them: `urgent_first`)
    assert store.commits == commits + 1 + transactions
    return store, traced


def _count(traced: list[str], start: str) -> int:
    return sum(1 for statement in traced if statement.lstrip().startswith(start))


async def _heights(store: SqliteStore) -> list[dict[str, Any]]:
    history, _ = await store.temporal_query(T, TemporalQuery(ids=("urn:ngsi-ld:Building:1",), timeproperty="createdAt"))
    return history[0].attrs[HEIGHT].instances


async def test_document_and_alarm_calls_do_not_split_the_batch(tmp_path: Path) -> None:
    def between(store: SqliteStore) -> Any:  # both queued at once, between the mutations
        return asyncio.gather(store.put_doc("rule-state", T, "k", {"a": 1}), store.save_alarm(
            alarm(1), [{"seq": 1, "at": "2026-03-01T00:00:00Z", "action": "raised"}]))

    # Two calls between the mutations would be a flush and one more rid read if they were not independent.
    # The alarm's save (and the document call queued before it) is committed ahead of the mutations, which
    # stay one transaction.
    store, traced = await _one_batch(tmp_path / "a.db", between, calls=2, transactions=2)
    try:
        assert _count(traced, NEXT_RID) == 1  # the batch's rids read once
        instances = await _heights(store)
        assert [i["value"] for i in instances] == [1, 10]
        assert len({i["instanceId"] for i in instances}) == 2
        assert await store.get_alarm(T, "alarm-1") == {"id": "alarm-1", "status": "active-unack"}
        assert [d for _, key, d in await store.list_docs("rule-state") if key == "k"] == [{"a": 1}]
    finally:
        await store.stop()


async def test_a_history_call_still_sees_every_earlier_write(tmp_path: Path) -> None:
    async def between(store: SqliteStore) -> None:  # touches history: must flush first and re-read rids
        await store.append_history(T, "urn:ngsi-ld:Building:1", ["B"], [
            (HEIGHT, {"type": "Property", "value": 5, "observedAt": "2026-01-01T00:00:00Z"})])

    store, traced = await _one_batch(tmp_path / "b.db", between, calls=1)
    try:
        assert _count(traced, NEXT_RID) >= 2
        ids = [i["instanceId"] for i in await _heights(store)]
        assert len(ids) == 3 and len(set(ids)) == 3
    finally:
        await store.stop()
