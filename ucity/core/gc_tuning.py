"""Garbage-collector settings for a long-running ucity process (`ucity serve`).

Every write allocates many small containers (documents are dicts of lists of dicts), and with
CPython's defaults the collector ran a full collection every few thousand writes, scanning the
whole heap (the device registry, rule states, ...): measured at about a quarter of the ingest CPU
and pauses of 150-500 ms, which is what a notification's p99 latency then shows. So, once the
process has started:

* everything allocated at start-up is moved out of the collector's sight (`gc.freeze`): it lives
  as long as the process, scanning it again finds nothing;
* the young generation is collected after 200,000 allocations instead of 700, so the short-lived
  objects of a request or a batch are mostly gone before a collection, and fewer survive into
  the generations that full collections scan.

Why 200,000: a young collection scans what is alive at that moment, and with batches in flight
that is 80-100k objects whatever the threshold, so its cost is nearly fixed (30-60 ms) and the
threshold sets how often it is paid. Measured (2 shared cores, load 1.7-3; 5 alternated runs per
setting, medians [range]; in-process figures are CPU time, the least noisy):

    gen0 threshold                          50,000              200,000            1,000,000 (3 runs)
    ingest in-process, CPU-us/observation   38.5 [37.9-41.9]    35.0 [32.9-41.9]   35.7 [33.9-36.7]
    batch upsert in-process, CPU-us/entity  128 [112-140]       108 [98-146]       112 [102-113]
      of which collector CPU (40k entities) 0.6 s [0.5-0.9]     0.03 s [0.03-0.1]  0 (none ran)
      longest collection                    69 ms [53-100]      43 ms [32-59]      none in the run
    PATCH over HTTP, CPU-us/request         146 [126-156]       128 [117-170]      130 [122-131]
    notification p99 at 5,000 obs/s         154 ms [121-161]    131 ms [116-198]   128 ms [118-135]
    RSS, 10,000 devices (bench --quick)     158 MiB             158 MiB            158 MiB
    RSS, 100,000 devices (one run each)     620 MiB             620 MiB

200,000 was lower than 50,000 in 4 of 5 alternated pairs for ingest and upsert CPU and had the
shorter longest collection in 5 of 5; latency p99s moved by +-30 ms between runs of one setting,
so no latency gain is claimed. 1,000,000 saved no more CPU (the collections it skips in a run
come later, each scanning more) and lets a collection grow with the heap, so it was not taken.
gen1/gen2 = 10 instead of 20 (with 200,000) was no better: ingest 39.1, upsert 116 CPU-us.

`sys.setswitchinterval` (how long the event loop may wait for the GIL held by the store's writer
thread) was measured too at 5 ms (default), 1 ms and 0.5 ms, 3 alternated runs each: notification
p99 134 / 142 / 123 ms, PATCH p99 16.2 / 11.6 / 13.3 ms, ingest 36.7 / 37.6 / 37.6 CPU-us per
observation, with ranges of 30-60 % around each median: no difference the noise can support, so
the default stays.

Reference counting still frees almost everything at once; only cycles wait for the collector.
"""

from __future__ import annotations

import gc

SERVER_THRESHOLDS = (200_000, 20, 20)


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
