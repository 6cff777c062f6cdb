"""QA10 F8 (each backend): once retention has deleted all history of an attribute, its series row goes, and once
an entity has neither history nor a current state, its temporal entity row goes too, so that its id
(`Person:elder-2`) does not outlive its data. Ids that still have history or a current entity keep working, and
the writer's cached series ids do not send later writes into a deleted series."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import StoreFactory
from ucity.core.bus import Context
from ucity.core.clock import FakeClock, to_iso, to_micros
from ucity.ngsild import ops
from ucity.store.base import HistoryScope, Mutation, Store, TemporalQuery, TypeExpr
from ucity.store.postgres import PostgresStore
from ucity.store.sqlite import SqliteStore

T = "urn:ngsi-ld:tenant:default"
PERSON = "https://example.org/Person"
SENSOR = "https://example.org/Sensor"
LOCATION = "https://example.org/location"
BATTERY = "https://example.org/battery"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def reading(value: Any, days: float) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": to_iso(NOW - timedelta(days=days))}


@pytest.fixture
async def store(make_store: StoreFactory, store_backend: str, tmp_path: Path) -> AsyncIterator[Store]:
    # SQLite: the file's owner (as `ucity serve` runs it), the only one that drops series (the writer caches them)
    s = (SqliteStore(tmp_path / "owned.db", FakeClock(NOW), group_commit_ms=0.5, exclusive=True)
         if store_backend == "sqlite" else make_store(FakeClock(NOW), group_commit_ms=0.5))
    await s.start()
    yield s
    await s.stop()


async def ids(store: Store, table: str) -> list[str]:
    """The entity ids of the rows of `series` or `temporal_entities`."""
    column = "entity_id" if table == "series" else "id"
    sql = f"SELECT DISTINCT {column} FROM {table} ORDER BY 1"
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(store.path)
        try:
            return [r[0] for r in conn.execute(sql)]
        finally:
            conn.close()
    assert isinstance(store, PostgresStore)
    pg = await asyncpg.connect(store.url)
    try:
        return [r[0] for r in await pg.fetch(sql)]
    finally:
        await pg.close()


async def purge(store: Store, scope: HistoryScope, days: float, limit: int = 1000) -> int:
    total, cursor = 0, 0
    while cursor is not None:
        deleted, next_cursor = await store.purge_history(scope, to_micros(NOW - timedelta(days=days)), limit, cursor)
        total += deleted
        cursor = next_cursor
    return total


async def values(store: Store, entity: str, attr: str) -> list[Any]:
    found, _ = await store.temporal_query(T, TemporalQuery(ids=(entity,)))
    series = found[0].attrs.get(attr) if found else None
    return [i["value"] for i in series.instances] if series else []


def upsert(entity: str, types: list[str], attrs: dict[str, list[dict[str, Any]]]) -> Mutation:
    return Mutation(entity, ops.upsert_op({"id": entity, "type": types, "attrs": attrs}))


async def test_ids_whose_history_is_all_gone_leave_series_and_temporal_entities(store: Store) -> None:
    gone, partly, current = "urn:ngsi-ld:Person:elder-2", "urn:ngsi-ld:Person:elder-3", "urn:ngsi-ld:Person:elder-4"
    await store.append_history(T, gone, [PERSON], [(LOCATION, reading("a", 90)), (BATTERY, reading(5, 80))])
    await store.append_history(T, partly, [PERSON], [(LOCATION, reading("b", 90)), (BATTERY, reading(6, 1))])
    await store.mutate(T, [upsert(current, [PERSON], {LOCATION: [reading("c", 90)]})], Context())
    await store.append_history(T, "urn:ngsi-ld:Sensor:1", [SENSOR], [(LOCATION, reading("s", 90))])
    assert await ids(store, "series") == sorted([gone, partly, current, "urn:ngsi-ld:Sensor:1"])

    assert await purge(store, HistoryScope((PERSON,)), 30) == 4
    # elder-2: nothing left. elder-3: its battery history. elder-4: its current state (the id is in it anyway).
    assert await ids(store, "series") == sorted([partly, "urn:ngsi-ld:Sensor:1"])  # other types untouched
    assert await ids(store, "temporal_entities") == sorted([partly, current, "urn:ngsi-ld:Sensor:1"])
    assert not await store.temporal_entity_exists(T, gone)
    assert await store.temporal_entity_exists(T, current)
    assert await values(store, partly, BATTERY) == [6]
    assert await values(store, "urn:ngsi-ld:Sensor:1", LOCATION) == ["s"]

    # Writes after the purge: new series (no cached id of a deleted one), found by type and purged by the rules.
    await store.mutate(T, [upsert(current, [PERSON], {LOCATION: [reading("c2", 2)]})], Context())
    await store.append_history(T, gone, [PERSON], [(LOCATION, reading("a2", 2))])
    assert await values(store, current, LOCATION) == ["c2"]
    assert await values(store, gone, LOCATION) == ["a2"]
    by_type, _ = await store.temporal_query(T, TemporalQuery(types=TypeExpr(((PERSON,),))))
    assert {e.id for e in by_type} == {gone, partly, current}
    assert await purge(store, HistoryScope((PERSON,)), 1) == 2
    assert await ids(store, "series") == sorted([partly, "urn:ngsi-ld:Sensor:1"])


async def test_a_series_cached_by_the_writer_is_not_reused_after_its_deletion(store: Store) -> None:
    """The writer caches series ids: a series deleted by the purge must not receive the next write's instance
    (it would be kept under no entity, out of every query and every later purge)."""
    entity = "urn:ngsi-ld:Person:tracked"
    for days in (60, 50):
        await store.mutate(T, [upsert(entity, [PERSON], {LOCATION: [reading(days, days)]})], Context())
    assert await purge(store, HistoryScope((PERSON,)), 30) == 2
    assert await ids(store, "series") == []
    await store.mutate(T, [upsert(entity, [PERSON], {LOCATION: [reading("now", 0)]})], Context())
    await store.mutate(T, [upsert("urn:ngsi-ld:Person:other", [PERSON], {BATTERY: [reading(7, 0)]})], Context())
    assert await values(store, entity, LOCATION) == ["now"]
    assert await values(store, "urn:ngsi-ld:Person:other", BATTERY) == [7]
    assert await values(store, entity, BATTERY) == []


async def test_a_dry_run_and_a_partial_batch_drop_nothing(store: Store) -> None:
    entity = "urn:ngsi-ld:Person:elder-5"
    await store.append_history(T, entity, [PERSON], [(LOCATION, reading(d, d)) for d in (90, 80)])
    scope, before = HistoryScope((PERSON,)), to_micros(NOW - timedelta(days=30))
    assert await store.purge_history(scope, before, 1000, 0, dry_run=True) == (2, None)
    assert await store.purge_history(scope, before, 1, 0) == (1, 0)  # a full batch: the window again
    assert await ids(store, "series") == [entity]
    assert await store.purge_history(scope, before, 1, 0) == (1, 0)
    assert await store.purge_history(scope, before, 1, 0) == (0, None)  # the window is done: its empty series go
    assert await ids(store, "series") == []
    assert await ids(store, "temporal_entities") == []
