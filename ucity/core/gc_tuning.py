"""Garbage-collector settings for a long-running ucity process (`ucity serve`).

Every write allocates many small containers (documents are dicts of lists of dicts), and with
CPython's defaults the collector ran a full collection every few thousand writes, scanning the
whole heap (the device registry, rule states, ...): measured at about a quarter of the ingest CPU
and pauses of 150-500 ms, which is what a notification's p99 latency then shows. So, once the
process has started:

* everything allocated at start-up is moved out of the collector's sight (`gc.freeze`): it lives
  as long as the process, scanning it again finds nothing;
* the young generation is collected after 50,000 allocations instead of 700, so the short-lived
  objects of a request or a batch are mostly gone before a collection, and fewer survive into
  the generations that full collections scan.

Reference counting still frees almost everything at once; only cycles wait for the collector.
"""

from __future__ import annotations

import gc

SERVER_THRESHOLDS = (50_000, 20, 20)


def settle(thresholds: tuple[int, int, int] = SERVER_THRESHOLDS) -> tuple[int, int, int]:
    """Freeze the start-up heap and set the thresholds; returns the previous thresholds."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return previous


def unsettle(previous: tuple[int, int, int]) -> None:
    """Undo `settle` (on shutdown, so that an embedding process gets its collector back)."""
    gc.unfreeze()
    gc.set_threshold(*previous)
