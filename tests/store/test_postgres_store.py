"""What only the PostgreSQL store has: migrations by `ucity migrate`, monthly history partitions, several
processes writing the same entities, PostGIS indexes, and no credentials in its health.

The contract itself (group commit, history, aggregation, alarms ...) is tested on both backends by the
rest of tests/store and the API tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.pgserver import PostgresServer, SyncPg
from ucity.cli import main
from ucity.core.bus import Context
from ucity.core.clock import FakeClock
from ucity.core.errors import BadRequest
from ucity.ngsild import ops
from ucity.ngsild.geo import parse_geoquery
from ucity.store.base import EntityQuery, Mutation, Outcome, TemporalQuery, TypeExpr
from ucity.store.migrations.postgres import MIGRATIONS
from ucity.store.postgres import PostgresStore, partition_bounds

T = "urn:ngsi-ld:tenant:default"
SENSOR = "https://example.org/Sensor"
SPEED = "https://example.org/speed"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"


def sensor(n: int, lon: float = 126.9, lat: float = 37.5) -> dict[str, object]:
    return {"id": f"urn:ngsi-ld:Sensor:{n}", "type": [SENSOR],
            "attrs": {SPEED: [{"type": "Property", "value": 0}],
                      LOCATION: [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}]}}


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(postgres_url, FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), group_commit_ms=1)
    await s.start()
    yield s
    await s.stop()


def test_ucity_migrate_creates_the_schema_once(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    name = postgres_server.create_database(migrated=False)  # PostGIS only
    try:
        monkeypatch.setenv("UCITY_STORE__URL", postgres_server.dsn(name))
        assert main(["migrate"]) == 0
        assert main(["migrate"]) == 0  # nothing left to do
        db = SyncPg(postgres_server.dsn(name))
        try:
            assert db.fetch("SELECT value FROM meta WHERE key = 'schema_version'")[0][0] == str(MIGRATIONS[-1][0])
            indexes = {r[0] for r in db.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
        finally:
            db.close()
        assert {"entities_types", "entities_attr_names", "geo_geom", "geo_geog", "instances_observed"} <= indexes
    finally:
        postgres_server.drop_database(name)


async def test_history_goes_into_one_partition_per_month(store: PostgresStore) -> None:
    rows = [(SPEED, {"type": "Property", "value": float(m), "observedAt": f"2025-{m:02d}-15T00:00:00Z"})
            for m in (11, 12)] + [(SPEED, {"type": "Property", "value": 1.0, "observedAt": "2026-01-01T00:00:00Z"})]
    await store.append_history(T, "urn:ngsi-ld:Sensor:1", [SENSOR], rows)
    partitions = {r[0] for r in await store.pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'instances'::regclass")}
    assert {"instances_p202511", "instances_p202512", "instances_p202601"} <= partitions
    per_partition = dict(await store.pool.fetch(
        "SELECT tableoid::regclass::text, count(*) FROM instances GROUP BY 1"))
    assert per_partition == {"instances_p202511": 1, "instances_p202512": 1, "instances_p202601": 1}
    [entity], _ = await store.temporal_query(T, TemporalQuery(ids=("urn:ngsi-ld:Sensor:1",)))
    assert [i["value"] for i in entity.attrs[SPEED].instances] == [11.0, 12.0, 1.0]
    assert partition_bounds((2025, 12)) == ("1764547200000000", "1767225600000000")


async def test_rows_copied_in_from_outside_move_into_their_month(store: PostgresStore) -> None:
    """A bulk COPY into `instances` lands in the default partition; the month's partition takes it over."""
    await store.append_history(T, "urn:ngsi-ld:Sensor:1", [SENSOR], [])
    async with store.pool.acquire() as conn:
        sid = await conn.fetchval("INSERT INTO series (tenant, entity_id, attr) VALUES ($1, $2, $3) RETURNING sid",
                                  T, "urn:ngsi-ld:Sensor:1", SPEED)
        june = 1717200000000000  # 2024-06-01T00:00:00Z
        await conn.copy_records_to_table("instances", columns=["sid", "ts", "created", "instance_id", "observed",
                                                               "vnum", "doc"],
                                         records=[(sid, june, june, "urn:x:copied", True, 5.0,
                                                   {"type": "Property", "value": 5.0,
                                                    "observedAt": "2024-06-01T00:00:00.000000Z"})])
    rows = [(SPEED, {"type": "Property", "value": 6.0, "observedAt": "2024-06-02T00:00:00Z"})]
    await store.append_history(T, "urn:ngsi-ld:Sensor:1", [SENSOR], rows)
    per_partition = dict(await store.pool.fetch("SELECT tableoid::regclass::text, count(*) FROM instances GROUP BY 1"))
    assert per_partition == {"instances_p202406": 2}
    [entity], _ = await store.temporal_query(T, TemporalQuery(ids=("urn:ngsi-ld:Sensor:1",)))
    assert [i["value"] for i in entity.attrs[SPEED].instances] == [5.0, 6.0]


async def test_two_processes_writing_the_same_entities_lose_nothing(postgres_url: str) -> None:
    """Two stores (as two processes would) create and update the same entities concurrently."""
    first, second = (PostgresStore(postgres_url, FakeClock(), group_commit_ms=2) for _ in range(2))
    await first.start()
    await second.start()
    try:
        def increment(n: int) -> Mutation:
            def apply(before: dict[str, object] | None, now: str) -> ops.Outcome:
                if before is None:
                    return ops.create_op(sensor(n))(None, now)
                count = before["attrs"][SPEED][0]["value"]  # type: ignore[index]
                patch = {"attrs": {SPEED: [{"type": "Property", "value": count + 1}]}}
                return ops.merge_op(patch)(before, now)
            return Mutation(f"urn:ngsi-ld:Sensor:{n}", apply)

        writes = [s.mutate(T, [increment(n % 5)], Context()) for k in range(100) for n, s in
                  ((k, first), (k + 2, second))]
        results = await asyncio.gather(*writes)
        assert not [r for (r,) in results if isinstance(r, Exception)]
        docs, _ = await first.query_entities(T, EntityQuery(types=TypeExpr(((SENSOR,),)), limit=10))
        # 200 writes over 5 entities: each entity created once, then incremented by every other write.
        assert sorted(d["attrs"][SPEED][0]["value"] for d in docs) == [39] * 5
    finally:
        await first.stop()
        await second.stop()


async def test_near_is_measured_on_the_spheroid_and_uses_the_gist_index(store: PostgresStore) -> None:
    # 0.01° of latitude at 37.5°N is 1109.6 m on WGS84.
    await store.mutate(T, [Mutation(f"urn:ngsi-ld:Sensor:{n}", ops.create_op(sensor(n, 126.9, 37.5 + n / 100)))
                           for n in range(4)], Context())
    geo = parse_geoquery("near;maxDistance==2300", "Point", "[126.9,37.5]")
    found = await store.entity_ids(T, EntityQuery(geo=geo, geo_attr=LOCATION))
    assert found == ["urn:ngsi-ld:Sensor:0", "urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Sensor:2"]
    far = parse_geoquery("near;minDistance==1200", "Point", "[126.9,37.5]")
    assert await store.entity_ids(T, EntityQuery(geo=far, geo_attr=LOCATION)) == [
        "urn:ngsi-ld:Sensor:2", "urn:ngsi-ld:Sensor:3"]
    async with store.pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT eid FROM geo g WHERE ST_DWithin(g.geom::geography, "
            "ST_SetSRID(ST_MakePoint(126.9, 37.5), 4326)::geography, 2300)"))
        await conn.execute("RESET enable_seqscan")
    assert "geo_geog" in plan


async def test_a_regex_postgresql_cannot_read_is_a_bad_request(store: PostgresStore) -> None:
    with pytest.raises(BadRequest):
        await store.entity_ids(T, EntityQuery(id_pattern="(?P<n>x)"))


async def test_health_names_the_database_but_never_the_password(postgres_url: str) -> None:
    with_password = postgres_url.replace("postgres@", "postgres:s3cret@")
    health = PostgresStore(with_password).health()
    assert "s3cret" not in repr(health) and health["backend"] == "postgresql"


def _merge(entity_id: str, attrs: dict[str, Any]) -> Mutation:
    return Mutation(entity_id, ops.merge_op({"attrs": attrs}))


async def test_history_values_are_stored_exactly(store: PostgresStore) -> None:
    """History rows travel as one JSON text: numbers JSON's `numeric` cannot hold (-0, NaN, infinities)
    still reach the float8 column exactly, and the instance ids written are the documents' own."""
    values = [-0.0, 0.0, 1e16, 5e-324, 1.7976931348623157e308, 0.1, 7, True, float("nan"), float("inf"),
              -float("inf"), 2**70, "text"]
    rows = [(SPEED, {"type": "Property", "value": v, "observedAt": f"2026-02-01T00:00:{n:02d}Z"})
            for n, v in enumerate(values)]
    await store.append_history(T, "urn:ngsi-ld:Sensor:1", [SENSOR], rows)
    stored = await store.pool.fetch("SELECT vnum, instance_id, doc FROM instances ORDER BY ts")
    assert len(stored) == len(values)
    for (_, instance), (number, instance_id, doc) in zip(rows, stored, strict=True):
        value = instance["value"]
        expected = float(value) if isinstance(value, (int, float)) else None
        if expected is None or expected != expected:
            assert (number is None) == (expected is None) and (expected is None or number != number)
        else:
            assert number == expected and str(number) == str(expected)  # the sign of zero too
        assert instance_id == instance["instanceId"] == doc["instanceId"]
        assert instance_id.startswith("urn:ngsi-ld:Instance:")
    assert stored[-2][2]["value"] == 2**70  # beyond 64 bits: written by the standard library's encoder


async def test_a_redelivered_observation_is_recorded_once(store: PostgresStore) -> None:
    entity_id = "urn:ngsi-ld:Sensor:1"
    await store.mutate(T, [Mutation(entity_id, ops.create_op(sensor(1)))], Context())
    reading = {SPEED: [{"type": "Property", "value": 3, "observedAt": "2026-02-01T00:00:00Z"}]}
    # twice in one batch (one statement), then once more in a later one
    await asyncio.gather(*(store.mutate(T, [_merge(entity_id, reading)], Context()) for _ in range(2)))
    await store.mutate(T, [_merge(entity_id, reading)], Context())
    count = await store.pool.fetchval(
        "SELECT count(*) FROM instances i JOIN series s USING (sid) WHERE s.attr = $1 AND i.observed", SPEED)
    assert count == 1


async def test_geometries_are_rewritten_only_when_they_change(store: PostgresStore) -> None:
    entity_id = "urn:ngsi-ld:Sensor:1"
    await store.mutate(T, [Mutation(entity_id, ops.create_op(sensor(1)))], Context())

    async def geo_rows() -> list[tuple[object, ...]]:
        return [tuple(r) for r in await store.pool.fetch("SELECT xmin::text, ST_AsText(geom) FROM geo")]

    [(version, point)] = await geo_rows()
    assert point == "POINT(126.9 37.5)"
    await store.mutate(T, [_merge(entity_id, {SPEED: [{"type": "Property", "value": 4}]})], Context())
    assert await geo_rows() == [(version, point)]  # a reading leaves the location's row alone
    moved = {LOCATION: [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.0, 37.6]}}]}
    await store.mutate(T, [_merge(entity_id, moved)], Context())
    assert [p for _, p in await geo_rows()] == ["POINT(127 37.6)"]

    def drop_location(before: dict[str, Any] | None, now: str) -> Outcome:
        assert before is not None
        return Outcome({**before, "attrs": {k: v for k, v in before["attrs"].items() if k != LOCATION}}, "update",
                       frozenset({LOCATION}))

    await store.mutate(T, [Mutation(entity_id, drop_location)], Context())
    assert await geo_rows() == []


async def test_a_series_deleted_by_another_process_is_not_written_to(postgres_url: str) -> None:
    """The series epoch, read with the entity locks: a process that cached a series id learns that another
    one deleted the series, and records later observations in a new series, visible to queries."""
    first, second = (PostgresStore(postgres_url, FakeClock(), group_commit_ms=1) for _ in range(2))
    await first.start()
    await second.start()
    try:
        entity_id = "urn:ngsi-ld:Sensor:1"
        await first.mutate(T, [Mutation(entity_id, ops.create_op(sensor(1)))], Context())
        reading = {SPEED: [{"type": "Property", "value": 1, "observedAt": "2026-02-01T00:00:00Z"}]}
        await first.mutate(T, [_merge(entity_id, reading)], Context())  # `first` caches the series id
        assert await second.delete_history(T, entity_id, SPEED) > 0
        later = {SPEED: [{"type": "Property", "value": 2, "observedAt": "2026-02-01T00:00:01Z"}]}
        [outcome] = await first.mutate(T, [_merge(entity_id, later)], Context())
        assert not isinstance(outcome, Exception)
        [entity], _ = await second.temporal_query(T, TemporalQuery(ids=(entity_id,)))
        assert [i["value"] for i in entity.attrs[SPEED].instances] == [2]
        orphans = await first.pool.fetchval("SELECT count(*) FROM instances WHERE sid NOT IN (SELECT sid FROM series)")
        assert orphans == 0
    finally:
        await first.stop()
        await second.stop()


async def test_read_connections_take_the_configured_session_settings(postgres_url: str) -> None:
    """Reads run with JIT off and custom plans by default (`store.pg_read_settings`); the writer's connection
    keeps the server's own settings, and {} leaves the reads on them too."""
    from ucity.core.config import load_settings
    from ucity.store import open_store

    settings = load_settings(environment="test", data_dir="/nonexistent", store={"url": postgres_url})
    configured = open_store(settings)
    server_own = PostgresStore(postgres_url, read_settings={})
    assert isinstance(configured, PostgresStore)
    await configured.start()
    await server_own.start()
    try:
        shown = "SELECT current_setting('jit'), current_setting('plan_cache_mode')"
        assert tuple(await configured.pool.fetchrow(shown)) == ("off", "force_custom_plan")
        defaults = tuple(await server_own.pool.fetchrow(shown))
        assert defaults[1] == "auto"
        assert configured._write_pool is not None
        async with configured._write_pool.acquire() as conn:
            assert tuple(await conn.fetchrow(shown)) == defaults
    finally:
        await configured.stop()
        await server_own.stop()
