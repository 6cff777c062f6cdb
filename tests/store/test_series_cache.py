"""The writer's cache of series ids (each backend) is bounded by `store.series_cache`: beyond it the
series cached first are dropped, not all of them, and a dropped series is found again, never created
twice (its history stays one series)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.conftest import StoreFactory
from ucity.core.clock import FakeClock
from ucity.store.base import Store, TemporalQuery
from ucity.store.postgres import PostgresStore
from ucity.store.sqlite import SqliteStore

T = "urn:ngsi-ld:tenant:default"
SENSOR = "https://example.org/Sensor"
ATTRS = ("https://example.org/speed", "https://example.org/level")
BOUND = 6


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store(FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), group_commit_ms=0.5)
    s.series_cache_max = BOUND  # type: ignore[attr-defined]
    await s.start()
    yield s
    await s.stop()


def cached(store: Store) -> list[tuple[str, str]]:
    """(entity id, attribute) of every cached series id, oldest first."""
    if isinstance(store, SqliteStore):
        assert store._series_cached == sum(len(s) for s in store._series_cache.values())
        return [(key[1], str(attr)) for key, series in store._series_cache.items() for attr in series]
    assert isinstance(store, PostgresStore)
    return [(key[1], key[2]) for key in store._sids]


async def series_rows(store: Store) -> int:
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            return int(conn.execute("SELECT count(*) FROM series").fetchone()[0])
    assert isinstance(store, PostgresStore)
    return int(await store.pool.fetchval("SELECT count(*) FROM series"))


def entity(n: int) -> str:
    return f"urn:ngsi-ld:Sensor:{n}"


async def report(store: Store, n: int, minute: int) -> None:
    await store.append_history(T, entity(n), [SENSOR], [
        (attr, {"type": "Property", "value": minute, "observedAt": f"2026-03-01T00:{minute:02d}:00.000000Z"})
        for attr in ATTRS])


async def test_the_oldest_series_are_dropped_down_to_nine_tenths_of_the_bound(store: Store) -> None:
    for n in range(3):  # 6 series: the bound, nothing dropped
        await report(store, n, 0)
    assert {e for e, _ in cached(store)} == {entity(0), entity(1), entity(2)}
    await report(store, 3, 0)  # 8 series: the oldest go until at most 5 are left (SQLite: whole entities)
    kept = cached(store)
    assert len(kept) <= BOUND * 9 // 10 + len(ATTRS)
    assert entity(3) in {e for e, _ in kept} and entity(0) not in {e for e, _ in kept}
    assert entity(2) in {e for e, _ in kept}  # the newest others stay: not the whole cache was cleared


async def test_a_dropped_series_is_found_again_not_created_twice(store: Store) -> None:
    for minute in range(4):  # five entities in turn, more series than the bound
        for n in range(5):
            await report(store, n, minute)
            assert len(cached(store)) <= BOUND + len(ATTRS)
    assert await series_rows(store) == 5 * len(ATTRS)
    for n in range(5):
        [found], _ = await store.temporal_query(T, TemporalQuery(ids=(entity(n),)))
        for attr in ATTRS:
            assert [i["value"] for i in found.attrs[attr].instances] == [0, 1, 2, 3]
