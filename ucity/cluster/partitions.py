"""Which partition an entity is in, and which worker owns a partition: stable hashes, no coordination.

An entity's partition depends only on (tenant, entity id), so every process computes the same one and
per-entity order holds within the partition's stream. Partitions are dealt to the live workers by
rendezvous hashing with bounded load: each partition goes to the worker that ranks highest for it
among those not yet holding their share (partitions / workers, rounded up for some). Every worker
computes the same deal from the same member list; plain rendezvous hashing would be as stable but,
with a few partitions, very uneven (5 and 11 of 16 for two workers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def partition_of(tenant: str, entity_id: str, partitions: int) -> int:
    """The partition (0 .. partitions-1) of an entity."""
    return _hash(f"{tenant}\x1f{entity_id}") % partitions


def owners(workers: Iterable[str], partitions: int) -> dict[int, str]:
    """partition -> the worker that should own it, among the live ones."""
    live = sorted(set(workers), key=lambda worker: (_hash(worker), worker))
    if not live:
        return {}
    # Exact shares: the first `extra` workers (in hash order) deal one partition more.
    base, extra = divmod(partitions, len(live))
    room = {worker: base + (1 if n < extra else 0) for n, worker in enumerate(live)}
    out: dict[int, str] = {}
    for partition in range(partitions):
        ranked = sorted(live, key=lambda worker: (_hash(f"{worker}\x1f{partition}"), worker), reverse=True)
        worker = next(w for w in ranked if room[w] > 0)
        room[worker] -= 1
        out[partition] = worker
    return out


def owner_of(partition: int, workers: Iterable[str], partitions: int) -> str | None:
    return owners(workers, partitions).get(partition)


def assigned(worker: str, workers: Iterable[str], partitions: int) -> set[int]:
    """The partitions `worker` should own while `workers` (and it) are alive."""
    return {p for p, owner in owners({*workers, worker}, partitions).items() if owner == worker}
