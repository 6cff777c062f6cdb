"""SQLite history rows as the writer stores them: a batch's entity documents, history documents and keys
are written at its flush, the instances serialized there (orjson's compact form, without the
instanceId, which derives from the rid), numbers in their column types; an observation delivered
several times, within one batch or across batches, is recorded once (the key table's trigger drops
the replaced document). Guards for any change of how the flush sends its rows."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ucity.core.bus import Context, EntityChange
from ucity.core.clock import FakeClock
from ucity.ngsild import ops
from ucity.store.base import Mutation, TemporalQuery
from ucity.store.sqlite import SqliteStore, instance_rid

T = "urn:ngsi-ld:tenant:default"
SENSOR = "https://example.org/Sensor"
SPEED = "https://example.org/speed"
NOTE = "https://example.org/note"
# Values whose text a second serializer could write differently: non-ASCII, escapes, exponents, big integers.
ODD = ["Überweg — 東京 \U0001f6a6", 'quote " backslash \\ newline \n tab \t nul \u0000', 1e-7, 1.5e300,
       -0.0, 2**62, 0.1, True, {"nested": [1, 2.5, {"x": "é"}]}]


def at(minute: int) -> str:
    return f"2026-01-01T00:{minute:02d}:00.000000Z"


def sensor(n: int) -> str:
    return f"urn:ngsi-ld:Sensor:{n}"


def store_of(path: Path) -> SqliteStore:
    return SqliteStore(path, FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), group_commit_ms=0.5)


def merge(n: int, minute: int, value: Any, note: Any = None) -> Mutation:
    attrs: dict[str, Any] = {SPEED: [{"type": "Property", "value": value, "observedAt": at(minute), "unitCode": "KMH"}]}
    if note is not None:
        attrs[NOTE] = [{"type": "Property", "value": note, "observedAt": at(minute)}]
    return Mutation(sensor(n), ops.merge_op({"id": sensor(n), "attrs": attrs}))


def create(n: int, note: bool = False) -> Mutation:
    attrs: dict[str, Any] = {SPEED: [{"type": "Property", "value": 0, "observedAt": at(0)}]}
    if note:
        attrs[NOTE] = [{"type": "Property", "value": "-", "observedAt": at(0)}]
    return Mutation(sensor(n), ops.create_op({"id": sensor(n), "type": [SENSOR], "attrs": attrs}))


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_a_batch_stores_its_documents_as_orjson_writes_them_without_instance_ids(tmp_path: Path) -> None:
    path = tmp_path / "rows.db"
    store = store_of(path)
    seen: list[EntityChange] = []
    store.on_commit(lambda _ctx, changes: seen.extend(changes))
    await store.start()
    try:
        await store.mutate(T, [create(n, note=True) for n in range(len(ODD))], Context())
        seen.clear()
        # One group commit: ten entity documents and twenty history rows written at its flush.
        outcomes = await store.mutate(T, [merge(n, 1, n * 1.5, note) for n, note in enumerate(ODD)], Context())
        assert not any(isinstance(o, Exception) for o in outcomes)
        assert store.commits == 2
        stored = {rid: (doc, kind) for rid, doc, kind in rows(path, "SELECT rid, doc, typeof(doc) FROM instance_docs")}
        published = [instance for change in seen for _, instance in change.instances]
        assert len(published) == 2 * len(ODD)
        for instance in published:
            rid = instance_rid(instance["instanceId"])
            assert rid is not None and rid in stored
            without_id = {k: v for k, v in instance.items() if k != "instanceId"}
            assert stored[rid] == (orjson.dumps(without_id).decode(), "text")
        keys = {r[0]: r[1:] for r in rows(path, "SELECT rid, typeof(sid), typeof(ts), typeof(seq), typeof(vnum), "
                                                 "typeof(created), typeof(rid), vnum, seq FROM instance_keys")}
        for instance in published:
            *kinds, vnum, seq = keys[instance_rid(instance["instanceId"])]
            value = instance["value"]
            expected = float(value) if isinstance(value, (int, float)) else None
            assert vnum == expected and seq == 0  # seq 0: an observed instance
            assert kinds == ["integer", "integer", "integer", "real" if expected is not None else "null", "integer",
                             "integer"]
        for n, note in enumerate(ODD):
            doc = await store.get_entity(T, sensor(n))
            assert doc is not None and doc["attrs"][NOTE][0]["value"] == note
            [(text, kind, modified)] = rows(path, f"SELECT doc, typeof(doc), modified_at FROM entities WHERE id = '{sensor(n)}'")
            assert kind == "text" and text == orjson.dumps(orjson.loads(text)).decode()
            assert orjson.loads(text)["attrs"][SPEED][0]["value"] == n * 1.5 and modified == doc["modifiedAt"]
        [(count,)] = rows(path, "SELECT count(*) FROM entities")
        assert count == len(ODD)
    finally:
        await store.stop()


async def test_a_redelivered_observation_is_recorded_once_within_a_batch_and_across_batches(tmp_path: Path) -> None:
    path = tmp_path / "redelivered.db"
    store = store_of(path)
    await store.start()
    try:
        await store.mutate(T, [create(1), create(2)], Context())
        # The same observation of sensor 1 three times in one group commit (the last one wins), and again later.
        await store.mutate(T, [merge(1, 5, 10), merge(2, 5, 20), merge(1, 5, 11), merge(1, 5, 12)], Context())
        await store.mutate(T, [merge(1, 5, 13), merge(1, 6, 14)], Context())
        [entity], _ = await store.temporal_query(T, TemporalQuery(ids=(sensor(1),)))
        assert [(i["observedAt"], i["value"]) for i in entity.attrs[SPEED].instances] == [
            (at(0), 0), (at(5), 13), (at(6), 14)]
        # The key table's trigger dropped every replaced document: no document without its key.
        [(docs, keys)] = rows(path, "SELECT (SELECT count(*) FROM instance_docs), (SELECT count(*) FROM instance_keys)")
        assert docs == keys == 3 + 2
    finally:
        await store.stop()

