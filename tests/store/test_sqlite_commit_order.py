"""The SQLite writer resolves committed batches in commit order: writes queued at once, committed in several
batches, are answered (and their commit callbacks run) in the order they were queued."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ucity.core.bus import Context, EntityChange
from ucity.core.clock import FakeClock
from ucity.ngsild import ops
from ucity.store.base import Mutation
from ucity.store.sqlite import SqliteStore

T = "urn:ngsi-ld:tenant:default"
SENSOR = "https://uri.etsi.org/ngsi-ld/default-context/Sensor"


def create(n: int) -> Mutation:
    eid = f"urn:ngsi-ld:Sensor:{n}"
    return Mutation(eid, ops.create_op({"id": eid, "type": [SENSOR], "attrs": {}}))


async def test_commits_are_resolved_in_commit_order(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "o.db", FakeClock(), group_commit_ms=5, group_commit_max=3)
    seen: list[str] = []
    resolved: list[int] = []

    def committed(context: Context, changes: tuple[EntityChange, ...]) -> None:
        seen.extend(change.entity_id for change in changes)

    store.on_commit(committed)
    await store.start()
    try:
        async def write(n: int) -> None:
            await store.mutate(T, [create(n)], Context())
            resolved.append(n)

        await asyncio.gather(*(write(n) for n in range(40)))  # queued at once: batches of up to 3
    finally:
        await store.stop()
    assert seen == [f"urn:ngsi-ld:Sensor:{n}" for n in range(40)]
    assert resolved == list(range(40))
