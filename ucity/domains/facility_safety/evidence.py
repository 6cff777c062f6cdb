"""What the domain reads back from history: all through the store's temporal contract, in SQL.

Hourly means for the thermal fits, bucket means for trends, counts for completeness, the newest
assessed values, the logged events, and min/max per channel for the stuck check. Aggregation runs
in the database (`temporal_aggregate`), so a year of 10-minute readings is 8,760 rows here, not
52,560.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ucity.core.clock import from_micros, to_micros
from ucity.domains.facility_safety.models import iri, short
from ucity.store.base import Aggregation, Store, TemporalQuery

EVENT_ATTR = "safetyEvent"
MAX_PERIODS = 20_000


def _window(start: datetime, end: datetime) -> tuple[int, int]:
    return to_micros(start), to_micros(end)


async def bucket_means(store: Store, tenant: str, entity_id: str, names: Sequence[str], start: datetime,
                       end: datetime, period_s: float) -> dict[str, list[tuple[int, float]]]:
    """name -> [(bucket start micros, mean)] of each attribute's default instance, buckets from `start`."""
    low, high = _window(start, end)
    query = TemporalQuery(ids=(entity_id,), attrs=tuple(iri(n) for n in names), dataset_ids=("@none",),
                          time_from=low, time_to=high, limit_instances=MAX_PERIODS)
    entities, _ = await store.temporal_aggregate(tenant, query, Aggregation(("avg",), int(period_s * 1e6)))
    out: dict[str, list[tuple[int, float]]] = {n: [] for n in names}
    for entity in entities:
        for attr, series_list in entity.attrs.items():
            for series in series_list:
                out[short(attr)] = [(t, float(v["avg"])) for t, v in zip(series.times, series.values, strict=True)
                                    if v.get("avg") is not None]
    return out


async def counts(store: Store, tenant: str, entity_ids: Sequence[str], names: Sequence[str], start: datetime,
                 end: datetime, methods: tuple[str, ...] = ("totalCount",)) -> dict[str, dict[str, dict[str, Any]]]:
    """entity -> name -> {method: value} over the whole window, for many entities at once."""
    periods = await period_stats(store, tenant, entity_ids, names, start, end, methods, 0)
    return {e: {n: rows[0] for n, rows in by_name.items() if rows} for e, by_name in periods.items()}


async def period_stats(store: Store, tenant: str, entity_ids: Sequence[str], names: Sequence[str], start: datetime,
                       end: datetime, methods: tuple[str, ...], period_s: float
                       ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """entity -> name -> [{method: value} per period from `start`] (period 0: the whole window), many entities."""
    low, high = _window(start, end)
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for offset in range(0, len(entity_ids), 200):
        chunk = tuple(entity_ids[offset:offset + 200])
        query = TemporalQuery(ids=chunk, attrs=tuple(iri(n) for n in names), dataset_ids=("@none",), time_from=low,
                              time_to=high, entity_limit=len(chunk), limit_instances=MAX_PERIODS)
        entities, _ = await store.temporal_aggregate(tenant, query, Aggregation(methods, int(period_s * 1e6)))
        for entity in entities:
            row = out.setdefault(entity.id, {})
            for attr, series_list in entity.attrs.items():
                if series_list:
                    row[short(attr)] = [dict(v) for v in series_list[0].values]
    return out


async def newest(store: Store, tenant: str, entity_id: str, name: str, n: int, start: datetime,
                 end: datetime) -> list[tuple[datetime, float]]:
    """The newest `n` numeric values of an attribute (every datasetId), oldest first."""
    low, high = _window(start, end)
    query = TemporalQuery(ids=(entity_id,), attrs=(iri(name),), time_from=low, time_to=high, last_n=n,
                          limit_instances=n)
    entities, _ = await store.temporal_query(tenant, query)
    points: list[tuple[datetime, float]] = []
    for entity in entities:
        for series in entity.attrs.values():
            for micros, inst in zip(series.times, series.instances, strict=True):
                if isinstance(inst.get("value"), int | float):
                    points.append((from_micros(micros), float(inst["value"])))
    return sorted(points)[-n:]


async def events(store: Store, tenant: str, entity_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The sensor's logged rule events in the window (the history-only `safetyEvent`)."""
    low, high = _window(start, end)
    query = TemporalQuery(ids=(entity_id,), attrs=(iri(EVENT_ATTR),), time_from=low, time_to=high,
                          limit_instances=MAX_PERIODS)
    entities, _ = await store.temporal_query(tenant, query)
    return [inst["value"] for entity in entities for series in entity.attrs.values() for inst in series.instances
            if isinstance(inst.get("value"), dict)]


async def history(store: Store, tenant: str, entity_id: str, names: Sequence[str], start: datetime | None,
                  end: datetime | None, limit: int) -> dict[str, list[dict[str, Any]]]:
    """name -> instances (oldest first) of an entity's attributes in a window."""
    query = TemporalQuery(ids=(entity_id,), attrs=tuple(iri(n) for n in names),
                          time_from=to_micros(start) if start else None, time_to=to_micros(end) if end else None,
                          limit_instances=limit, last_n=limit)
    entities, _ = await store.temporal_query(tenant, query)
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for entity in entities:
        for attr, series in entity.attrs.items():
            out[short(attr)] = list(series.instances)
    return out
