"""NGSI-LD geo-queries (ETSI GS CIM 009 §4.10, GeoQuery data type §5.2.13), pure and framework-free.

A geo-query is four parameters: ``georel``, ``geometry``, ``coordinates`` and ``geoproperty``
(default ``location``). :func:`parse_geoquery` turns them, from URL parameters or from a JSON
body, into a frozen :class:`GeoQuery`; its :meth:`GeoQuery.matches` / :meth:`GeoQuery.matches_text`
test one stored GeoProperty value (a GeoJSON geometry), and :meth:`GeoQuery.bbox` gives a lon/lat
box for an R-tree / GiST prefilter, so that only candidates whose box intersects it are tested.

Semantics
    The relation reads "the entity's geometry <georel> the query geometry": ``within`` selects
    entities inside the query polygon, ``contains`` entities whose geometry contains the query
    geometry. ``within``, ``contains``, ``intersects``, ``equals`` (topological equality),
    ``disjoint`` and ``overlaps`` follow OGC Simple Features, evaluated planar on lon/lat degrees
    (as PostGIS ``geometry`` does), so a point on a polygon's boundary is not ``within`` it.

Distances (``near;maxDistance==d``, ``near;minDistance==d``, both may be given)
    In metres on the Earth. Both geometries are projected onto a local plane centred at the query
    geometry (the point itself, or the centre of its bounding box): x = N·cos(lat0)·Δlon,
    y = M·Δlat, with M and N the WGS84 meridional and prime-vertical radii of curvature at lat0,
    then measured with shapely. At lat0 the plane matches the ellipsoid to first order, so the
    residual error comes from the meridians converging away from lat0 and grows with distance:
    measured against Vincenty's ellipsoidal distance near Seoul (37.5°N), the worst case over all
    bearings is 0.02 % at 10 km and 0.12 % at 50 km (tests/ngsild/test_geo.py checks 0.05 % and
    0.2 %). Because the map is affine in lon/lat, the prefilter box for ``maxDistance`` is exact
    rather than estimated.
    (A sphere of radius 6,371,008.8 m, see :func:`haversine_m`, would differ from WGS84 by up to
    0.56 % depending on latitude and direction; the local radii avoid that error.)

Limits
    Geometries that cross the antimeridian are not understood (GeoJSON asks producers to split
    them); distances are not meaningful within about a degree of the poles, nor for ranges far
    beyond city scale (hundreds of kilometres), where the flat-plane error grows with distance.
    Only 2-D matters: an altitude, when given, is validated and then ignored.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import shapely
from shapely.affinity import affine_transform
from shapely.errors import GEOSException
from shapely.geometry import GeometryCollection, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

__all__ = [
    "EARTH_RADIUS_M",
    "QUERY_GEOMETRY_TYPES",
    "BBox",
    "GeoQuery",
    "GeoQueryError",
    "GeoRel",
    "geometry_bbox",
    "haversine_m",
    "parse_geoquery",
    "parse_geoquery_json",
    "validate_geojson",
]

BBox = tuple[float, float, float, float]
"""A lon/lat bounding box ``(minx, miny, maxx, maxy)``."""

EARTH_RADIUS_M: Final = 6_371_008.8
"""Mean Earth radius (IUGG), used by :func:`haversine_m`."""

_WGS84_A: Final = 6_378_137.0
_WGS84_F: Final = 1 / 298.257223563
_WGS84_E2: Final = _WGS84_F * (2 - _WGS84_F)

DEFAULT_GEOPROPERTY: Final = "location"

QUERY_GEOMETRY_TYPES: Final = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)
# A stored GeoProperty may also be a GeometryCollection (it is a GeoJSON geometry); a query may not.
_GEOJSON_GEOMETRY_TYPES: Final = QUERY_GEOMETRY_TYPES | {"GeometryCollection"}
_MAX_COLLECTION_DEPTH: Final = 8

# Distances as the spec's ABNF writes them: a plain non-negative decimal, no sign, no "inf".
_DISTANCE_RE: Final = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?")
_DISTANCE_NAMES: Final = ("maxDistance", "minDistance")

# Parsed candidates, keyed by their stored JSON text: the same stored geometry is tested against
# every query that reaches it, and parsing + validating dominates a single predicate.
_CANDIDATE_CACHE_SIZE: Final = 8192


class GeoQueryError(ValueError):
    """A geo-query or a GeoJSON geometry is missing, malformed or invalid (NGSI-LD BadRequestData).

    `str()` is English (rules and device decoding wrap it in their own texts); `ko` is the same in Korean, and
    `bilingual` says both as an NGSI-LD detail does."""

    def __init__(self, message: str, ko: str = "") -> None:
        super().__init__(message)
        self.ko = ko

    def bilingual(self, ko_prefix: str, en_prefix: str) -> str:
        """"<ko_prefix>: <ko> / <en_prefix>: <message>", e.g. ("잘못된 지오쿼리", "invalid geo-query")."""
        return f"{ko_prefix}: {self.ko or '해석할 수 없음'} / {en_prefix}: {self}"


class GeoRel(enum.StrEnum):
    """The NGSI-LD geo-relationships (CIM 009 §4.10)."""

    NEAR = "near"
    WITHIN = "within"
    CONTAINS = "contains"
    INTERSECTS = "intersects"
    EQUALS = "equals"
    DISJOINT = "disjoint"
    OVERLAPS = "overlaps"


# ---------------------------------------------------------------------------------------------
# Parsing a geo-query
# ---------------------------------------------------------------------------------------------


def parse_geoquery(
    georel: str | None,
    geometry: str | None,
    coordinates: str | Sequence[Any] | None,
    geoproperty: str | None = None,
) -> GeoQuery | None:
    """Build a :class:`GeoQuery` from URL parameters or from a JSON body (``geoQ``).

    ``coordinates`` is a JSON array as text (``[127.0,37.5]``; the outer brackets may be left
    out) or an already decoded list. Returns None when none of georel, geometry and coordinates
    is given (``geoproperty`` alone means nothing and is ignored); raises :class:`GeoQueryError`
    when only some are given or any is invalid.
    """
    given = {"georel": georel, "geometry": geometry, "coordinates": coordinates}
    missing = [name for name, value in given.items() if value is None]
    if len(missing) == len(given):
        return None
    if missing:
        present = [name for name in given if name not in missing]
        raise GeoQueryError(
            f"incomplete geo-query: {', '.join(present)} given but {', '.join(missing)} missing"
            " (georel, geometry and coordinates go together)",
            f"{', '.join(present)}만 있고 {', '.join(missing)} 없음(georel, geometry, coordinates는 함께 씀)",
        )
    rel, max_distance, min_distance = _parse_georel(georel)
    geometry_type = _parse_geometry_type(geometry)
    raw = _load_coordinates(coordinates)
    shapely_geometry = _query_geometry(geometry_type, raw)
    return GeoQuery(
        georel=rel,
        geometry=shapely_geometry,
        geometry_type=geometry_type,
        coordinates=json.dumps(raw, separators=(",", ":")),
        max_distance=max_distance,
        min_distance=min_distance,
        geoproperty=_parse_geoproperty(geoproperty),
    )


def parse_geoquery_json(geoq: Mapping[str, Any]) -> GeoQuery:
    """Build a :class:`GeoQuery` from its JSON form (a subscription's ``geoQ``); all parts required."""
    if not isinstance(geoq, Mapping):
        raise GeoQueryError("a GeoQuery must be a JSON object", "GeoQuery는 JSON 객체여야 함")
    query = parse_geoquery(geoq.get("georel"), geoq.get("geometry"), geoq.get("coordinates"), geoq.get("geoproperty"))
    if query is None:
        raise GeoQueryError("a GeoQuery needs georel, geometry and coordinates",
                            "GeoQuery에는 georel, geometry, coordinates가 필요함")
    return query


def _parse_georel(text: object) -> tuple[GeoRel, float | None, float | None]:
    """Split ``near;maxDistance==2000`` into the relation and its distances (metres)."""
    if not isinstance(text, str):
        raise GeoQueryError("georel must be a string", "georel은 문자열이어야 함")
    head, *modifiers = (part.strip() for part in text.split(";"))
    rel = _georel_kind(head)
    if rel is not GeoRel.NEAR:
        if modifiers:
            raise GeoQueryError(f"georel {rel.value!r} takes no modifiers, got {text!r}",
                                f"georel {rel.value!r}에는 수식어를 붙일 수 없음({text!r})")
        return rel, None, None
    distances = _near_distances(modifiers)
    if not distances:
        raise GeoQueryError("georel 'near' needs maxDistance or minDistance, e.g. 'near;maxDistance==2000'",
                            "georel 'near'에는 maxDistance나 minDistance가 필요함(예: 'near;maxDistance==2000')")
    max_d, min_d = distances.get("maxDistance"), distances.get("minDistance")
    if max_d is not None and min_d is not None and min_d > max_d:
        raise GeoQueryError(f"minDistance ({min_d:g}) is greater than maxDistance ({max_d:g})",
                            f"minDistance({min_d:g})가 maxDistance({max_d:g})보다 큼")
    return rel, max_d, min_d


def _georel_kind(head: str) -> GeoRel:
    try:
        return GeoRel(head)
    except ValueError:
        known = ", ".join(rel.value for rel in GeoRel)
        raise GeoQueryError(f"unknown georel {head!r}; expected one of {known}",
                            f"알 수 없는 georel {head!r}(가능: {known})") from None


def _near_distances(modifiers: list[str]) -> dict[str, float]:
    distances: dict[str, float] = {}
    for modifier in modifiers:
        name, sep, value = (part.strip() for part in modifier.partition("=="))
        if not sep or name not in _DISTANCE_NAMES:
            raise GeoQueryError(
                f"invalid near modifier {modifier!r}; expected maxDistance==<metres> or minDistance==<metres>",
                f"잘못된 near 수식어 {modifier!r}(maxDistance==<미터> 또는 minDistance==<미터>)",
            )
        if name in distances:
            raise GeoQueryError(f"{name} given twice in georel", f"georel에 {name}이(가) 두 번 있음")
        distances[name] = _parse_distance(name, value)
    return distances


def _parse_distance(name: str, value: str) -> float:
    if not _DISTANCE_RE.fullmatch(value):
        raise GeoQueryError(f"{name} must be a non-negative number of metres, got {value!r}",
                            f"{name}은(는) 0 이상의 미터 수여야 함({value!r})")
    distance = float(value)
    if not math.isfinite(distance):
        raise GeoQueryError(f"{name} must be finite, got {value!r}", f"{name}은(는) 유한한 수여야 함({value!r})")
    return distance


def _parse_geometry_type(geometry: object) -> str:
    if not isinstance(geometry, str) or geometry not in QUERY_GEOMETRY_TYPES:
        known = ", ".join(sorted(QUERY_GEOMETRY_TYPES))
        raise GeoQueryError(f"unknown geometry {geometry!r}; expected one of {known}",
                            f"알 수 없는 geometry {geometry!r}(가능: {known})")
    return geometry


def _parse_geoproperty(geoproperty: object) -> str:
    if geoproperty is None:
        return DEFAULT_GEOPROPERTY
    if not isinstance(geoproperty, str) or not geoproperty.strip():
        raise GeoQueryError("geoproperty must be a non-empty attribute name", "geoproperty는 비어 있지 않은 속성 이름이어야 함")
    return geoproperty.strip()


def _load_coordinates(coordinates: object) -> Any:
    """Decode coordinates given as JSON text; pass a decoded list through."""
    if isinstance(coordinates, (list, tuple)):
        return coordinates
    if not isinstance(coordinates, str):
        raise GeoQueryError("coordinates must be a JSON array", "coordinates는 JSON 배열이어야 함")
    text = coordinates.strip()
    if not text:
        raise GeoQueryError("coordinates are empty", "coordinates가 비어 있음")
    if not text.startswith("["):
        # Some clients send "127.0,37.5" for a point; the brackets carry no information.
        text = f"[{text}]"
    try:
        return json.loads(text, parse_constant=_reject_json_constant)
    except GeoQueryError:
        raise
    except ValueError as exc:
        raise GeoQueryError(f"coordinates are not a valid JSON array: {exc}",
                            f"coordinates가 올바른 JSON 배열이 아님({exc})") from None


def _reject_json_constant(name: str) -> float:
    raise GeoQueryError(f"coordinates must be finite numbers, got {name}", f"coordinates는 유한한 수여야 함({name})")


def _query_geometry(geometry_type: str, raw: object) -> BaseGeometry:
    """The validated shapely geometry of a query; unlike stored values it must be OGC-valid."""
    geometry = _build(geometry_type, _normalize(geometry_type, raw, "coordinates"))
    if not geometry.is_valid:
        # A self-intersecting polygon has no well-defined inside, so within/contains would be
        # arbitrary; tell the client instead.
        raise GeoQueryError(f"{geometry_type} is not a valid geometry: {explain_validity(geometry)}",
                            f"{geometry_type}이(가) 올바른 도형이 아님({explain_validity(geometry)})")
    return geometry


# ---------------------------------------------------------------------------------------------
# GeoJSON coordinates: validation and normalisation to 2-D
# ---------------------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    # bool is an int subclass, but `true` is not a coordinate.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float (JSON has no limit): not a coordinate either
        return False


def _position(value: object, where: str) -> tuple[float, float]:
    """One ``[lon, lat]`` or ``[lon, lat, alt]`` position, checked and reduced to 2-D."""
    if not isinstance(value, (list, tuple)) or not 2 <= len(value) <= 3:
        raise GeoQueryError(f"{where}: a position must be [longitude, latitude] or [longitude, latitude, altitude]",
                            f"{where}: 위치는 [경도, 위도] 또는 [경도, 위도, 고도]여야 함")
    if not all(_is_number(item) and _is_finite(item) for item in value):
        raise GeoQueryError(f"{where}: position {list(value)!r} must hold finite numbers",
                            f"{where}: 위치 {list(value)!r}에는 유한한 수만 올 수 있음")
    lon, lat = float(value[0]), float(value[1])
    if not -180.0 <= lon <= 180.0:
        raise GeoQueryError(f"{where}: longitude {lon:g} out of range [-180, 180]",
                            f"{where}: 경도 {lon:g}이(가) 범위 [-180, 180]을 벗어남")
    if not -90.0 <= lat <= 90.0:
        raise GeoQueryError(f"{where}: latitude {lat:g} out of range [-90, 90]",
                            f"{where}: 위도 {lat:g}이(가) 범위 [-90, 90]을 벗어남")
    return lon, lat


_WHAT_KO: Final = {"positions": "위치", "linear rings": "선형 고리", "line strings": "선", "polygons": "다각형",
                   "geometries": "도형"}


def _array(value: object, where: str, minimum: int, what: str) -> Sequence[object]:
    if not isinstance(value, (list, tuple)):
        raise GeoQueryError(f"{where}: expected an array of {what}", f"{where}: {_WHAT_KO.get(what, what)}의 배열이어야 함")
    if len(value) < minimum:
        raise GeoQueryError(f"{where}: needs at least {minimum} {what}, got {len(value)}",
                            f"{where}: {_WHAT_KO.get(what, what)}이(가) {minimum}개 이상 필요함({len(value)}개)")
    return value


def _positions(value: object, where: str, minimum: int) -> list[tuple[float, float]]:
    items = _array(value, where, minimum, "positions")
    return [_position(item, f"{where}[{i}]") for i, item in enumerate(items)]


def _line(value: object, where: str) -> list[tuple[float, float]]:
    return _positions(value, where, 2)


def _ring(value: object, where: str) -> list[tuple[float, float]]:
    ring = _positions(value, where, 4)
    if ring[0] != ring[-1]:
        raise GeoQueryError(f"{where}: polygon ring is not closed (first and last positions differ)",
                            f"{where}: 다각형 고리가 닫히지 않음(첫 위치와 마지막 위치가 다름)")
    return ring


def _polygon(value: object, where: str) -> list[list[tuple[float, float]]]:
    rings = _array(value, where, 1, "linear rings")
    return [_ring(ring, f"{where}[{i}]") for i, ring in enumerate(rings)]


def _many(part: Callable[[object, str], object], what: str) -> Callable[[object, str], list[object]]:
    def parse(value: object, where: str) -> list[object]:
        items = _array(value, where, 1, what)
        return [part(item, f"{where}[{i}]") for i, item in enumerate(items)]

    return parse


_NORMALIZERS: Final[Mapping[str, Callable[[object, str], object]]] = {
    "Point": _position,
    "MultiPoint": lambda value, where: _positions(value, where, 1),
    "LineString": _line,
    "MultiLineString": _many(_line, "line strings"),
    "Polygon": _polygon,
    "MultiPolygon": _many(_polygon, "polygons"),
}


def _normalize(geometry_type: str, coordinates: object, where: str) -> object:
    return _NORMALIZERS[geometry_type](coordinates, where)


def _build(geometry_type: str, coordinates: object) -> BaseGeometry:
    return shape({"type": geometry_type, "coordinates": coordinates})


def _geometry_from_geojson(value: object, where: str = "geometry", depth: int = 0) -> BaseGeometry:
    """Validate a GeoJSON geometry object and return it as a 2-D shapely geometry."""
    if not isinstance(value, Mapping):
        raise GeoQueryError(f"{where}: a GeoJSON geometry must be an object",
                            f"{where}: GeoJSON 도형은 객체여야 함")
    geometry_type = value.get("type")
    if not isinstance(geometry_type, str) or geometry_type not in _GEOJSON_GEOMETRY_TYPES:
        known = ", ".join(sorted(_GEOJSON_GEOMETRY_TYPES))
        raise GeoQueryError(f"{where}: unknown GeoJSON type {geometry_type!r}; expected one of {known}",
                            f"{where}: 알 수 없는 GeoJSON 유형 {geometry_type!r}(가능: {known})")
    if geometry_type == "GeometryCollection":
        return _collection(value, where, depth)
    if "coordinates" not in value:
        raise GeoQueryError(f"{where}: a {geometry_type} needs coordinates",
                            f"{where}: {geometry_type}에는 coordinates가 필요함")
    return _build(geometry_type, _normalize(geometry_type, value["coordinates"], f"{where}.coordinates"))


def _collection(value: Mapping[str, Any], where: str, depth: int) -> BaseGeometry:
    if depth >= _MAX_COLLECTION_DEPTH:
        raise GeoQueryError(f"{where}: GeometryCollections nested too deeply",
                            f"{where}: GeometryCollection이 너무 깊게 중첩됨")
    members = _array(value.get("geometries"), f"{where}.geometries", 1, "geometries")
    parts = [_geometry_from_geojson(member, f"{where}.geometries[{i}]", depth + 1) for i, member in enumerate(members)]
    return GeometryCollection(parts)


def validate_geojson(value: object) -> None:
    """Check that a GeoProperty value is a GeoJSON geometry; raise :class:`GeoQueryError` if not.

    Checked: a known type, coordinates (or ``geometries``) present, positions of 2 or 3 finite
    numbers with lon/lat in range, enough positions per type, closed polygon rings. Not checked:
    OGC validity (self-intersections) and ring orientation, which RFC 7946 asks readers to accept.

    The same checks as `_geometry_from_geojson` without building the shapely geometry, which cost
    most of an entity's validation (every write of a location comes here).
    """
    _check_geojson(value)


def _check_geojson(value: object, where: str = "geometry", depth: int = 0) -> None:
    if not isinstance(value, Mapping):
        raise GeoQueryError(f"{where}: a GeoJSON geometry must be an object",
                            f"{where}: GeoJSON 도형은 객체여야 함")
    geometry_type = value.get("type")
    if not isinstance(geometry_type, str) or geometry_type not in _GEOJSON_GEOMETRY_TYPES:
        known = ", ".join(sorted(_GEOJSON_GEOMETRY_TYPES))
        raise GeoQueryError(f"{where}: unknown GeoJSON type {geometry_type!r}; expected one of {known}",
                            f"{where}: 알 수 없는 GeoJSON 유형 {geometry_type!r}(가능: {known})")
    if geometry_type == "GeometryCollection":
        if depth >= _MAX_COLLECTION_DEPTH:
            raise GeoQueryError(f"{where}: GeometryCollections nested too deeply",
                            f"{where}: GeometryCollection이 너무 깊게 중첩됨")
        members = _array(value.get("geometries"), f"{where}.geometries", 1, "geometries")
        for i, member in enumerate(members):
            _check_geojson(member, f"{where}.geometries[{i}]", depth + 1)
        return
    if "coordinates" not in value:
        raise GeoQueryError(f"{where}: a {geometry_type} needs coordinates",
                            f"{where}: {geometry_type}에는 coordinates가 필요함")
    _normalize(geometry_type, value["coordinates"], f"{where}.coordinates")


def geometry_bbox(geojson: Mapping[str, Any]) -> BBox:
    """The lon/lat bounding box of a GeoJSON geometry, for a spatial index."""
    if isinstance(geojson, Mapping) and geojson.get("type") == "Point" and "coordinates" in geojson:
        # A point is its own box: the same checks and numbers as through shapely, without building it
        # (every entity created with a location comes here).
        lon, lat = _position(geojson["coordinates"], "geometry.coordinates")
        return (lon, lat, lon, lat)
    minx, miny, maxx, maxy = _geometry_from_geojson(geojson).bounds
    return (minx, miny, maxx, maxy)


@functools.lru_cache(maxsize=_CANDIDATE_CACHE_SIZE)
def _candidate_from_text(text: str) -> BaseGeometry | None:
    """A stored geometry parsed once per distinct text; None when it is not valid GeoJSON."""
    try:
        return _geometry_from_geojson(json.loads(text, parse_constant=_reject_json_constant))
    except (ValueError, RecursionError):
        # GeoQueryError and json.JSONDecodeError are both ValueErrors.
        return None


# ---------------------------------------------------------------------------------------------
# Distances
# ---------------------------------------------------------------------------------------------


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres on a sphere of radius :data:`EARTH_RADIUS_M`."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlam = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class _LocalPlane:
    """An affine lon/lat -> metres map, tangent to the WGS84 ellipsoid at (lon0, lat0)."""

    lon0: float
    lat0: float
    metres_per_deg_lon: float
    metres_per_deg_lat: float

    @classmethod
    def centred_at(cls, lon0: float, lat0: float) -> _LocalPlane:
        phi = math.radians(lat0)
        w = math.sqrt(1 - _WGS84_E2 * math.sin(phi) ** 2)
        meridional = _WGS84_A * (1 - _WGS84_E2) / w**3
        prime_vertical = _WGS84_A / w
        per_rad = math.pi / 180
        return cls(lon0, lat0, prime_vertical * math.cos(phi) * per_rad, meridional * per_rad)

    def project(self, geometry: BaseGeometry) -> BaseGeometry:
        kx, ky = self.metres_per_deg_lon, self.metres_per_deg_lat
        return affine_transform(geometry, [kx, 0.0, 0.0, ky, -kx * self.lon0, -ky * self.lat0])

    def point_distance(self, lon: float, lat: float) -> float:
        """Distance from the centre; the fast path for point-near-point queries."""
        dx = (lon - self.lon0) * self.metres_per_deg_lon
        dy = (lat - self.lat0) * self.metres_per_deg_lat
        return math.hypot(dx, dy)

    def degrees_for(self, metres: float) -> tuple[float, float]:
        """(Δlon, Δlat) in degrees covering ``metres`` in every direction; Δlon is inf at a pole."""
        dlat = metres / self.metres_per_deg_lat
        dlon = metres / self.metres_per_deg_lon if self.metres_per_deg_lon > 0 else math.inf
        return dlon, dlat


def _plane_for(geometry: BaseGeometry) -> _LocalPlane:
    minx, miny, maxx, maxy = geometry.bounds
    return _LocalPlane.centred_at((minx + maxx) / 2, (miny + maxy) / 2)


# ---------------------------------------------------------------------------------------------
# The query
# ---------------------------------------------------------------------------------------------


# Each relation with the (prepared) query geometry as the first argument, where GEOS can use the
# prepared index: "entity within Q" is "Q contains entity", and so on.
_PREDICATES: Final[Mapping[GeoRel, Callable[[BaseGeometry, BaseGeometry], Any]]] = {
    GeoRel.WITHIN: shapely.contains,
    GeoRel.CONTAINS: shapely.within,
    GeoRel.INTERSECTS: shapely.intersects,
    GeoRel.EQUALS: shapely.equals,
    GeoRel.DISJOINT: shapely.disjoint,
    GeoRel.OVERLAPS: shapely.overlaps,
}

# Relative and absolute slack on the maxDistance box, so float rounding can never exclude a match.
_BBOX_REL_MARGIN: Final = 1e-6
_BBOX_ABS_MARGIN_DEG: Final = 1e-9


@dataclass(frozen=True)
class GeoQuery:
    """A parsed NGSI-LD geo-query; build it with :func:`parse_geoquery`.

    ``geometry`` is the query geometry as shapely (2-D, lon/lat), ``coordinates`` its coordinates
    as compact JSON text (as given, for :meth:`to_json`), distances are metres.
    """

    georel: GeoRel
    geometry: BaseGeometry
    geometry_type: str
    coordinates: str
    max_distance: float | None = None
    min_distance: float | None = None
    geoproperty: str = DEFAULT_GEOPROPERTY
    _plane: _LocalPlane = field(init=False, repr=False, compare=False)
    _projected: BaseGeometry = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.georel is GeoRel.NEAR and self.max_distance is None and self.min_distance is None:
            raise GeoQueryError("georel 'near' needs maxDistance or minDistance",
                                "georel 'near'에는 maxDistance나 minDistance가 필요함")
        plane = _plane_for(self.geometry)
        projected = plane.project(self.geometry)
        # Preparing builds GEOS's spatial index of the query once, for every candidate tested.
        shapely.prepare(self.geometry)
        shapely.prepare(projected)
        object.__setattr__(self, "_plane", plane)
        object.__setattr__(self, "_projected", projected)

    @property
    def georel_text(self) -> str:
        """The georel as NGSI-LD writes it, e.g. ``near;maxDistance==2000``."""
        parts = [self.georel.value]
        if self.max_distance is not None:
            parts.append(f"maxDistance=={_format_number(self.max_distance)}")
        if self.min_distance is not None:
            parts.append(f"minDistance=={_format_number(self.min_distance)}")
        return ";".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The NGSI-LD GeoQuery JSON form (CIM 009 §5.2.13), e.g. for a subscription's ``geoQ``."""
        return {
            "geometry": self.geometry_type,
            "coordinates": json.loads(self.coordinates),
            "georel": self.georel_text,
            "geoproperty": self.geoproperty,
        }

    def matches(self, geojson: Mapping[str, Any]) -> bool:
        """Whether a stored GeoProperty value (a GeoJSON geometry) satisfies the query.

        An invalid candidate does not match; this never raises.
        """
        try:
            candidate = _geometry_from_geojson(geojson)
        except (ValueError, RecursionError):
            return False
        return self._test(candidate)

    def matches_text(self, geojson_text: str | None) -> bool:
        """:meth:`matches` for a GeoJSON geometry stored as JSON text (a SQLite user function)."""
        if not isinstance(geojson_text, str):
            return False
        candidate = _candidate_from_text(geojson_text)
        return candidate is not None and self._test(candidate)

    def distance_m(self, geojson: Mapping[str, Any]) -> float | None:
        """Distance in metres from the query geometry to a GeoJSON geometry; None if invalid."""
        try:
            return self._distance(_geometry_from_geojson(geojson))
        except (ValueError, RecursionError, GEOSException):
            return None

    def bbox(self) -> BBox | None:
        """A lon/lat box that every matching candidate's bounding box intersects.

        None when no such box narrows anything: ``disjoint`` and ``near`` with only a
        minDistance match geometries anywhere away from the query.
        """
        if self.georel is GeoRel.DISJOINT:
            return None
        if self.georel is GeoRel.NEAR:
            return None if self.max_distance is None else self._near_bbox(self.max_distance)
        # within: the candidate lies inside Q; contains/equals: it covers Q; intersects and
        # overlaps: it shares a point with Q. In every case its box meets Q's box.
        minx, miny, maxx, maxy = self.geometry.bounds
        return (minx, miny, maxx, maxy)

    def _near_bbox(self, metres: float) -> BBox:
        # The plane is affine in lon/lat, so "within d metres of Q" is exactly "within
        # (d/kx, d/ky) degrees of Q": expanding Q's box by that is sound, not a guess.
        dlon, dlat = self._plane.degrees_for(metres * (1 + _BBOX_REL_MARGIN))
        dlon, dlat = dlon + _BBOX_ABS_MARGIN_DEG, dlat + _BBOX_ABS_MARGIN_DEG
        minx, miny, maxx, maxy = self.geometry.bounds
        # Clamping is sound: stored longitudes and latitudes never leave these ranges, and the
        # plane does not wrap around the antimeridian.
        return (
            max(-180.0, minx - dlon),
            max(-90.0, miny - dlat),
            min(180.0, maxx + dlon),
            min(90.0, maxy + dlat),
        )

    def _test(self, candidate: BaseGeometry) -> bool:
        try:
            if self.georel is GeoRel.NEAR:
                return self._near(candidate)
            return bool(_PREDICATES[self.georel](self.geometry, candidate))
        except (GEOSException, ValueError):
            # A degenerate stored geometry can make GEOS throw; it simply does not match.
            return False

    def _near(self, candidate: BaseGeometry) -> bool:
        distance = self._distance(candidate)
        if self.max_distance is not None and distance > self.max_distance:
            return False
        return self.min_distance is None or distance >= self.min_distance

    def _distance(self, candidate: BaseGeometry) -> float:
        if self.geometry_type == "Point" and candidate.geom_type == "Point":
            lon, lat = shapely.get_coordinates(candidate)[0]
            return self._plane.point_distance(float(lon), float(lat))
        return float(shapely.distance(self._projected, self._plane.project(candidate)))


def _format_number(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def coarse_point(point: tuple[float, float], cell: float) -> tuple[float, float]:
    """The centre of the `cell`-degree cell that holds `point` (lon, lat), to 6 decimals: the same for every point of
    the cell, so a person's place shown this way says only the cell (ops' sensitive events, alarms about a person)."""
    lon, lat = ((math.floor(v / cell) + 0.5) * cell for v in point)
    return round(lon, 6), round(lat, 6)
