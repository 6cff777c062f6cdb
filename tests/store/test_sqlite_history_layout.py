"""SQLite history layout (migration 6): a database of the earlier layout upgraded in place keeps its
history and its instance ids; instances recorded since get ids derived from their rid, which are
unique, stable, never reused, and the ids the commit's changes carry."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from ucity.core.bus import Context, EntityChange
from ucity.core.clock import FakeClock, parse_iso, to_micros
from ucity.ngsild import ops
from ucity.store.base import Aggregation, Mutation, TemporalQuery
from ucity.store.migrations.sqlite import MIGRATIONS
from ucity.store.sqlite import SqliteStore, instance_id, instance_rid, open_connection

T = "urn:ngsi-ld:tenant:default"
S1 = "urn:ngsi-ld:Sensor:1"
SENSOR = "https://example.org/Sensor"
SPEED = "https://example.org/speed"
STATE = "https://example.org/state"
RECORDED = "2026-02-01T00:00:00.000000Z"
OLD_IDS = [f"urn:ngsi-ld:Instance:0b7c{n:04d}-2f6e-4d3a-9c1e-5a8b7c6d5e4f" for n in range(4)]


def at(minute: int) -> str:
    return f"2026-01-01T00:{minute:02d}:00.000000Z"


def old_layout_database(path: Path) -> None:
    """A database as ucity wrote it before migration 6: schema version 5, one `instances` table whose rows
    hold their random instance ids (in a column and in the document)."""
    conn = open_connection(str(path))
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for number, statements in MIGRATIONS:
        if number <= 5:
            for statement in statements:
                conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '5')")
    conn.execute("INSERT INTO tenants VALUES (?)", (T,))
    conn.execute("INSERT INTO temporal_entities VALUES (?, ?, ?)", (T, S1, orjson.dumps([SENSOR]).decode()))
    conn.execute("INSERT INTO series (sid, tenant, entity_id, attr, dataset_id) VALUES (1, ?, ?, ?, '')", (T, S1, SPEED))
    conn.execute("INSERT INTO series (sid, tenant, entity_id, attr, dataset_id) VALUES (2, ?, ?, ?, '')", (T, S1, STATE))
    created = to_micros(parse_iso(RECORDED))
    rows: list[tuple[Any, ...]] = []
    for n, (sid, value, observed) in enumerate([(1, 10, at(1)), (1, 20, at(2)), (2, "ok", None), (1, 30, at(3))]):
        doc = {"type": "Property", "value": value, "createdAt": RECORDED, "modifiedAt": RECORDED,
               "instanceId": OLD_IDS[n]}
        if observed:
            doc["observedAt"] = observed
        ts = to_micros(parse_iso(observed)) if observed else created
        vnum = float(value) if isinstance(value, int) else None
        rows.append((sid, ts, created, OLD_IDS[n], vnum, orjson.dumps(doc).decode(), 1 if observed else 0))
    conn.executemany("INSERT INTO instances (sid, ts, created, instance_id, vnum, doc, observed) VALUES (?,?,?,?,?,?,?)",
                     rows)
    conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    old_layout_database(path)
    return path


def store_of(path: Path) -> SqliteStore:
    return SqliteStore(path, FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), group_commit_ms=0.5)


async def history(store: SqliteStore, attr: str = SPEED) -> list[dict[str, Any]]:
    [entity], _ = await store.temporal_query(T, TemporalQuery(ids=(S1,)))
    return entity.attrs[attr].instances if attr in entity.attrs else []


async def test_an_old_database_is_upgraded_in_place_with_its_history_and_instance_ids(db: Path) -> None:
    store = store_of(db)
    await store.start()
    try:
        speeds = await history(store)
        assert [(i["value"], i["observedAt"], i["instanceId"]) for i in speeds] == [
            (10, at(1), OLD_IDS[0]), (20, at(2), OLD_IDS[1]), (30, at(3), OLD_IDS[3])]
        assert [(i["value"], i["instanceId"]) for i in await history(store, STATE)] == [("ok", OLD_IDS[2])]
        [entity], _ = await store.temporal_aggregate(T, TemporalQuery(ids=(S1,), attrs=(SPEED,)),
                                                     Aggregation(("sum", "max"), 0))
        assert entity.attrs[SPEED][0].values == [{"sum": 60.0, "max": 30.0}]
        # The old ids still address their instances, to change and to delete.
        assert await store.replace_history_instance(T, S1, SPEED, OLD_IDS[1], {"type": "Property", "value": 25})
        assert await store.delete_history(T, S1, SPEED, instance_id=OLD_IDS[0]) == 1
        assert [(i["value"], i["instanceId"]) for i in await history(store)] == [(25, OLD_IDS[1]), (30, OLD_IDS[3])]
        # An observation of a recorded time still replaces the recorded one.
        await store.append_history(T, S1, [SENSOR], [(SPEED, {"type": "Property", "value": 31, "observedAt": at(3)})])
        replaced = await history(store)
        assert [i["value"] for i in replaced] == [25, 31] and replaced[1]["instanceId"] not in OLD_IDS
    finally:
        await store.stop()
    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    conn.close()
    assert "instances" not in tables and {"instance_docs", "instance_keys"} <= tables
    assert int(version) == MIGRATIONS[-1][0]


async def test_new_instances_get_ids_derived_from_their_rid_and_an_old_rid_is_not_an_id(db: Path) -> None:
    store = store_of(db)
    await store.start()
    try:
        await store.append_history(T, S1, [SENSOR], [(SPEED, {"type": "Property", "value": v, "observedAt": at(10 + v)})
                                                     for v in (1, 2)])
        new = [i for i in await history(store) if i["instanceId"] not in OLD_IDS]
        rids = [instance_rid(i["instanceId"]) for i in new]
        assert len(new) == 2 and None not in rids and rids[0] != rids[1]
        assert all(rid is not None and rid > len(OLD_IDS) for rid in rids)  # after every migrated row
        # The derived form of a migrated instance's rid is not one of its ids: each instance has one id.
        assert not await store.replace_history_instance(T, S1, SPEED, instance_id(1), {"type": "Property", "value": 0})
        assert await store.delete_history(T, S1, SPEED, instance_id=instance_id(1)) == 0
        # Changing an instance keeps its id; it addresses that instance only, in its own attribute.
        first = new[0]["instanceId"]
        assert await store.replace_history_instance(T, S1, SPEED, first, {"type": "Property", "value": 7})
        assert [i["value"] for i in await history(store) if i["instanceId"] == first] == [7]
        assert not await store.replace_history_instance(T, S1, STATE, first, {"type": "Property", "value": 7})
        assert await store.delete_history(T, S1, STATE, instance_id=first) == 0
        assert await store.delete_history(T, S1, SPEED, instance_id=first) == 1
        assert first not in [i["instanceId"] for i in await history(store)]
    finally:
        await store.stop()


async def test_ids_are_never_reused_after_the_newest_instances_are_deleted(db: Path) -> None:
    store = store_of(db)
    await store.start()
    await store.append_history(T, S1, [SENSOR], [(SPEED, {"type": "Property", "value": 5, "observedAt": at(40)})])
    newest = (await history(store))[-1]["instanceId"]
    assert await store.delete_history(T, S1, SPEED, instance_id=newest) == 1
    await store.stop()
    again = store_of(db)  # a restart forgets everything but the database
    await again.start()
    try:
        await again.append_history(T, S1, [SENSOR], [(SPEED, {"type": "Property", "value": 6, "observedAt": at(41)})])
        latest = (await history(again))[-1]
        assert latest["value"] == 6 and latest["instanceId"] != newest
        assert (instance_rid(latest["instanceId"]) or 0) > (instance_rid(newest) or 0)
    finally:
        await again.stop()


async def test_committed_changes_carry_the_ids_history_reads_back(tmp_path: Path) -> None:
    store = store_of(tmp_path / "fresh.db")
    seen: list[EntityChange] = []
    store.on_commit(lambda _ctx, changes: seen.extend(changes))
    await store.start()
    try:
        entity = {"id": S1, "type": [SENSOR], "attrs": {SPEED: [{"type": "Property", "value": 1, "observedAt": at(1)}]}}
        await store.mutate(T, [Mutation(S1, ops.create_op(entity))], Context())
        for minute in (2, 3):
            patch = {"id": S1, "attrs": {SPEED: [{"type": "Property", "value": minute, "observedAt": at(minute)}]}}
            await store.mutate(T, [Mutation(S1, ops.merge_op(patch))], Context())
        published = [i["instanceId"] for change in seen for _, i in change.instances]
        recorded = [i["instanceId"] for i in await history(store)]
        assert published == recorded and len(set(recorded)) == 3
        assert all(instance_rid(i) is not None for i in recorded)
        doc = await store.get_entity(T, S1)  # the entity's own instance never gets a history id
        assert doc is not None and "instanceId" not in doc["attrs"][SPEED][0]
    finally:
        await store.stop()


def test_instance_ids_and_rids_convert_both_ways() -> None:
    assert instance_id(42) == "urn:ngsi-ld:Instance:42" and instance_rid("urn:ngsi-ld:Instance:42") == 42
    for other in (OLD_IDS[0], "urn:ngsi-ld:Instance:", "urn:ngsi-ld:Instance:-1", "urn:ngsi-ld:Instance:4 2",
                  "urn:ngsi-ld:Instance:١٢", "urn:ngsi-ld:Other:42", "urn:ngsi-ld:Instance:" + "9" * 30):
        assert instance_rid(other) is None, other


async def test_a_group_commit_that_fails_leaves_the_writer_with_the_committed_documents(tmp_path: Path) -> None:
    """The writer keeps committed entity documents parsed between commits; a rolled-back batch must not
    leave its uncommitted documents there (each of its writes is retried alone, as committed)."""
    store = SqliteStore(tmp_path / "fresh.db", FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), group_commit_ms=50)
    await store.start()

    def merge(value: int) -> Mutation:
        patch = {"id": S1, "attrs": {SPEED: [{"type": "Property", "value": value, "observedAt": at(value)}]}}
        return Mutation(S1, ops.merge_op(patch))

    def broken(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    try:
        entity = {"id": S1, "type": [SENSOR], "attrs": {SPEED: [{"type": "Property", "value": 1, "observedAt": at(1)}]}}
        await store.mutate(T, [Mutation(S1, ops.create_op(entity))], Context())
        results = await asyncio.gather(store.mutate(T, [merge(2)], Context()), store._call(broken),
                                       return_exceptions=True)
        assert not isinstance(results[0], BaseException) and isinstance(results[1], Exception)
        await store.mutate(T, [merge(3)], Context())
        doc = await store.get_entity(T, S1)
        assert doc is not None and doc["attrs"][SPEED][0]["value"] == 3
        assert [i["value"] for i in await history(store)] == [1, 2, 3]
    finally:
        await store.stop()
