"""SQLite writer: an entity document is serialized when its mutation is applied if it is the batch's first
write of that entity, and at the flush if the batch writes it again. Either way the `entities` row holds
the JSON of the document the batch leaves (the last write wins), the same text a serialization at the
flush alone gave, and the cache and a fresh read agree with it."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tests.store.window_support import HOUR_MS, T, hold_writer, queued
from ucity.core.bus import Context
from ucity.core.clock import FakeClock
from ucity.ngsild import ops
from ucity.store.base import Mutation, Outcome
from ucity.store.sqlite import SqliteStore

HEIGHT = "https://smartdatamodels.org/height"
BUILDING = "https://smartdatamodels.org/dataModel.Building/Building"


def _create(n: int) -> Mutation:
    entity_id = f"urn:ngsi-ld:Building:{n}"
    return Mutation(entity_id, ops.create_op({"id": entity_id, "type": [BUILDING],
                                              "attrs": {HEIGHT: [{"type": "Property", "value": 0}]}}))


def _height(n: int, value: int) -> Mutation:
    entity_id = f"urn:ngsi-ld:Building:{n}"
    return Mutation(entity_id, ops.update_op({"id": entity_id, "attrs": {HEIGHT: [{"type": "Property", "value": value}]}}))


async def _run(path: Path) -> tuple[dict[str, Any], dict[str, str], dict[str, Any], int]:
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    store = SqliteStore(path, clock, group_commit_ms=HOUR_MS, group_commit_max=100)
    await store.start()
    try:
        await store.mutate(T, [_create(1), _create(2), _create(3)], Context())
        held, release = await hold_writer(store)
        clock.advance(1)
        # One batch: building 1 written three times (twice in one call), 2 once, 3 not at all.
        writes = [asyncio.ensure_future(store.mutate(T, [_height(1, 10), _height(2, 20)], Context())),
                  asyncio.ensure_future(store.mutate(T, [_height(1, 11), _height(1, 12)], Context()))]
        await queued(store, 2)
        commits = store.commits
        release()
        await held
        results = [r for w in writes for r in await w]
        assert all(isinstance(r, Outcome) and r.doc is not None for r in results)
        assert store.commits == commits + 2  # the held call's batch, then the writes above as one batch
        last: dict[str, Any] = {"urn:ngsi-ld:Building:1": results[3].doc,  # type: ignore[union-attr]
                                "urn:ngsi-ld:Building:2": results[1].doc}  # type: ignore[union-attr]
        cached = {key[1]: found[1] for key, found in store._entity_cache.items()}
    finally:
        await store.stop()
    conn = sqlite3.connect(path)
    rows = {i: (doc, modified) for i, doc, modified in conn.execute("SELECT id, doc, modified_at FROM entities")}
    conn.close()
    texts = {i: doc for i, (doc, _) in rows.items()}
    for entity_id, doc in last.items():
        assert rows[entity_id][1] == doc["modifiedAt"]
    return last, texts, cached, len(rows)


def test_each_entity_row_holds_the_json_of_the_last_document_of_its_batch(tmp_path: Path) -> None:
    last, texts, cached, count = asyncio.run(_run(tmp_path / "e.db"))
    assert count == 3
    for entity_id, doc in last.items():
        assert texts[entity_id] == orjson.dumps(doc).decode()  # the text a serialization at the flush gives
        assert cached[entity_id] is doc
        assert orjson.loads(texts[entity_id]) == doc
    assert last["urn:ngsi-ld:Building:1"]["attrs"][HEIGHT][0]["value"] == 12
    assert last["urn:ngsi-ld:Building:2"]["attrs"][HEIGHT][0]["value"] == 20
    untouched = orjson.loads(texts["urn:ngsi-ld:Building:3"])
    assert untouched["attrs"][HEIGHT][0]["value"] == 0


async def _series(path: Path) -> tuple[list[tuple[str, str, str, int]], list[tuple[int, int]]]:
    """Instances of one attribute with and without datasetIds, in two batches, then after the history of
    one series was deleted: each (entity, attribute, datasetId) keeps its one series."""
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    store = SqliteStore(path, clock, group_commit_ms=0.5)
    await store.start()

    def write(n: int, value: int) -> Mutation:
        entity_id = f"urn:ngsi-ld:Building:{n}"
        return Mutation(entity_id, ops.upsert_op({"id": entity_id, "type": [BUILDING], "attrs": {HEIGHT: [
            {"type": "Property", "value": value},
            {"type": "Property", "value": value + 1, "datasetId": "urn:ngsi-ld:Dataset:a"},
            {"type": "Property", "value": value + 2, "datasetId": "urn:ngsi-ld:Dataset:b"}]}}))

    try:
        for value in (10, 20):
            results = await store.mutate(T, [write(1, value), write(2, value)], Context())
            assert not any(isinstance(r, Exception) for r in results)
            clock.advance(1)
        await store.delete_history(T, "urn:ngsi-ld:Building:1", HEIGHT, "urn:ngsi-ld:Dataset:a")
        results = await store.mutate(T, [write(1, 30)], Context())
        assert not any(isinstance(r, Exception) for r in results)
    finally:
        await store.stop()
    conn = sqlite3.connect(path)
    series = conn.execute("SELECT entity_id, attr, dataset_id, sid FROM series ORDER BY sid").fetchall()
    rows = conn.execute("SELECT sid, CAST(vnum AS INTEGER) FROM instance_keys ORDER BY sid, ts").fetchall()
    conn.close()
    return series, rows


def test_history_rows_keep_one_series_per_attribute_instance(tmp_path: Path) -> None:
    series, rows = asyncio.run(_series(tmp_path / "s.db"))
    sid = {(e[-1], d): s for e, _, d, s in series}
    assert len(sid) == len(series) == 6  # 2 entities x 3 datasets, the deleted series made again once
    assert sorted(rows) == sorted([
        (sid[("1", "")], 10), (sid[("1", "")], 20), (sid[("1", "")], 30),
        (sid[("1", "urn:ngsi-ld:Dataset:a")], 31),  # its earlier instances went with its deleted series
        (sid[("1", "urn:ngsi-ld:Dataset:b")], 12), (sid[("1", "urn:ngsi-ld:Dataset:b")], 22),
        (sid[("1", "urn:ngsi-ld:Dataset:b")], 32),
        (sid[("2", "")], 10), (sid[("2", "")], 20),
        (sid[("2", "urn:ngsi-ld:Dataset:a")], 11), (sid[("2", "urn:ngsi-ld:Dataset:a")], 21),
        (sid[("2", "urn:ngsi-ld:Dataset:b")], 12), (sid[("2", "urn:ngsi-ld:Dataset:b")], 22),
    ])
