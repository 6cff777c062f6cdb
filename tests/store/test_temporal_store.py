"""The store's history (each backend): paging per attribute, lastN, instance edits and deletion, and
aggregation in SQL (values checked against a Python computation, and its speed measured).
"""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import StoreFactory
from ucity.core.clock import FakeClock, from_micros, parse_iso, to_iso, to_micros
from ucity.store.base import AGGREGATE_METHODS, Aggregation, Store, TemporalQuery

T = "urn:ngsi-ld:tenant:default"
S1 = "urn:ngsi-ld:Sensor:1"
SENSOR = "https://example.org/Sensor"
SPEED = "https://example.org/speed"
STATE = "https://example.org/state"
ON = "https://example.org/on"
GPS = "urn:ngsi-ld:Dataset:gps"
START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = 3_600_000_000


def at(minutes: float) -> str:
    return to_iso(START + timedelta(minutes=minutes))


def micros(minutes: float) -> int:
    return to_micros(START + timedelta(minutes=minutes))


def prop(value: Any, minutes: float, **members: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at(minutes), **members}


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store(FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), group_commit_ms=0.5)
    await s.start()
    yield s
    await s.stop()


async def speeds(store: Store, values: list[float], every: float = 10, entity: str = S1) -> None:
    """One speed instance every `every` minutes from START, in one write."""
    await store.append_history(T, entity, [SENSOR], [(SPEED, prop(v, k * every)) for k, v in enumerate(values)])


# -- reading -------------------------------------------------------------------------------------
async def test_instances_come_oldest_first_with_their_times(store: Store) -> None:
    await store.append_history(T, S1, [SENSOR], [(SPEED, prop(3, 30)), (SPEED, prop(1, 10)), (SPEED, prop(2, 20))])
    [entity], total = await store.temporal_query(T, TemporalQuery(ids=(S1,)))
    series = entity.attrs[SPEED]
    assert (entity.id, entity.types, total) == (S1, [SENSOR], None)
    assert [i["value"] for i in series.instances] == [1, 2, 3]
    assert series.times == [micros(10), micros(20), micros(30)]
    assert not series.truncated


async def test_recorded_instances_get_an_instance_id_and_the_recording_time(store: Store) -> None:
    await speeds(store, [5])
    [entity], _ = await store.temporal_query(T, TemporalQuery(ids=(S1,)))
    instance = entity.attrs[SPEED].instances[0]
    assert instance["instanceId"].startswith("urn:ngsi-ld:Instance:")
    assert instance["createdAt"] == instance["modifiedAt"] == "2026-03-01T00:00:00.000000Z"


async def test_a_page_holds_the_oldest_instances_and_says_it_is_truncated(store: Store) -> None:
    await speeds(store, list(range(10)))
    [entity], _ = await store.temporal_query(T, TemporalQuery(ids=(S1,), limit_instances=4))
    assert [i["value"] for i in entity.attrs[SPEED].instances] == [0, 1, 2, 3]
    assert entity.attrs[SPEED].truncated


async def test_last_n_within_the_page_is_complete_beyond_it_is_truncated(store: Store) -> None:
    await speeds(store, list(range(10)))
    [within], _ = await store.temporal_query(T, TemporalQuery(ids=(S1,), last_n=3, limit_instances=4))
    [beyond], _ = await store.temporal_query(T, TemporalQuery(ids=(S1,), last_n=6, limit_instances=4))
    assert [i["value"] for i in within.attrs[SPEED].instances] == [7, 8, 9]
    assert not within.attrs[SPEED].truncated
    assert [i["value"] for i in beyond.attrs[SPEED].instances] == [6, 7, 8, 9]
    assert beyond.attrs[SPEED].truncated


async def test_the_window_is_inclusive_at_the_start_and_exclusive_at_the_end(store: Store) -> None:
    await speeds(store, list(range(6)))  # minutes 0, 10, ..., 50
    query = TemporalQuery(ids=(S1,), time_from=micros(10), time_to=micros(40))
    [entity], _ = await store.temporal_query(T, query)
    assert [i["value"] for i in entity.attrs[SPEED].instances] == [1, 2, 3]


async def test_datasets_of_one_attribute_are_merged_in_time_order_and_paged_together(store: Store) -> None:
    rows = [(SPEED, prop(k, k * 10, **({"datasetId": GPS} if k % 2 else {}))) for k in range(6)]
    await store.append_history(T, S1, [SENSOR], rows)
    [all_], _ = await store.temporal_query(T, TemporalQuery(ids=(S1,), limit_instances=5))
    [gps], _ = await store.temporal_query(T, TemporalQuery(ids=(S1,), dataset_ids=(GPS,)))
    [default], _ = await store.temporal_query(T, TemporalQuery(ids=(S1,), dataset_ids=("@none",)))
    assert [i["value"] for i in all_.attrs[SPEED].instances] == [0, 1, 2, 3, 4]
    assert all_.attrs[SPEED].truncated
    assert [i["value"] for i in gps.attrs[SPEED].instances] == [1, 3, 5]
    assert [i["value"] for i in default.attrs[SPEED].instances] == [0, 2, 4]


async def test_created_at_selects_by_recording_time(store: Store) -> None:
    await speeds(store, [1])
    assert isinstance(store.clock, FakeClock)
    store.clock.advance(timedelta(hours=1))
    await speeds(store, [2])
    query = TemporalQuery(ids=(S1,), timeproperty="createdAt", time_from=to_micros(parse_iso("2026-03-01T00:30:00Z")))
    [entity], _ = await store.temporal_query(T, query)
    assert [i["value"] for i in entity.attrs[SPEED].instances] == [2]
    assert entity.attrs[SPEED].times == [to_micros(parse_iso("2026-03-01T01:00:00Z"))]


async def test_entity_selection_counts_and_pages_and_can_require_instances(store: Store) -> None:
    for n in range(5):
        await speeds(store, [n], entity=f"urn:ngsi-ld:Sensor:{n}")
    await store.append_history(T, "urn:ngsi-ld:Sensor:empty", [SENSOR], [])
    page, total = await store.temporal_query(T, TemporalQuery(entity_limit=2, entity_offset=1, count=True))
    assert [e.id for e in page] == ["urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Sensor:2"] and total == 6
    with_data, total = await store.temporal_query(T, TemporalQuery(instances_only=True, count=True, entity_limit=9))
    assert total == 5 and "urn:ngsi-ld:Sensor:empty" not in [e.id for e in with_data]
    chosen, _ = await store.temporal_query(T, TemporalQuery(entity_ids_only=("urn:ngsi-ld:Sensor:3",)))
    nothing, none_total = await store.temporal_query(T, TemporalQuery(entity_ids_only=(), count=True))
    assert [e.id for e in chosen] == ["urn:ngsi-ld:Sensor:3"] and (nothing, none_total) == ([], 0)


# -- changing history ----------------------------------------------------------------------------
async def test_replacing_an_instance_merges_and_keeps_identity_dataset_and_creation(store: Store) -> None:
    await store.append_history(T, S1, [SENSOR], [(SPEED, prop(1, 0, datasetId=GPS, unitCode="KMH"))])
    [entity], _ = await store.temporal_query(T, TemporalQuery(ids=(S1,)))
    old = entity.attrs[SPEED].instances[0]
    assert isinstance(store.clock, FakeClock)
    store.clock.advance(timedelta(minutes=5))
    changed = await store.replace_history_instance(
        T, S1, SPEED, old["instanceId"], {"type": "Property", "value": 9, "observedAt": at(90)})
    [entity], _ = await store.temporal_query(T, TemporalQuery(ids=(S1,)))
    new = entity.attrs[SPEED].instances[0]
    assert changed
    assert new == {**old, "value": 9, "observedAt": at(90), "modifiedAt": "2026-03-01T00:05:00.000000Z"}
    assert entity.attrs[SPEED].times == [micros(90)]
    assert not await store.replace_history_instance(T, S1, SPEED, "urn:ngsi-ld:Instance:none", {"value": 1})


async def test_delete_history_counts_instances_and_series(store: Store) -> None:
    await store.append_history(T, S1, [SENSOR], [(SPEED, prop(1, 0)), (SPEED, prop(2, 1, datasetId=GPS)),
                                                 (STATE, prop("ok", 0))])
    [entity], _ = await store.temporal_query(T, TemporalQuery(ids=(S1,)))
    one = entity.attrs[SPEED].instances[0]["instanceId"]
    assert await store.delete_history(T, S1, SPEED, instance_id=one, all_datasets=True) == 1
    assert await store.delete_history(T, S1, SPEED) == 1  # the now empty default series
    assert await store.delete_history(T, S1, SPEED) == 0
    assert await store.delete_history(T, S1, SPEED, dataset_id=GPS) == 2
    assert await store.delete_history(T, S1) == 3  # state: instance + series, and the entity
    assert not await store.temporal_entity_exists(T, S1)


# -- aggregation ---------------------------------------------------------------------------------
async def test_every_method_per_hour_matches_python(store: Store) -> None:
    values = [float((k * 37) % 11) for k in range(30)]  # every 10 minutes: 6 per hour, 5 hours
    await speeds(store, values)
    [entity], _ = await store.temporal_aggregate(
        T, TemporalQuery(ids=(S1,), time_from=micros(0)), Aggregation(AGGREGATE_METHODS, HOUR))
    [series] = entity.attrs[SPEED]
    assert series.times == [micros(60 * h) for h in range(5)]
    assert series.ends == [micros(60 * h + 60) for h in range(5)]
    for hour, got in enumerate(series.values):
        chunk = values[hour * 6:hour * 6 + 6]
        assert got["totalCount"] == 6 and got["distinctCount"] == len(set(chunk))
        assert got["sum"] == sum(chunk) and got["avg"] == pytest.approx(statistics.mean(chunk))
        assert (got["min"], got["max"]) == (min(chunk), max(chunk))
        assert got["sumsq"] == sum(v * v for v in chunk)
        assert got["stddev"] == pytest.approx(statistics.stdev(chunk))


async def test_periods_start_at_time_from_else_at_the_oldest_instance(store: Store) -> None:
    await speeds(store, [1, 2, 3, 4], every=20)  # minutes 0, 20, 40, 60
    aligned, _ = await store.temporal_aggregate(
        T, TemporalQuery(ids=(S1,), time_from=micros(-30)), Aggregation(("sum",), HOUR))
    oldest, _ = await store.temporal_aggregate(T, TemporalQuery(ids=(S1,)), Aggregation(("sum",), HOUR))
    assert [v["sum"] for v in aligned[0].attrs[SPEED][0].values] == [3.0, 7.0]  # [-30, 30), [30, 90)
    assert aligned[0].attrs[SPEED][0].times == [micros(-30), micros(30)]
    assert [v["sum"] for v in oldest[0].attrs[SPEED][0].values] == [6.0, 4.0]  # [0, 60), [60, 120)


async def test_the_whole_window_is_one_period_bounded_by_the_window(store: Store) -> None:
    await speeds(store, [1, 2, 3, 4])
    query = TemporalQuery(ids=(S1,), time_from=micros(5), time_to=micros(100))
    [entity], _ = await store.temporal_aggregate(T, query, Aggregation(("avg", "totalCount")))
    [series] = entity.attrs[SPEED]
    assert (series.times, series.ends) == ([micros(5)], [micros(100)])
    assert series.values == [{"avg": 3.0, "totalCount": 3}]
    [unbounded], _ = await store.temporal_aggregate(T, TemporalQuery(ids=(S1,)), Aggregation(("totalCount",)))
    assert (unbounded.attrs[SPEED][0].times, unbounded.attrs[SPEED][0].ends) == ([micros(0)], [micros(30)])


async def test_booleans_count_true_as_one_and_texts_compare_as_text(store: Store) -> None:
    rows = [(ON, prop(v, k)) for k, v in enumerate([True, False, True, True])]
    rows += [(STATE, prop(v, k)) for k, v in enumerate(["b", "a", "c", "a"])]
    await store.append_history(T, S1, [SENSOR], rows)
    methods = ("sum", "avg", "min", "max", "distinctCount", "totalCount")
    [entity], _ = await store.temporal_aggregate(T, TemporalQuery(ids=(S1,)), Aggregation(methods))
    assert entity.attrs[ON][0].values == [
        {"sum": 3.0, "avg": 0.75, "min": 0.0, "max": 1.0, "distinctCount": 2, "totalCount": 4}]
    assert entity.attrs[STATE][0].values == [
        {"sum": None, "avg": None, "min": "a", "max": "c", "distinctCount": 3, "totalCount": 4}]


async def test_relationships_are_counted_and_keep_their_type(store: Store) -> None:
    rows = [("https://example.org/near", {"type": "Relationship", "object": f"urn:ngsi-ld:X:{k % 2}",
                                          "observedAt": at(k)}) for k in range(5)]
    await store.append_history(T, S1, [SENSOR], rows)
    [entity], _ = await store.temporal_aggregate(
        T, TemporalQuery(ids=(S1,)), Aggregation(("totalCount", "distinctCount", "avg")))
    [series] = entity.attrs["https://example.org/near"]
    assert series.attr_type == "Relationship"
    assert series.values == [{"totalCount": 5, "distinctCount": 2, "avg": None}]


async def test_datasets_are_aggregated_separately(store: Store) -> None:
    rows = [(SPEED, prop(k, k, **({"datasetId": GPS} if k % 2 else {}))) for k in range(6)]
    await store.append_history(T, S1, [SENSOR], rows)
    [entity], _ = await store.temporal_aggregate(T, TemporalQuery(ids=(S1,)), Aggregation(("sum",)))
    sums = {s.dataset_id: s.values[0]["sum"] for s in entity.attrs[SPEED]}
    assert sums == {None: 6.0, GPS: 9.0}


async def test_periods_are_paged_and_last_n_takes_the_newest(store: Store) -> None:
    await speeds(store, list(range(10)), every=60)  # one per hour
    first, _ = await store.temporal_aggregate(
        T, TemporalQuery(ids=(S1,), limit_instances=4), Aggregation(("sum",), HOUR))
    last, _ = await store.temporal_aggregate(
        T, TemporalQuery(ids=(S1,), last_n=3), Aggregation(("sum",), HOUR))
    assert [v["sum"] for v in first[0].attrs[SPEED][0].values] == [0.0, 1.0, 2.0, 3.0]
    assert first[0].attrs[SPEED][0].truncated
    assert [v["sum"] for v in last[0].attrs[SPEED][0].values] == [7.0, 8.0, 9.0]
    assert last[0].attrs[SPEED][0].times == [micros(60 * h) for h in (7, 8, 9)]


async def test_avg_per_hour_over_100000_instances(store: Store) -> None:
    """Hourly averages over 100,000 instances are right; their speed is measured in bench/, not here."""
    rows = [(SPEED, {"type": "Property", "value": float(k % 97), "observedAt": to_iso(from_micros(micros(0) + k * 10_000_000))})
            for k in range(100_000)]  # one every 10 s: about 278 hours
    await store.append_history(T, S1, [SENSOR], rows)
    await store.append_history(T, "urn:ngsi-ld:Sensor:2", [SENSOR], rows[:50_000])  # a neighbour in the index
    query, aggregation = TemporalQuery(ids=(S1,), limit_instances=1000), Aggregation(("avg",), HOUR)
    [entity], _ = await store.temporal_aggregate(T, query, aggregation)
    [series] = entity.attrs[SPEED]
    assert len(series.times) == 278 and series.values[0]["avg"] == pytest.approx(statistics.mean(k % 97 for k in range(360)))
    assert series.values[-1]["avg"] == pytest.approx(statistics.mean(k % 97 for k in range(277 * 360, 100_000)))
