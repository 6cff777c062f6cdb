"""Geometry of the simulated district: a Guro-gu-like area of Seoul in WGS84 lon/lat.

The district is described by its bounding box, the centres of its administrative dongs (weighted
by how many things of each kind sit there), its subway stations, its traditional markets and its
main roads. The coordinates are approximate public-map positions in Guro-gu; nothing here claims
survey accuracy. Distances use a local equirectangular projection, which is exact to well under a
metre over a district of 8 km.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

LonLat = tuple[float, float]

# Metres per degree at the district's latitude (37.49 N): a local flat projection is enough here.
M_PER_DEG_LAT = 110_950.0
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(37.49))


@dataclass(frozen=True)
class BBox:
    """A lon/lat box; the district boundary used for placement and for tests."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def contains(self, point: LonLat) -> bool:
        lon, lat = point
        return self.min_lon <= lon <= self.max_lon and self.min_lat <= lat <= self.max_lat

    def clamp(self, point: LonLat) -> LonLat:
        lon = min(max(point[0], self.min_lon), self.max_lon)
        lat = min(max(point[1], self.min_lat), self.max_lat)
        return (lon, lat)


# Guro-gu lies inside about lon 126.81–126.90, lat 37.47–37.51; a small margin keeps every
# generated point (after jitter) strictly inside that box.
GURO_BBOX = BBox(126.813, 37.473, 126.899, 37.509)


@dataclass(frozen=True)
class Dong:
    """An administrative dong: Korean name, romanised name, centre, spread of its built area."""

    name: str
    roman: str
    center: LonLat
    spread_m: float = 450.0


GURO_DONGS: tuple[Dong, ...] = (
    Dong("신도림동", "Sindorim-dong", (126.8838, 37.5080)),
    Dong("구로1동", "Guro 1-dong", (126.8770, 37.4918)),
    Dong("구로2동", "Guro 2-dong", (126.8837, 37.4947)),
    Dong("구로3동", "Guro 3-dong", (126.8925, 37.4840), 380.0),
    Dong("구로4동", "Guro 4-dong", (126.8890, 37.4925)),
    Dong("구로5동", "Guro 5-dong", (126.8870, 37.5015)),
    Dong("가리봉동", "Garibong-dong", (126.8872, 37.4815), 300.0),
    Dong("고척1동", "Gocheok 1-dong", (126.8580, 37.5040)),
    Dong("고척2동", "Gocheok 2-dong", (126.8614, 37.4979)),
    Dong("개봉1동", "Gaebong 1-dong", (126.8531, 37.4904)),
    Dong("개봉2동", "Gaebong 2-dong", (126.8465, 37.4875)),
    Dong("개봉3동", "Gaebong 3-dong", (126.8520, 37.4963)),
    Dong("오류1동", "Oryu 1-dong", (126.8428, 37.4946)),
    Dong("오류2동", "Oryu 2-dong", (126.8335, 37.4900)),
    Dong("수궁동", "Sugung-dong", (126.8295, 37.4960)),
    Dong("항동", "Hang-dong", (126.8220, 37.4800), 350.0),
)


@dataclass(frozen=True)
class Place:
    """A named point: a subway station or a market."""

    name: str
    roman: str
    point: LonLat


GURO_STATIONS: tuple[Place, ...] = (
    Place("신도림역", "Sindorim Station", (126.8913, 37.5088)),
    Place("구로역", "Guro Station", (126.8818, 37.5031)),
    Place("개봉역", "Gaebong Station", (126.8583, 37.4946)),
    Place("오류동역", "Oryu-dong Station", (126.8437, 37.4945)),
    Place("온수역", "Onsu Station", (126.8225, 37.4921)),
    Place("남구로역", "Namguro Station", (126.8872, 37.4862)),
    Place("대림역", "Daerim Station", (126.8952, 37.4929)),
    Place("천왕역", "Cheonwang Station", (126.8387, 37.4866)),
)


@dataclass(frozen=True)
class Market:
    """A market or shopping arcade whose stores carry electric-board sensors (§4)."""

    name: str
    roman: str
    point: LonLat
    stores: int
    kind: str = "traditional"  # traditional | tools | electronics: decides the store mix
    radius_m: float = 90.0


GURO_MARKETS: tuple[Market, ...] = (
    Market("구로기계공구상가", "Guro Machine Tool Arcade", (126.8905, 37.4990), 1200, "tools", 160.0),
    Market("신도림테크노마트", "Sindorim Techno Mart", (126.8905, 37.5073), 600, "electronics", 70.0),
    Market("남구로시장", "Namguro Market", (126.8873, 37.4865), 250),
    Market("가리봉시장", "Garibong Market", (126.8870, 37.4810), 250),
    Market("구로시장", "Guro Market", (126.8810, 37.4950), 200),
    Market("고척근린시장", "Gocheok Neighbourhood Market", (126.8598, 37.5002), 180),
    Market("오류시장", "Oryu Market", (126.8444, 37.4945), 170),
    Market("개봉중앙시장", "Gaebong Central Market", (126.8545, 37.4918), 150),
)


@dataclass(frozen=True)
class Road:
    """A main road as a polyline; split into directional TOPIS-style links (§8.1, §8.2)."""

    name: str
    functional_class: str  # 기능유형구분 (§8.2): 도시고속도로 / 주간선도로 / 보조간선도로 / 지선도로
    points: tuple[LonLat, ...]
    lanes: int


GURO_ROADS: tuple[Road, ...] = (
    Road("경인로", "주간선도로", ((126.8380, 37.4938), (126.8550, 37.4920), (126.8660, 37.4970),
                                  (126.8820, 37.5030), (126.8930, 37.5080)), 3),
    Road("남부순환로", "주간선도로", ((126.8400, 37.4790), (126.8600, 37.4800), (126.8750, 37.4830),
                                     (126.8985, 37.4845)), 3),
    Road("서부간선도로", "도시고속도로", ((126.8845, 37.5085), (126.8868, 37.4950),
                                       (126.8885, 37.4790)), 2),
    Road("디지털로", "보조간선도로", ((126.8790, 37.4870), (126.8985, 37.4855)), 2),
    Road("구로중앙로", "보조간선도로", ((126.8800, 37.4920), (126.8890, 37.5075)), 2),
    Road("도림로", "보조간선도로", ((126.8930, 37.5000), (126.8985, 37.5080)), 2),
    Road("고척로", "보조간선도로", ((126.8450, 37.5000), (126.8660, 37.5040)), 2),
    Road("오리로", "보조간선도로", ((126.8320, 37.4760), (126.8380, 37.5000)), 2),
    Road("개봉로", "지선도로", ((126.8520, 37.4850), (126.8570, 37.5000)), 1),
    Road("새말로", "지선도로", ((126.8800, 37.5030), (126.8900, 37.5085)), 1),
)


def offset(point: LonLat, east_m: float, north_m: float) -> LonLat:
    """The point `east_m` metres east and `north_m` metres north of `point`."""
    return (point[0] + east_m / M_PER_DEG_LON, point[1] + north_m / M_PER_DEG_LAT)


def distance_m(a: LonLat, b: LonLat) -> float:
    dx = (b[0] - a[0]) * M_PER_DEG_LON
    dy = (b[1] - a[1]) * M_PER_DEG_LAT
    return math.hypot(dx, dy)


def bearing_deg(a: LonLat, b: LonLat) -> float:
    """Compass bearing from a to b, 0 = north, clockwise."""
    dx = (b[0] - a[0]) * M_PER_DEG_LON
    dy = (b[1] - a[1]) * M_PER_DEG_LAT
    return math.degrees(math.atan2(dx, dy)) % 360.0


def scatter(rng: random.Random, center: LonLat, spread_m: float, bbox: BBox = GURO_BBOX) -> LonLat:
    """A point normally scattered around `center`, redrawn until it lies inside the district."""
    for _ in range(32):
        point = offset(center, rng.gauss(0.0, spread_m), rng.gauss(0.0, spread_m))
        if bbox.contains(point):
            return point
    return bbox.clamp(center)


def in_disc(rng: random.Random, center: LonLat, radius_m: float, bbox: BBox = GURO_BBOX) -> LonLat:
    """A point uniformly inside a disc (a market's footprint), kept inside the district."""
    r = radius_m * math.sqrt(rng.random())
    a = rng.random() * 2 * math.pi
    return bbox.clamp(offset(center, r * math.cos(a), r * math.sin(a)))


def polyline_length_m(points: Sequence[LonLat]) -> float:
    return sum(distance_m(a, b) for a, b in itertools.pairwise(points))


def point_along(points: Sequence[LonLat], dist_m: float) -> LonLat:
    """The point at `dist_m` metres along a polyline (clamped to its ends)."""
    if dist_m <= 0:
        return points[0]
    walked = 0.0
    for a, b in itertools.pairwise(points):
        seg = distance_m(a, b)
        if walked + seg >= dist_m and seg > 0:
            f = (dist_m - walked) / seg
            return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)
        walked += seg
    return points[-1]


def heading_along(points: Sequence[LonLat], dist_m: float) -> float:
    """Compass heading of the polyline segment at `dist_m` metres."""
    walked = 0.0
    for a, b in itertools.pairwise(points):
        seg = distance_m(a, b)
        if walked + seg >= dist_m:
            return bearing_deg(a, b)
        walked += seg
    return bearing_deg(points[-2], points[-1]) if len(points) > 1 else 0.0


def split_polyline(points: Sequence[LonLat], piece_m: float) -> list[tuple[LonLat, ...]]:
    """Cut a polyline into consecutive pieces of about `piece_m` metres (at least one)."""
    total = polyline_length_m(points)
    count = max(1, round(total / piece_m))
    step = total / count
    pieces: list[tuple[LonLat, ...]] = []
    for i in range(count):
        start, end = i * step, (i + 1) * step
        inner = [p for p, d in vertices_with_distance(points) if start < d < end]
        pieces.append((point_along(points, start), *inner, point_along(points, end)))
    return pieces


def vertices_with_distance(points: Sequence[LonLat]) -> list[tuple[LonLat, float]]:
    out: list[tuple[LonLat, float]] = []
    walked = 0.0
    for i, p in enumerate(points):
        if i:
            walked += distance_m(points[i - 1], p)
        out.append((p, walked))
    return out


def circle_polygon(center: LonLat, radius_m: float, sides: int = 16) -> list[list[float]]:
    """A closed GeoJSON ring approximating a circle (for geofences, SAFE-R6)."""
    ring = []
    for i in range(sides):
        a = 2 * math.pi * i / sides
        lon, lat = offset(center, radius_m * math.sin(a), radius_m * math.cos(a))
        ring.append([round(lon, 7), round(lat, 7)])
    ring.append(ring[0])
    return ring


def distance_to_polyline_m(point: LonLat, points: Sequence[LonLat]) -> float:
    """Shortest distance from a point to a polyline (route deviation, SAFE-R2)."""
    best = math.inf
    px, py = point[0] * M_PER_DEG_LON, point[1] * M_PER_DEG_LAT
    for a, b in itertools.pairwise(points):
        ax, ay = a[0] * M_PER_DEG_LON, a[1] * M_PER_DEG_LAT
        bx, by = b[0] * M_PER_DEG_LON, b[1] * M_PER_DEG_LAT
        dx, dy = bx - ax, by - ay
        seg2 = dx * dx + dy * dy
        f = 0.0 if seg2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / seg2))
        best = min(best, math.hypot(px - (ax + f * dx), py - (ay + f * dy)))
    return best
