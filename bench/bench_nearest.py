"""Nearest cameras (PLAT-R3): the grid index of ucity/ops/nearest.py over the simulator's 4,100 cameras.

Each query is the whole selection an event gets: the cameras within 500 m (1 km when fewer than 5),
the field-of-view preference, the 5 nearest in distance order. Points are drawn at random (seeded)
over the district's bounding box, so some fall where cameras are sparse and the radius widens.
Baseline, in the same run: the same selection measuring every camera (a linear scan). Every query's
answer is compared between the two. Target: p50 <= 2 ms (issue 5).

    python bench/bench_nearest.py [--queries 5000] [--quick]
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as c

from ucity.core.config import NearestSettings
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ops.nearest import CameraGrid, IndexedCamera, Selection, indexed, scan, select
from ucity.sim.city import CityConfig, build_cameras, build_facilities
from ucity.sim.entities import camera_entity

TARGET_P50_MS = 2.0


def city_cameras() -> list[IndexedCamera]:
    """The simulator's cameras as the index sees them: through their stored NGSI-LD entities."""
    cfg = CityConfig()
    ctx = core_context()
    docs = [normalize_entity(camera_entity(cam), ctx) for cam in build_cameras(cfg, build_facilities(cfg))]
    for doc in docs:
        doc["modifiedAt"] = "2026-01-01T00:00:00.000000Z"
    return [cam for cam in (indexed(d) for d in docs) if cam is not None]


def points(cameras: list[IndexedCamera], count: int, seed: int = 11) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    lons, lats = [cam.lon for cam in cameras], [cam.lat for cam in cameras]
    return [(rng.uniform(min(lons), max(lons)), rng.uniform(min(lats), max(lats))) for _ in range(count)]


def timed(run: Callable[[float, float], Selection], queries: list[tuple[float, float]]) -> tuple[list[float], list[Selection]]:
    """Milliseconds per query, and the answers."""
    times, answers = [], []
    for lon, lat in queries:
        start = time.perf_counter()
        answers.append(run(lon, lat))
        times.append((time.perf_counter() - start) * 1000)
    return times, answers


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--queries", type=int, default=5000, help="random query points (default 5000)")
    args = p.parse_args()
    count = 500 if args.quick else args.queries
    print(f"machine: {c.machine_line()}", flush=True)
    cameras = city_cameras()
    start = time.perf_counter()
    grid = CameraGrid()
    for cam in cameras:
        grid.upsert(cam)
    build_ms = (time.perf_counter() - start) * 1000
    settings = NearestSettings()
    queries = points(cameras, count)
    linear = scan(cameras)
    timed(lambda lon, lat: select(grid.within, lon, lat, settings), queries[:200])  # warm up
    index_ms, index_answers = timed(lambda lon, lat: select(grid.within, lon, lat, settings), queries)
    scan_ms, scan_answers = timed(lambda lon, lat: select(linear, lon, lat, settings), queries)
    same = sum(1 for a, b in zip(index_answers, scan_answers, strict=True)
               if [n.camera.id for n in a.cameras] == [n.camera.id for n in b.cameras] and a.radius_m == b.radius_m)
    widened = sum(1 for a in index_answers if a.widened)

    report = c.Report(f"Nearest cameras over {len(cameras):,} cameras, {count:,} random points")
    p50, p50_scan = c.percentile(index_ms, 50), c.percentile(scan_ms, 50)
    report.add(c.Row("grid index: p50 per event", p50, "ms", p50_scan, "linear scan p50", f"<= {TARGET_P50_MS} ms",
                     p50 <= TARGET_P50_MS))
    report.add(c.Row("grid index: p99 per event", c.percentile(index_ms, 99), "ms", c.percentile(scan_ms, 99),
                     "linear scan p99"))
    report.add(c.Row("grid index: mean per event", statistics.fmean(index_ms), "ms", statistics.fmean(scan_ms),
                     "linear scan mean"))
    report.add(c.Row("answers equal to the scan", same, f"of {count:,}", None, "", f"{count:,}", same == count))
    report.note(f"index built in {build_ms:.1f} ms; radius widened to 1 km for {widened:,} of {count:,} points; "
                f"mean cameras within 500 m: {statistics.fmean(a.in_range for a in index_answers):.0f}")
    report.print()


if __name__ == "__main__":
    main()
