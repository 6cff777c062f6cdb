"""Care households on the map only as privacy-masked areas: counts per grid cell, never a point.

The homes of elderly people living alone are personal data (domain-rules §3, PLAT-R10). The
dashboard therefore never receives their coordinates: this handler reads the `ElderlyHome`
entities through the NGSI-LD API on the server, counts them per square grid cell (`care_cell_m`,
300 m by default) and returns the cells as GeoJSON polygons. A cell with fewer than
`care_min_count` homes carries no count, only the label `<N`. The grid is fixed (anchored at
0°, 0°), so a cell neither moves nor shrinks when homes are added, and the browser can snap
a care alarm to the same cell (`cellDegrees`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from ucity.core.http import Req, Resp

METRES_PER_DEGREE = 111_320.0
PAGE = 1000
Point = tuple[float, float]
QueryHandler = Callable[[Req], Awaitable[Resp]]


def cell_degrees(cell_m: float, ref_lat: float) -> tuple[float, float]:
    """(longitude, latitude) size in degrees of a cell `cell_m` metres square at `ref_lat`."""
    return cell_m / (METRES_PER_DEGREE * math.cos(math.radians(ref_lat))), cell_m / METRES_PER_DEGREE


def reference_latitude(points: Iterable[Point]) -> float:
    """The latitude the cell width is computed at: the middle of the data's whole degree, stable as homes change."""
    lats = sorted(lat for _, lat in points)
    return math.floor(lats[len(lats) // 2]) + 0.5 if lats else 37.5


def mask(points: list[Point], cell_m: float, min_count: int) -> dict[str, Any]:
    """Points -> a GeoJSON FeatureCollection of grid cells with (suppressed) counts."""
    ref_lat = reference_latitude(points)
    dlon, dlat = cell_degrees(cell_m, ref_lat)
    counts = Counter((math.floor(lon / dlon), math.floor(lat / dlat)) for lon, lat in points)
    features = [_cell(ix, iy, dlon, dlat, n, min_count) for (ix, iy), n in sorted(counts.items())]
    return {"type": "FeatureCollection", "features": features, "total": len(points), "cellMetres": cell_m,
            "cellDegrees": [dlon, dlat], "minCount": min_count}


def _cell(ix: int, iy: int, dlon: float, dlat: float, count: int, min_count: int) -> dict[str, Any]:
    x0, y0, x1, y1 = ix * dlon, iy * dlat, (ix + 1) * dlon, (iy + 1) * dlat
    ring = [[round(x, 7), round(y, 7)] for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
    shown = count >= min_count
    return {"type": "Feature", "id": f"{ix}:{iy}", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"count": count if shown else None, "label": str(count) if shown else f"<{min_count}"}}


def points_of(entities: list[dict[str, Any]]) -> list[Point]:
    """The Point locations of keyValues entities (other geometries and missing locations are skipped)."""
    out: list[Point] = []
    for entity in entities:
        location = entity.get("location")
        if isinstance(location, dict) and location.get("type") == "Point":
            lon, lat = location["coordinates"][:2]
            out.append((float(lon), float(lat)))
    return out


def _decoded(resp: Resp) -> list[dict[str, Any]]:
    body = orjson.loads(resp.body) if isinstance(resp.body, bytes) else resp.body
    return body if isinstance(body, list) else []


class CareAreas:
    """`GET /api/v1/dashboard/care-areas`: the masked cells of the request's tenant."""

    def __init__(self, query: QueryHandler, cell_m: float, min_count: int) -> None:
        self.query = query
        self.cell_m = cell_m
        self.min_count = min_count

    async def homes(self, req: Req) -> list[Point]:
        """Every home's location, read page by page through the NGSI-LD query handler."""
        tenant = {k: v for k, v in req.headers.items() if k == "ngsild-tenant"}
        points: list[Point] = []
        offset = 0
        while True:
            params = {"type": ["ElderlyHome"], "attrs": ["location"], "options": ["keyValues"],
                      "limit": [str(PAGE)], "offset": [str(offset)]}
            page = _decoded(await self.query(Req("GET", "/ngsi-ld/v1/entities", params=params, headers=tenant,
                                                 base_url=req.base_url)))
            points += points_of(page)
            if len(page) < PAGE:
                return points
            offset += PAGE

    async def handle(self, req: Req) -> Resp:
        return Resp(200, mask(await self.homes(req), self.cell_m, self.min_count),
                    {"Cache-Control": "no-store"}, media_type="application/geo+json")
