"""PostgreSQL: the writer finds or creates the series of a batch's history rows in one statement
(`_SERIES_IDS`): the existing series by their unique key (an index probe each, never a scan of the whole
series table), the missing ones inserted and their ids returned. A series another process created after
the statement's snapshot is found by a further pass, never created twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ucity.core.clock import FakeClock
from ucity.store import postgres as pg
from ucity.store.base import TemporalQuery
from ucity.store.postgres import PostgresStore

T = "urn:ngsi-ld:tenant:default"
SENSOR = "https://example.org/Sensor"
ATTRS = ("https://example.org/speed", "https://example.org/level")


@pytest.fixture
async def url(postgres_url: str, store_backend: str) -> str:
    if store_backend != "postgresql":
        pytest.skip("PostgreSQL's writer (runs once, on the [postgresql] backend)")
    return postgres_url


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(url, FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), group_commit_ms=0.5)
    await s.start()
    yield s
    await s.stop()


def entity(n: int) -> str:
    return f"urn:ngsi-ld:Sensor:{n}"


async def report(store: PostgresStore, n: int, minute: int, attrs: tuple[str, ...] = ATTRS) -> None:
    await store.append_history(T, entity(n), [SENSOR], [
        (attr, {"type": "Property", "value": minute, "observedAt": f"2026-03-01T00:{minute:02d}:00.000000Z"})
        for attr in attrs])


async def series(store: PostgresStore) -> dict[tuple[str, str], int]:
    rows = await store.pool.fetch("SELECT entity_id, attr, sid FROM series")
    return {(r[0], r[1]): int(r[2]) for r in rows}


async def test_existing_and_new_series_in_one_batch(url: str, store: PostgresStore) -> None:
    await report(store, 0, 0, ATTRS[:1])
    # A restarted writer (nothing cached): entity 0's first attribute exists, its second does not.
    other = PostgresStore(url, FakeClock(datetime(2026, 3, 1, tzinfo=UTC)))
    await other.start()
    try:
        await report(other, 0, 1)
        await report(other, 1, 1)
        assert {(k[1], k[2]): sid for k, sid in other._sids.items()} == await series(store)
    finally:
        await other.stop()
    assert len(await series(store)) == 2 * len(ATTRS)  # none created twice
    [found], _ = await store.temporal_query(T, TemporalQuery(ids=(entity(0),)))
    assert [[i["value"] for i in found.attrs[a].instances] for a in ATTRS] == [[0, 1], [1]]  # one series each


async def test_the_lookup_probes_the_unique_index(store: PostgresStore) -> None:
    async with store.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO series (tenant, entity_id, attr, dataset_id) "
            "SELECT $1, 'urn:ngsi-ld:Sensor:' || n, a, '' FROM generate_series(1, 10000) AS n, unnest($2::text[]) AS a",
            T, list(ATTRS))
        await conn.execute("ANALYZE series")
        keys = [(T, entity(n), a, "") for n in range(1, 60) for a in ATTRS]
        async with conn.transaction():
            plan = "\n".join(r[0] for r in await conn.fetch(
                "EXPLAIN " + pg._SERIES_IDS, *[list(c) for c in zip(*keys, strict=True)]))
    assert "Seq Scan on series" not in plan
    assert "series_tenant_entity_id_attr_dataset_id_key" in plan


class _Conn:
    """A connection whose series statement sees nothing on its first pass: another process's series,
    committed after that statement's snapshot (its INSERT conflicted, its lookup did not see it)."""

    def __init__(self, found: list[tuple[Any, ...]], blind_passes: int) -> None:
        self.found, self.blind_passes, self.passes = found, blind_passes, 0

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return None  # the series epoch

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        assert sql == pg._SERIES_IDS
        self.passes += 1
        if self.passes <= self.blind_passes:
            return []
        wanted = set(zip(*args, strict=True))
        return [row for row in self.found if tuple(row[1:]) in wanted]


def rows(keys: list[tuple[str, str, str, str]]) -> list[Any]:
    return [pg._Row(key, {}, 0) for key in keys]


async def test_a_series_created_meanwhile_is_found_by_the_next_pass(store: PostgresStore) -> None:
    keys = [(T, entity(1), a, "") for a in ATTRS]
    conn = _Conn([(7, *keys[0]), (8, *keys[1])], blind_passes=1)
    assert await store._series_ids(conn, pg._Tx(), rows([keys[1], keys[0], keys[1]])) == [8, 7, 8]  # type: ignore[arg-type]
    assert conn.passes == 2


async def test_a_series_never_found_fails_the_batch(store: PostgresStore) -> None:
    keys = [(T, entity(1), ATTRS[0], "")]
    conn = _Conn([], blind_passes=pg._SERIES_PASSES)
    with pytest.raises(RuntimeError, match="series ids not found"):
        await store._series_ids(conn, pg._Tx(), rows(keys))  # type: ignore[arg-type]
    assert conn.passes == pg._SERIES_PASSES
