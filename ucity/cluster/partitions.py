"""Which partition an entity is in, and which worker owns a partition: stable hashes, no coordination.

An entity's partition depends only on (tenant, entity id), so every process computes the same one and
per-entity order holds within the partition's stream. A partition's owner is chosen by rendezvous
(highest random weight) hashing over the live workers: when a worker joins or leaves, only the
partitions that move to or from it change hands.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def partition_of(tenant: str, entity_id: str, partitions: int) -> int:
    """The partition (0 .. partitions-1) of an entity."""
    return _hash(f"{tenant}\x1f{entity_id}") % partitions


def owner_of(partition: int, workers: Iterable[str]) -> str | None:
    """The worker that should own a partition, among the live ones (None if there is none)."""
    return max(workers, key=lambda worker: (_hash(f"{worker}\x1f{partition}"), worker), default=None)


def assigned(worker: str, workers: Iterable[str], partitions: int) -> set[int]:
    """The partitions `worker` should own while `workers` are alive."""
    live = sorted(set(workers) | {worker})
    return {p for p in range(partitions) if owner_of(p, live) == worker}
