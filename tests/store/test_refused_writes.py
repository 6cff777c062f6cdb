"""A write the store refuses, and would refuse again, among others of the same call (each backend).

Before, a lone group of mutations (one ingest batch of a tenant is one group) that failed in a way that would
recur failed as a whole with `Unavailable`: every write sent with the poison was answered "retry", and an MQTT
batch was redelivered for ever. Now the group is committed a mutation at a time: the others commit, the poison
alone gets `WriteRefused` (500: sending it again cannot help). A failure that may pass stays `Unavailable`."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg

from tests.store.test_sqlite_store import store
from ucity.core.bus import Context, EntityChange
from ucity.core.errors import Unavailable, WriteRefused
from ucity.ngsild import ops
from ucity.store.base import Doc, Mutation, Outcome, Store

__all__ = ["store"]  # the fixture (each backend), imported for pytest
T = "urn:ngsi-ld:tenant:default"
SENSOR = "https://example.org/Sensor"
LEVEL = "https://example.org/level"


def create(n: int, value: object = 1.0) -> Mutation:
    entity_id = f"urn:ngsi-ld:Sensor:{n}"
    return Mutation(entity_id, ops.create_op({"id": entity_id, "type": [SENSOR],
                                              "attrs": {LEVEL: [{"type": "Property", "value": value}]}}))


def failing(n: int, error: Exception) -> Mutation:
    """A write ucity itself fails on (a bug an input triggers), every time it is applied."""

    def apply(before: Doc | None, now: str) -> Outcome:
        raise error

    return Mutation(f"urn:ngsi-ld:Sensor:{n}", apply)


async def test_a_write_ucity_fails_on_is_refused_alone_and_its_group_commits(store: Store) -> None:
    seen: list[str] = []

    def on_commit(context: Context, changes: tuple[EntityChange, ...]) -> None:
        seen.extend(change.entity_id for change in changes)

    store.on_commit(on_commit)
    results = await store.mutate(T, [create(1), failing(2, RuntimeError("a bug")), create(3)], Context())
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)
    assert isinstance(results[1], WriteRefused) and results[1].status == 500
    assert "RuntimeError: a bug" in results[1].detail
    assert await store.get_entity(T, "urn:ngsi-ld:Sensor:1") is not None
    assert await store.get_entity(T, "urn:ngsi-ld:Sensor:3") is not None
    assert await store.get_entity(T, "urn:ngsi-ld:Sensor:2") is None
    await asyncio.sleep(0)  # the callbacks run on the loop with the group's resolution
    assert seen == ["urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Sensor:3"]


async def test_groups_sent_together_with_a_poison_are_untouched(store: Store) -> None:
    results = await asyncio.gather(
        store.mutate(T, [create(1)], Context()),
        store.mutate(T, [create(2), failing(3, TypeError("unserializable"))], Context()),
        store.mutate(T, [create(4)], Context()),
    )
    assert not isinstance(results[0][0], Exception) and not isinstance(results[2][0], Exception)
    assert not isinstance(results[1][0], Exception) and isinstance(results[1][1], WriteRefused)
    for n in (1, 2, 4):
        assert await store.get_entity(T, f"urn:ngsi-ld:Sensor:{n}") is not None


async def test_a_failure_that_may_pass_stays_unavailable(store: Store, store_backend: str) -> None:
    """A full disk, say: the database's own error for it, which a later try may not meet."""
    error = (asyncpg.DiskFullError("could not extend file") if store_backend == "postgresql"
             else sqlite3.OperationalError("database or disk is full"))
    results = await store.mutate(T, [create(1), failing(2, error), create(3)], Context())
    assert all(isinstance(r, Unavailable) for r in results)  # the whole group: to be sent again
    assert await store.get_entity(T, "urn:ngsi-ld:Sensor:1") is None


async def test_text_the_database_rejects_is_refused_alone(store: Store, store_backend: str) -> None:
    """A NUL character: PostgreSQL's jsonb rejects it (a data exception, class 22); SQLite stores it."""
    results = await store.mutate(T, [create(1), create(2, "a\x00b"), create(3)], Context())
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)
    if store_backend == "postgresql":
        assert isinstance(results[1], WriteRefused)
        assert await store.get_entity(T, "urn:ngsi-ld:Sensor:2") is None
    else:
        assert not isinstance(results[1], Exception)
    assert await store.get_entity(T, "urn:ngsi-ld:Sensor:3") is not None
