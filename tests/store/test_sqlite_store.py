"""The store (each backend): group commit, per-mutation independence, commit order, durability."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import StoreFactory
from ucity.core.bus import Context, EntityChange
from ucity.core.clock import FakeClock
from ucity.core.errors import AlreadyExists
from ucity.ngsild import ops
from ucity.store.base import EntityQuery, Mutation, Store, TypeExpr

T = "urn:ngsi-ld:tenant:default"
BUILDING = "https://smartdatamodels.org/dataModel.Building/Building"
HEIGHT = "https://smartdatamodels.org/height"


def entity(n: int, height: float = 1.0) -> dict:
    return {"id": f"urn:ngsi-ld:Building:{n}", "type": [BUILDING],
            "attrs": {HEIGHT: [{"type": "Property", "value": height}]}}


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store(FakeClock(), group_commit_ms=5, group_commit_max=500)
    await s.start()
    yield s
    await s.stop()


async def test_concurrent_writes_are_group_committed(store: Store) -> None:
    results = await asyncio.gather(*[
        store.mutate(T, [Mutation(f"urn:ngsi-ld:Building:{n}", ops.create_op(entity(n)))], Context())
        for n in range(300)
    ])
    assert all(r[0].operation == "create" for r in results)
    assert store.committed_ops == 300
    assert store.commits < 30, f"{store.commits} commits for 300 concurrent writes: not grouped"
    docs, total = await store.query_entities(T, EntityQuery(types=TypeExpr(((BUILDING,),)), count=True, limit=5))
    assert total == 300 and docs[0]["id"] == "urn:ngsi-ld:Building:0"


async def test_a_failing_mutation_does_not_fail_its_neighbours(store: Store) -> None:
    await store.mutate(T, [Mutation("urn:ngsi-ld:Building:1", ops.create_op(entity(1)))], Context())
    results = await store.mutate(T, [
        Mutation("urn:ngsi-ld:Building:1", ops.create_op(entity(1))),
        Mutation("urn:ngsi-ld:Building:2", ops.create_op(entity(2))),
    ], Context())
    assert isinstance(results[0], AlreadyExists)
    assert not isinstance(results[1], Exception)
    assert await store.get_entity(T, "urn:ngsi-ld:Building:2") is not None


async def test_commit_callbacks_see_changes_in_commit_order_after_commit(store: Store) -> None:
    seen: list[tuple[str, str, float]] = []

    def on_commit(context: Context, changes: tuple[EntityChange, ...]) -> None:
        for change in changes:
            height = change.after["attrs"][HEIGHT][0]["value"] if change.after else -1
            seen.append((change.entity_id, change.operation, height))

    store.on_commit(on_commit)
    eid = "urn:ngsi-ld:Building:9"
    await store.mutate(T, [Mutation(eid, ops.create_op(entity(9, 1)))], Context())
    await asyncio.gather(*[
        store.mutate(T, [Mutation(eid, ops.merge_op({"id": eid, "attrs": {HEIGHT: [{"type": "Property", "value": v}]}}))],
                     Context())
        for v in range(2, 40)
    ])
    await store.mutate(T, [Mutation(eid, ops.delete_op())], Context())
    assert seen[0] == (eid, "create", 1)
    assert [h for _, op, h in seen[1:-1]] == list(range(2, 40))
    assert seen[-1] == (eid, "delete", -1)


async def test_history_keeps_every_written_instance(store: Store) -> None:
    eid = "urn:ngsi-ld:Building:5"
    await store.mutate(T, [Mutation(eid, ops.create_op(entity(5, 1)))], Context())
    for v in (2, 3):
        patch = {"id": eid, "attrs": {HEIGHT: [{"type": "Property", "value": v, "observedAt": f"2026-01-0{v}T00:00:00.000000Z"}]}}
        await store.mutate(T, [Mutation(eid, ops.merge_op(patch))], Context())
    from ucity.store.base import TemporalQuery

    entities, _ = await store.temporal_query(T, TemporalQuery(ids=(eid,)))
    values = sorted(i["value"] for i in entities[0].attrs[HEIGHT].instances)
    assert values == [1, 2, 3] and not entities[0].attrs[HEIGHT].truncated


async def test_data_survives_a_restart(make_store: StoreFactory) -> None:
    first = make_store(FakeClock())
    await first.start()
    await first.mutate(T, [Mutation("urn:ngsi-ld:Building:1", ops.create_op(entity(1, 7.5)))], Context())
    await first.stop()
    second = make_store(FakeClock())
    await second.start()
    doc = await second.get_entity(T, "urn:ngsi-ld:Building:1")
    await second.stop()
    assert doc is not None and doc["attrs"][HEIGHT][0]["value"] == 7.5


async def test_an_observation_written_again_is_recorded_once(store: Store) -> None:
    """A redelivered observation (same entity, attribute, datasetId and observedAt) replaces itself."""
    from ucity.store.base import TemporalQuery

    eid = "urn:ngsi-ld:Building:6"
    await store.mutate(T, [Mutation(eid, ops.create_op(entity(6, 1)))], Context())
    observed = "2026-01-05T00:00:00.000000Z"

    def patch(value: float, dataset: str | None = None) -> Mutation:
        instance = {"type": "Property", "value": value, "observedAt": observed}
        if dataset:
            instance["datasetId"] = dataset
        return Mutation(eid, ops.merge_op({"id": eid, "attrs": {HEIGHT: [instance]}}))

    await store.mutate(T, [patch(2)], Context())
    await store.mutate(T, [patch(2), patch(3)], Context())  # twice again, the second with a new value
    await asyncio.gather(store.mutate(T, [patch(3)], Context()), store.mutate(T, [patch(4, "urn:ngsi-ld:Dataset:b")], Context()))
    entities, _ = await store.temporal_query(T, TemporalQuery(ids=(eid,)))
    instances = entities[0].attrs[HEIGHT].instances
    at_time = sorted((i.get("datasetId", ""), i["value"]) for i in instances if i.get("observedAt") == observed)
    assert at_time == [("", 3), ("urn:ngsi-ld:Dataset:b", 4)]
    assert len(instances) == 3  # the creation's instance (no observedAt) and one per dataset at that time


def test_geo_changed_compares_the_geoproperty_values_of_the_touched_attributes() -> None:
    """What decides whether an entity's geo index rows are rewritten (SQLite)."""
    from ucity.store.sqlite import _geo_changed

    loc, other, name = "https://uri.etsi.org/ngsi-ld/location", "https://example.org/area", "https://example.org/name"

    def doc(**attrs: list[dict]) -> dict:
        return {"id": "urn:x:1", "type": ["T"], "attrs": {k.replace("L", loc).replace("A", other).replace("N", name): v
                                                          for k, v in attrs.items()}}

    def geo(x: float, dataset: str | None = None) -> dict:
        inst = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [x, 1]}}
        return {**inst, "datasetId": dataset} if dataset else inst

    prop = [{"type": "Property", "value": "x"}]
    before = doc(L=[geo(1)], N=prop)
    cases = [
        (doc(L=[geo(1)], N=[{"type": "Property", "value": "y"}]), {loc, name}, False),  # same point, new name
        (doc(L=[geo(2)], N=prop), {loc}, True),  # moved
        (doc(L=[geo(2)], N=prop), {name}, False),  # moved, but not among the touched attributes
        (doc(L=[{"type": "Property", "value": {"type": "Point", "coordinates": [1, 1]}}], N=prop), {loc}, True),
        (doc(N=prop), {loc}, True),  # location deleted
        (doc(L=[geo(1)], N=prop, A=[geo(5)]), {other}, True),  # a geo attribute added
        (doc(L=[geo(1), geo(3, "urn:d:1")], N=prop), {loc}, True),  # a second instance
        (doc(L=[geo(1)], N=prop), {"https://example.org/absent"}, False),
    ]
    for after, touched, expected in cases:
        assert _geo_changed(before, after, frozenset(touched)) is expected, (after, touched)
        assert _geo_changed(before, after, None) is (after["attrs"].get(loc) != before["attrs"][loc]
                                                      or other in after["attrs"]), (after, touched)
    assert _geo_changed(None, before, None) is True
    assert _geo_changed(before, before, frozenset({loc, name})) is False
