"""The SQLite writer's per-entity shortcuts: the one-instance path of `_geo_changed`, the batch's memo of
observedAt times (instances of several entities at one time, and at other times, in one commit), and the
entity cache keeping the very documents the batch produced (never changed afterwards)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ucity.core.bus import Context
from ucity.core.clock import FakeClock, parse_iso, to_micros
from ucity.ngsild import ops
from ucity.store.base import Mutation, TemporalQuery
from ucity.store.sql import geo_of as _geo_of
from ucity.store.sqlite import SqliteStore, _geo_changed

T = "urn:ngsi-ld:tenant:default"
LOC = "https://uri.etsi.org/ngsi-ld/location"
SPEED = "https://example.org/speed"


def _doc(attrs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"id": "urn:x:1", "type": ["T"], "attrs": attrs}


def _point(x: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [x, 1.0]}


def test_one_instance_geo_comparison_matches_the_general_one() -> None:
    """Each before/after pair of one instance: the result is whether the GeoProperty values (dict ones) differ."""
    instances: list[dict[str, Any]] = [
        {"type": "GeoProperty", "value": _point(1)},
        {"type": "GeoProperty", "value": _point(1), "observedAt": "2026-01-01T00:00:00Z"},  # same value
        {"type": "GeoProperty", "value": _point(2)},
        {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1.0, 2.0]}},
        {"type": "GeoProperty", "value": "not GeoJSON"},  # not indexed: compares as absent
        {"type": "GeoProperty", "value": "other text"},
        {"type": "Property", "value": _point(1)},
        {"type": "Property", "value": 3},
        {"type": "Relationship", "object": "urn:x:2"},
        {"value": 1},  # no type
    ]
    for was in instances:
        for now in instances:
            expected = _geo_of([was]) != _geo_of([now])
            got = _geo_changed(_doc({LOC: [was]}), _doc({LOC: [dict(now)]}), frozenset({LOC}))
            assert got is expected, (was, now)


async def _history_times(path: Path) -> list[tuple[str, list[int]]]:
    store = SqliteStore(path, FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), group_commit_ms=0.5)
    await store.start()
    try:
        times = ["2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:01.000000Z", "2026-01-01T00:00:00.5Z"]
        mutations = [
            Mutation(f"urn:ngsi-ld:S:{n}", ops.upsert_op({
                "id": f"urn:ngsi-ld:S:{n}", "type": ["https://example.org/S"],
                "attrs": {SPEED: [{"type": "Property", "value": n, "observedAt": times[n % 3]}]}}))
            for n in range(7)
        ]
        results = await store.mutate(T, mutations, Context())
        assert all(not isinstance(r, Exception) for r in results)
        found, _ = await store.temporal_query(T, TemporalQuery(attrs=(SPEED,), last_n=10))
        return [(e.id, e.attrs[SPEED].times) for e in found]
    finally:
        await store.stop()


def test_instances_of_one_commit_get_the_times_of_their_own_observedat(tmp_path: Path) -> None:
    found = dict(asyncio.run(_history_times(tmp_path / "s.db")))
    times = ["2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:01.000000Z", "2026-01-01T00:00:00.500000Z"]
    assert found == {f"urn:ngsi-ld:S:{n}": [to_micros(parse_iso(times[n % 3]))] for n in range(7)}


async def _cached_documents(path: Path) -> None:
    store = SqliteStore(path, FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), group_commit_ms=0.5)
    await store.start()
    try:
        ids = [f"urn:ngsi-ld:S:{n}" for n in range(3)]

        def upserts(value: int) -> list[Mutation]:
            return [Mutation(i, ops.upsert_op({"id": i, "type": ["https://example.org/S"], "attrs": {
                SPEED: [{"type": "Property", "value": value}],
                LOC: [{"type": "GeoProperty", "value": _point(value)}]}})) for i in ids]

        first = await store.mutate(T, upserts(1), Context())
        cache = store._entity_cache
        for entity_id, outcome in zip(ids, first, strict=True):
            assert not isinstance(outcome, Exception)
            assert cache[(T, entity_id)][1] is outcome.doc  # the batch's own document, not a copy
        kept = {key: (eid, doc, repr(doc)) for key, (eid, doc) in cache.items()}
        second = await store.mutate(T, upserts(2), Context())
        for key, (eid, doc, text) in kept.items():  # the earlier documents were not changed by the next batch
            assert repr(doc) == text
            assert cache[key][0] == eid and cache[key][1] is not doc
        for entity_id, outcome in zip(ids, second, strict=True):
            assert not isinstance(outcome, Exception)
            assert cache[(T, entity_id)][1] is outcome.doc
            assert await store.get_entity(T, entity_id) == outcome.doc
        assert set(list(cache)[-3:]) == {(T, i) for i in ids}  # the entities written last are the newest
    finally:
        await store.stop()


def test_the_entity_cache_keeps_the_committed_documents(tmp_path: Path) -> None:
    asyncio.run(_cached_documents(tmp_path / "s.db"))


async def _bounded_cache(path: Path) -> None:
    store = SqliteStore(path, FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), group_commit_ms=0.5, entity_cache=3)
    await store.start()
    try:
        def upsert(n: int, value: int) -> Mutation:
            entity_id = f"urn:ngsi-ld:S:{n}"
            return Mutation(entity_id, ops.upsert_op({"id": entity_id, "type": ["https://example.org/S"], "attrs": {
                SPEED: [{"type": "Property", "value": value}]}}))

        for n in range(5):  # more entities than the cache holds, one commit each
            await store.mutate(T, [upsert(n, 1)], Context())
        assert list(store._entity_cache) == [(T, f"urn:ngsi-ld:S:{n}") for n in (2, 3, 4)]
        await store.mutate(T, [upsert(2, 2)], Context())  # used again: now the newest, 3 is the oldest
        await store.mutate(T, [upsert(0, 2)], Context())  # read back from the table, and 3 evicted
        assert list(store._entity_cache) == [(T, f"urn:ngsi-ld:S:{n}") for n in (4, 2, 0)]
        for n, value in ((0, 2), (1, 1), (2, 2), (3, 1), (4, 1)):  # evicted or kept, every write was committed
            doc = await store.get_entity(T, f"urn:ngsi-ld:S:{n}")
            assert doc is not None and doc["attrs"][SPEED][0]["value"] == value
        await store.mutate(T, [Mutation("urn:ngsi-ld:S:4", ops.delete_op())], Context())  # a deleted entity is forgotten
        assert (T, "urn:ngsi-ld:S:4") not in store._entity_cache
    finally:
        await store.stop()


def test_the_entity_cache_keeps_the_most_recently_written_up_to_its_size(tmp_path: Path) -> None:
    """Least recently written first out, in O(1) (an OrderedDict): with more entities reporting than the
    cache holds, eviction must not walk the dict's deleted slots (it did, about 30 µs per entity)."""
    asyncio.run(_bounded_cache(tmp_path / "s.db"))


def test_the_cache_sizes_are_settings() -> None:
    from ucity.core.config import load_settings
    from ucity.store import open_store

    settings = load_settings(environment="test", data_dir="/nonexistent", store={"url": "sqlite:///x.db",
                                                                                  "entity_cache": 25_000,
                                                                                  "series_cache": 30_000})
    store = open_store(settings)
    assert isinstance(store, SqliteStore) and store.entity_cache_max == 25_000 and store.series_cache_max == 30_000
