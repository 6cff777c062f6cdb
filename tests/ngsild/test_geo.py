"""Tests for NGSI-LD geo-queries: parsing, errors, distances, relations and the bbox prefilter."""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ucity.ngsild.geo import (
    EARTH_RADIUS_M,
    BBox,
    GeoQuery,
    GeoQueryError,
    GeoRel,
    geometry_bbox,
    haversine_m,
    parse_geoquery,
    parse_geoquery_json,
    validate_geojson,
)

# Seoul City Hall, and shapes around it used throughout.
CITY_HALL = (126.9780, 37.5665)
SQUARE = [[[126.97, 37.56], [126.99, 37.56], [126.99, 37.58], [126.97, 37.58], [126.97, 37.56]]]
SQUARE_TEXT = json.dumps(SQUARE)


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def polygon(*rings: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def box_ring(minx: float, miny: float, maxx: float, maxy: float) -> list[list[float]]:
    return [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]


def query(georel: str, geometry: str, coordinates: str | list[Any]) -> GeoQuery:
    parsed = parse_geoquery(georel, geometry, coordinates)
    assert parsed is not None
    return parsed


def near_city_hall(georel: str) -> GeoQuery:
    return query(georel, "Point", json.dumps(list(CITY_HALL)))


def boxes_intersect(a: BBox, b: BBox) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def vincenty_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """WGS84 ellipsoidal distance (Vincenty's inverse formula), the test oracle."""
    a, f = 6_378_137.0, 1 / 298.257223563
    b = a * (1 - f)
    u1 = math.atan((1 - f) * math.tan(math.radians(lat1)))
    u2 = math.atan((1 - f) * math.tan(math.radians(lat2)))
    big_l = math.radians(lon2 - lon1)
    lam = big_l
    for _ in range(200):
        sin_lam, cos_lam = math.sin(lam), math.cos(lam)
        sin_sigma = math.hypot(
            math.cos(u2) * sin_lam, math.cos(u1) * math.sin(u2) - math.sin(u1) * math.cos(u2) * cos_lam
        )
        if sin_sigma == 0:
            return 0.0
        cos_sigma = math.sin(u1) * math.sin(u2) + math.cos(u1) * math.cos(u2) * cos_lam
        sigma = math.atan2(sin_sigma, cos_sigma)
        sin_alpha = math.cos(u1) * math.cos(u2) * sin_lam / sin_sigma
        cos2_alpha = 1 - sin_alpha**2
        cos_2sm = cos_sigma - 2 * math.sin(u1) * math.sin(u2) / cos2_alpha if cos2_alpha else 0.0
        c = f / 16 * cos2_alpha * (4 + f * (4 - 3 * cos2_alpha))
        previous = lam
        lam = big_l + (1 - c) * f * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1 + 2 * cos_2sm**2))
        )
        if abs(lam - previous) < 1e-13:
            break
    u_sq = cos2_alpha * (a**2 - b**2) / b**2
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    big_b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    delta_sigma = (
        big_b
        * sin_sigma
        * (
            cos_2sm
            + big_b
            / 4
            * (
                cos_sigma * (-1 + 2 * cos_2sm**2)
                - big_b / 6 * cos_2sm * (-3 + 4 * sin_sigma**2) * (-3 + 4 * cos_2sm**2)
            )
        )
    )
    return b * big_a * (sigma - delta_sigma)


def offset(lon: float, lat: float, metres: float, bearing_deg: float) -> tuple[float, float]:
    """A point at a spherical distance and bearing from (lon, lat)."""
    delta = metres / EARTH_RADIUS_M
    theta, phi1, lam1 = math.radians(bearing_deg), math.radians(lat), math.radians(lon)
    phi2 = math.asin(math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta))
    lam2 = lam1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1), math.cos(delta) - math.sin(phi1) * math.sin(phi2)
    )
    return math.degrees(lam2), math.degrees(phi2)


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


class TestParse:
    def test_no_geo_parameters_is_no_query(self) -> None:
        assert parse_geoquery(None, None, None) is None
        assert parse_geoquery(None, None, None, None) is None

    def test_geoproperty_alone_is_ignored(self) -> None:
        assert parse_geoquery(None, None, None, "location") is None

    def test_near_max_distance_from_url_parameters(self) -> None:
        q = query("near;maxDistance==2000", "Point", "[127.0,37.5]")
        assert q.georel is GeoRel.NEAR
        assert q.georel.value == "near"
        assert q.max_distance == 2000.0
        assert q.min_distance is None
        assert q.geometry_type == "Point"
        assert q.geometry.geom_type == "Point"
        assert (q.geometry.x, q.geometry.y) == (127.0, 37.5)
        assert q.geoproperty == "location"

    def test_near_min_distance(self) -> None:
        q = query("near;minDistance==10", "Point", "[127.0,37.5]")
        assert (q.max_distance, q.min_distance) == (None, 10.0)

    @pytest.mark.parametrize(
        "georel",
        [
            "near;maxDistance==2000;minDistance==10",
            "near;minDistance==10;maxDistance==2000",
            " near ; maxDistance == 2000 ; minDistance==10 ",
        ],
    )
    def test_near_with_both_distances(self, georel: str) -> None:
        q = query(georel, "Point", "[127.0,37.5]")
        assert (q.max_distance, q.min_distance) == (2000.0, 10.0)

    @pytest.mark.parametrize(
        "value,expected", [("2000", 2000.0), ("12.5", 12.5), ("1e3", 1000.0), ("0", 0.0), (".5", 0.5)]
    )
    def test_distance_number_forms(self, value: str, expected: float) -> None:
        assert query(f"near;maxDistance=={value}", "Point", "[127,37.5]").max_distance == expected

    @pytest.mark.parametrize("georel", ["within", "contains", "intersects", "equals", "disjoint", "overlaps"])
    def test_plain_georels(self, georel: str) -> None:
        q = query(georel, "Polygon", SQUARE_TEXT)
        assert q.georel == georel
        assert q.max_distance is None and q.min_distance is None

    @pytest.mark.parametrize(
        "geometry,coordinates,geom_type",
        [
            ("Point", [127.0, 37.5], "Point"),
            ("MultiPoint", [[127.0, 37.5], [127.1, 37.6]], "MultiPoint"),
            ("LineString", [[127.0, 37.5], [127.1, 37.6]], "LineString"),
            ("MultiLineString", [[[127.0, 37.5], [127.1, 37.6]], [[127.2, 37.5], [127.3, 37.5]]], "MultiLineString"),
            ("Polygon", SQUARE, "Polygon"),
            (
                "MultiPolygon",
                [SQUARE, [box_ring(127.0, 37.4, 127.1, 37.5)]],
                "MultiPolygon",
            ),
        ],
    )
    def test_each_geometry_from_text_and_from_list(self, geometry: str, coordinates: list[Any], geom_type: str) -> None:
        from_text = query("intersects", geometry, json.dumps(coordinates))
        from_list = query("intersects", geometry, coordinates)
        assert from_text == from_list
        assert from_text.geometry.geom_type == geom_type
        assert from_text.geometry_type == geometry

    def test_polygon_with_hole(self) -> None:
        q = query("within", "Polygon", [box_ring(0, 0, 10, 10), box_ring(4, 4, 6, 6)])
        assert len(q.geometry.interiors) == 1

    def test_point_without_brackets(self) -> None:
        assert query("near;maxDistance==5", "Point", "127.0, 37.5") == query(
            "near;maxDistance==5", "Point", "[127.0,37.5]"
        )

    def test_altitude_is_accepted_and_ignored(self) -> None:
        q = query("near;maxDistance==5", "Point", "[127.0,37.5,30]")
        assert not q.geometry.has_z
        assert q.to_json()["coordinates"] == [127.0, 37.5, 30]

    def test_geoproperty_kept_short(self) -> None:
        q = parse_geoquery("within", "Polygon", SQUARE_TEXT, "observationSpace")
        assert q is not None and q.geoproperty == "observationSpace"

    def test_json_body_form_and_round_trip(self) -> None:
        body = {"geometry": "Polygon", "coordinates": SQUARE, "georel": "within", "geoproperty": "location"}
        q = parse_geoquery_json(body)
        assert q.to_json() == body
        assert parse_geoquery_json(q.to_json()) == q

    def test_json_body_coordinates_may_be_a_string(self) -> None:
        q = parse_geoquery_json({"geometry": "Point", "coordinates": "[127.0,37.5]", "georel": "near;maxDistance==100"})
        assert q.to_json() == {
            "geometry": "Point",
            "coordinates": [127.0, 37.5],
            "georel": "near;maxDistance==100",
            "geoproperty": "location",
        }

    def test_to_json_writes_both_distances(self) -> None:
        q = query("near;minDistance==10.5;maxDistance==2000", "Point", "[127,37.5]")
        assert q.to_json()["georel"] == "near;maxDistance==2000;minDistance==10.5"
        assert parse_geoquery_json(q.to_json()) == q

    def test_query_is_hashable_and_comparable(self) -> None:
        a = query("near;maxDistance==10", "Point", "[127,37.5]")
        b = query("near;maxDistance==10", "Point", [127, 37.5])
        assert a == b and hash(a) == hash(b)
        assert a != query("near;maxDistance==11", "Point", "[127,37.5]")
        assert len({a, b}) == 1

    def test_query_is_frozen(self) -> None:
        q = query("within", "Polygon", SQUARE_TEXT)
        with pytest.raises(AttributeError):
            q.georel = GeoRel.CONTAINS  # type: ignore[misc]

    def test_near_without_distance_cannot_be_built_directly(self) -> None:
        q = query("within", "Point", "[127,37.5]")
        with pytest.raises(GeoQueryError, match="maxDistance or minDistance"):
            GeoQuery(GeoRel.NEAR, q.geometry, "Point", q.coordinates)


class TestParseErrors:
    @pytest.mark.parametrize(
        "args,message",
        [
            (("within", None, None), "georel given but geometry, coordinates missing"),
            ((None, "Point", None), "geometry given but georel, coordinates missing"),
            ((None, None, "[1,2]"), "coordinates given but georel, geometry missing"),
            (("within", "Point", None), "coordinates missing"),
            ((None, "Point", "[1,2]"), "georel missing|missing"),
        ],
    )
    def test_incomplete(self, args: tuple[Any, Any, Any], message: str) -> None:
        with pytest.raises(GeoQueryError, match=message):
            parse_geoquery(*args)

    @pytest.mark.parametrize(
        "georel,message",
        [
            ("nearby;maxDistance==5", "unknown georel 'nearby'"),
            ("Within", "unknown georel 'Within'"),
            ("", "unknown georel ''"),
            ("near", "needs maxDistance or minDistance"),
            ("near;", "invalid near modifier ''"),
            ("near;maxDistance=2000", "invalid near modifier 'maxDistance=2000'"),
            ("near;maxDistance:2000", "invalid near modifier"),
            ("near;distance==2000", "invalid near modifier 'distance==2000'"),
            ("near;maxDistance==", "maxDistance must be a non-negative number"),
            ("near;maxDistance==-5", "maxDistance must be a non-negative number"),
            ("near;maxDistance==abc", "maxDistance must be a non-negative number"),
            ("near;minDistance==inf", "minDistance must be a non-negative number"),
            ("near;maxDistance==nan", "maxDistance must be a non-negative number"),
            ("near;maxDistance==1e999", "maxDistance must be finite"),
            ("near;maxDistance==5;maxDistance==6", "maxDistance given twice"),
            ("near;maxDistance==5;minDistance==6", r"minDistance \(6\) is greater than maxDistance \(5\)"),
            ("within;maxDistance==5", "georel 'within' takes no modifiers"),
        ],
    )
    def test_bad_georel(self, georel: str, message: str) -> None:
        with pytest.raises(GeoQueryError, match=message):
            parse_geoquery(georel, "Point", "[127,37.5]")

    def test_georel_must_be_a_string(self) -> None:
        with pytest.raises(GeoQueryError, match="georel must be a string"):
            parse_geoquery(5, "Point", "[127,37.5]")  # type: ignore[arg-type]

    @pytest.mark.parametrize("geometry", ["point", "Circle", "GeometryCollection", "Feature", ""])
    def test_unknown_geometry(self, geometry: str) -> None:
        with pytest.raises(GeoQueryError, match=f"unknown geometry '{geometry}'.*MultiPolygon"):
            parse_geoquery("within", geometry, "[127,37.5]")

    @pytest.mark.parametrize(
        "geometry,coordinates,message",
        [
            ("Point", "", "coordinates are empty"),
            ("Point", "[127.0,37.5", "not a valid JSON array"),
            ("Point", "[127.0;37.5]", "not a valid JSON array"),
            ("Point", "[NaN,37.5]", "finite numbers, got NaN"),
            ("Point", "[Infinity,37.5]", "finite numbers, got Infinity"),
            ("Point", "[1e999,37.5]", "must hold finite numbers"),
            ("Point", "[181,37.5]", "longitude 181 out of range"),
            ("Point", "[-180.5,37.5]", "longitude -180.5 out of range"),
            ("Point", "[127,90.01]", "latitude 90.01 out of range"),
            ("Point", "[127]", r"position must be \[longitude, latitude\]"),
            ("Point", "[127,37.5,1,2]", "position must be"),
            ("Point", '["127",37.5]', "must hold finite numbers"),
            ("Point", "[true,37.5]", "must hold finite numbers"),
            ("Point", "[[127,37.5]]", "a position must be"),
            ("Point", "[[127,37.5],[1,2]]", "must hold finite numbers"),
            ("MultiPoint", "[]", "needs at least 1 positions"),
            ("MultiPoint", "[127,37.5]", r"coordinates\[0\]: a position must be"),
            ("LineString", "[[127,37.5]]", "needs at least 2 positions, got 1"),
            ("LineString", "[[127,37.5],[127,37.5]]", "not a valid geometry"),
            ("MultiLineString", "[]", "needs at least 1 line strings"),
            ("MultiLineString", "[[[127,37.5]]]", r"coordinates\[0\]: needs at least 2 positions"),
            ("Polygon", "[]", "needs at least 1 linear rings"),
            ("Polygon", "[[[0,0],[1,0],[0,0]]]", r"coordinates\[0\]: needs at least 4 positions, got 3"),
            ("Polygon", "[[[0,0],[1,0],[1,1],[0,1]]]", "ring is not closed"),
            ("Polygon", "[[0,0],[1,0],[1,1],[0,0]]", r"coordinates\[0\]: expected an array of positions|position"),
            ("Polygon", "[[[0,0],[1,1],[1,0],[0,1],[0,0]]]", "not a valid geometry: Self-intersection"),
            ("MultiPolygon", "[[[[0,0],[1,0],[1,1],[0,1]]]]", r"coordinates\[0\]\[0\]: polygon ring is not closed"),
            ("MultiPolygon", "[]", "needs at least 1 polygons"),
        ],
    )
    def test_bad_coordinates(self, geometry: str, coordinates: str, message: str) -> None:
        with pytest.raises(GeoQueryError, match=message):
            parse_geoquery("intersects", geometry, coordinates)

    def test_coordinates_must_be_text_or_array(self) -> None:
        with pytest.raises(GeoQueryError, match="coordinates must be a JSON array"):
            parse_geoquery("within", "Point", {"lon": 1})  # type: ignore[arg-type]

    def test_empty_geoproperty(self) -> None:
        with pytest.raises(GeoQueryError, match="geoproperty must be a non-empty"):
            parse_geoquery("within", "Point", "[127,37.5]", " ")

    def test_json_form_needs_all_parts(self) -> None:
        with pytest.raises(GeoQueryError, match="needs georel, geometry and coordinates"):
            parse_geoquery_json({"geoproperty": "location"})
        with pytest.raises(GeoQueryError, match="must be a JSON object"):
            parse_geoquery_json([1, 2])  # type: ignore[arg-type]

    def test_error_is_a_value_error(self) -> None:
        assert issubclass(GeoQueryError, ValueError)


# ---------------------------------------------------------------------------------------------
# Distances
# ---------------------------------------------------------------------------------------------


class TestDistance:
    def test_two_points_in_seoul_one_km_apart_agree_with_haversine(self) -> None:
        # City Hall to a point about 1 km to the north-east (near Jonggak).
        other = (126.9862, 37.5720)
        expected = haversine_m(*CITY_HALL, *other)
        assert 900 < expected < 1100
        got = near_city_hall("near;maxDistance==2000").distance_m(point(*other))
        assert got == pytest.approx(expected, rel=0.005)

    @pytest.mark.parametrize("metres", [100.0, 1_000.0, 10_000.0])
    @pytest.mark.parametrize("bearing", [0.0, 45.0, 90.0, 135.0, 180.0, 270.0])
    def test_city_scale_distances_match_the_wgs84_ellipsoid_within_0_05_percent(
        self, metres: float, bearing: float
    ) -> None:
        target = offset(*CITY_HALL, metres, bearing)
        got = near_city_hall("near;maxDistance==1").distance_m(point(*target))
        assert got == pytest.approx(vincenty_m(*CITY_HALL, *target), rel=0.0005)

    @pytest.mark.parametrize("bearing", [0.0, 45.0, 90.0, 135.0, 225.0])
    def test_50_km_stays_within_0_2_percent(self, bearing: float) -> None:
        target = offset(*CITY_HALL, 50_000.0, bearing)
        got = near_city_hall("near;maxDistance==1").distance_m(point(*target))
        assert got == pytest.approx(vincenty_m(*CITY_HALL, *target), rel=0.002)

    @pytest.mark.parametrize("lat", [-60.0, 0.0, 60.0])
    def test_other_latitudes_within_0_5_percent_at_5_km(self, lat: float) -> None:
        q = query("near;maxDistance==1", "Point", [10.0, lat])
        for bearing in (0.0, 60.0, 90.0, 200.0):
            target = offset(10.0, lat, 5_000.0, bearing)
            assert q.distance_m(point(*target)) == pytest.approx(vincenty_m(10.0, lat, *target), rel=0.005)

    def test_haversine_known_value(self) -> None:
        # One degree of latitude on the mean sphere.
        assert haversine_m(0, 0, 0, 1) == pytest.approx(EARTH_RADIUS_M * math.pi / 180, rel=1e-12)

    def test_point_to_line_distance(self) -> None:
        # A north-south line 0.01° of longitude west of City Hall: ~883 m at 37.57°N.
        line = {"type": "LineString", "coordinates": [[126.968, 37.50], [126.968, 37.60]]}
        expected = vincenty_m(*CITY_HALL, 126.968, CITY_HALL[1])
        got = near_city_hall("near;maxDistance==1").distance_m(line)
        assert got == pytest.approx(expected, rel=0.001)

    def test_polygon_around_the_point_is_at_distance_zero(self) -> None:
        assert near_city_hall("near;maxDistance==1").distance_m(polygon(*SQUARE)) == 0.0

    def test_multipoint_uses_nearest_member(self) -> None:
        near, far = offset(*CITY_HALL, 300, 10), offset(*CITY_HALL, 3000, 200)
        multi = {"type": "MultiPoint", "coordinates": [list(far), list(near)]}
        got = near_city_hall("near;maxDistance==1").distance_m(multi)
        assert got == pytest.approx(300, rel=0.005)

    def test_distance_from_a_polygon_query(self) -> None:
        q = query("near;maxDistance==1000", "Polygon", SQUARE)
        east_of_square = (126.99 + 0.005, 37.57)  # 0.005° of longitude east of the east edge
        expected = vincenty_m(126.99, 37.57, *east_of_square)
        assert q.distance_m(point(*east_of_square)) == pytest.approx(expected, rel=0.002)

    def test_invalid_candidate_has_no_distance(self) -> None:
        assert near_city_hall("near;maxDistance==1").distance_m({"type": "Point"}) is None


class TestNear:
    def test_max_distance_boundary(self) -> None:
        target = point(*offset(*CITY_HALL, 1000, 30))
        d = near_city_hall("near;maxDistance==1").distance_m(target)
        assert d is not None
        assert near_city_hall(f"near;maxDistance=={d * 1.001}").matches(target)
        assert not near_city_hall(f"near;maxDistance=={d * 0.999}").matches(target)

    def test_max_distance_is_inclusive_and_min_distance_inclusive(self) -> None:
        here = point(*CITY_HALL)
        assert near_city_hall("near;maxDistance==0").matches(here)
        assert near_city_hall("near;minDistance==0").matches(here)
        assert not near_city_hall("near;minDistance==1").matches(here)

    def test_min_distance(self) -> None:
        far, close = point(*offset(*CITY_HALL, 500, 0)), point(*offset(*CITY_HALL, 5, 0))
        q = near_city_hall("near;minDistance==10")
        assert q.matches(far)
        assert not q.matches(close)

    def test_annulus_with_both_distances(self) -> None:
        q = near_city_hall("near;minDistance==100;maxDistance==1000")
        assert [q.matches(point(*offset(*CITY_HALL, m, 77))) for m in (50, 500, 1500)] == [False, True, False]

    def test_near_line_and_polygon_candidates(self) -> None:
        line = {"type": "LineString", "coordinates": [[126.968, 37.50], [126.968, 37.60]]}  # ~883 m
        assert near_city_hall("near;maxDistance==900").matches(line)
        assert not near_city_hall("near;maxDistance==870").matches(line)
        assert near_city_hall("near;maxDistance==1").matches(polygon(*SQUARE))
        assert not near_city_hall("near;minDistance==1").matches(polygon(*SQUARE))

    def test_near_geometry_collection_candidate(self) -> None:
        collection = {
            "type": "GeometryCollection",
            "geometries": [point(*offset(*CITY_HALL, 5000, 90)), point(*offset(*CITY_HALL, 200, 90))],
        }
        assert near_city_hall("near;maxDistance==250").matches(collection)
        assert not near_city_hall("near;maxDistance==150").matches(collection)


# ---------------------------------------------------------------------------------------------
# Relations
# ---------------------------------------------------------------------------------------------

INSIDE = point(126.98, 37.57)
OUTSIDE = point(127.05, 37.57)
ON_EDGE = point(126.97, 37.57)
SMALL_INSIDE = polygon(box_ring(126.975, 37.565, 126.985, 37.575))
STRADDLING = polygon(box_ring(126.98, 37.57, 127.00, 37.59))
FAR_AWAY = polygon(box_ring(127.1, 37.4, 127.2, 37.5))
BIG_AROUND = polygon(box_ring(126.9, 37.5, 127.1, 37.7))
SAME_SQUARE_OTHER_START = polygon([[126.99, 37.56], [126.99, 37.58], [126.97, 37.58], [126.97, 37.56], [126.99, 37.56]])
LINE_CROSSING = {"type": "LineString", "coordinates": [[126.96, 37.57], [127.00, 37.57]]}
LINE_INSIDE = {"type": "LineString", "coordinates": [[126.975, 37.57], [126.985, 37.57]]}


class TestRelations:
    @pytest.mark.parametrize(
        "candidate,expected",
        [
            (INSIDE, True),
            (OUTSIDE, False),
            (ON_EDGE, False),  # OGC: the boundary is not the interior
            (SMALL_INSIDE, True),
            (STRADDLING, False),
            (LINE_INSIDE, True),
            (LINE_CROSSING, False),
            (polygon(*SQUARE), True),
            ({"type": "MultiPoint", "coordinates": [[126.98, 37.57], [126.975, 37.575]]}, True),
            ({"type": "MultiPoint", "coordinates": [[126.98, 37.57], [127.05, 37.57]]}, False),
        ],
    )
    def test_within(self, candidate: dict[str, Any], expected: bool) -> None:
        assert query("within", "Polygon", SQUARE).matches(candidate) is expected

    def test_within_polygon_with_hole(self) -> None:
        q = query("within", "Polygon", [box_ring(0, 0, 10, 10), box_ring(4, 4, 6, 6)])
        assert q.matches(point(2, 2))
        assert not q.matches(point(5, 5))

    def test_within_multipolygon(self) -> None:
        q = query("within", "MultiPolygon", [SQUARE, [box_ring(127.1, 37.4, 127.2, 37.5)]])
        assert q.matches(INSIDE)
        assert q.matches(point(127.15, 37.45))
        assert not q.matches(OUTSIDE)

    def test_contains(self) -> None:
        q = query("contains", "Point", [126.98, 37.57])
        assert q.matches(polygon(*SQUARE))
        assert q.matches(BIG_AROUND)
        assert not q.matches(FAR_AWAY)
        assert not q.matches(polygon(box_ring(126.98, 37.57, 127.0, 37.6)))  # only on its boundary
        assert q.matches({"type": "MultiPolygon", "coordinates": [[box_ring(0, 0, 1, 1)], SQUARE]})

    def test_contains_line(self) -> None:
        q = query("contains", "LineString", [[126.975, 37.57], [126.985, 37.57]])
        assert q.matches(polygon(*SQUARE))
        assert not q.matches(SMALL_INSIDE.copy() | {"coordinates": [box_ring(126.978, 37.565, 126.985, 37.575)]})

    @pytest.mark.parametrize(
        "candidate,expected",
        [
            (INSIDE, True),
            (ON_EDGE, True),
            (OUTSIDE, False),
            (STRADDLING, True),
            (FAR_AWAY, False),
            (BIG_AROUND, True),
            (LINE_CROSSING, True),
            ({"type": "LineString", "coordinates": [[127.0, 37.5], [127.1, 37.5]]}, False),
            (
                {
                    "type": "MultiLineString",
                    "coordinates": [[[127.0, 37.5], [127.1, 37.5]], [[126.96, 37.57], [127.0, 37.57]]],
                },
                True,
            ),
            ({"type": "MultiPoint", "coordinates": [[127.05, 37.57], [126.98, 37.57]]}, True),
        ],
    )
    def test_intersects(self, candidate: dict[str, Any], expected: bool) -> None:
        assert query("intersects", "Polygon", SQUARE).matches(candidate) is expected

    def test_intersects_line_query(self) -> None:
        q = query("intersects", "LineString", [[126.96, 37.57], [127.00, 37.57]])
        assert q.matches(polygon(*SQUARE))
        assert q.matches(point(126.98, 37.57))
        assert not q.matches(point(126.98, 37.571))

    @pytest.mark.parametrize(
        "candidate,expected",
        [
            (INSIDE, False),
            (ON_EDGE, False),
            (OUTSIDE, True),
            (FAR_AWAY, True),
            (STRADDLING, False),
            (LINE_CROSSING, False),
        ],
    )
    def test_disjoint(self, candidate: dict[str, Any], expected: bool) -> None:
        assert query("disjoint", "Polygon", SQUARE).matches(candidate) is expected

    def test_equals(self) -> None:
        q = query("equals", "Polygon", SQUARE)
        assert q.matches(polygon(*SQUARE))
        assert q.matches(SAME_SQUARE_OTHER_START)  # topological, not textual, equality
        assert not q.matches(SMALL_INSIDE)
        assert query("equals", "Point", [126.98, 37.57]).matches(INSIDE)
        assert query("equals", "Point", [126.98, 37.57]).matches({"type": "Point", "coordinates": [126.98, 37.57, 12]})
        assert not query("equals", "Point", [126.98, 37.57]).matches(OUTSIDE)

    @pytest.mark.parametrize(
        "candidate,expected",
        [
            (STRADDLING, True),
            (SMALL_INSIDE, False),  # contained, not overlapping
            (BIG_AROUND, False),  # contains the query
            (FAR_AWAY, False),
            (polygon(*SQUARE), False),
            (INSIDE, False),  # different dimension
        ],
    )
    def test_overlaps(self, candidate: dict[str, Any], expected: bool) -> None:
        assert query("overlaps", "Polygon", SQUARE).matches(candidate) is expected

    def test_overlaps_lines(self) -> None:
        q = query("overlaps", "LineString", [[0, 0], [2, 0]])
        assert q.matches({"type": "LineString", "coordinates": [[1, 0], [3, 0]]})
        assert not q.matches({"type": "LineString", "coordinates": [[1, -1], [1, 1]]})  # crosses


# ---------------------------------------------------------------------------------------------
# Candidates: robustness, text form, cache
# ---------------------------------------------------------------------------------------------

INVALID_CANDIDATES: list[Any] = [
    None,
    "Point",
    [126.98, 37.57],
    {},
    {"type": "Point"},
    {"type": "Circle", "coordinates": [126.98, 37.57]},
    {"type": "Point", "coordinates": [226.98, 37.57]},
    {"type": "Point", "coordinates": [float("nan"), 37.57]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
    {"type": "LineString", "coordinates": [[0, 0]]},
    {"type": "GeometryCollection", "geometries": []},
    {"type": "GeometryCollection"},
]


class TestCandidates:
    @pytest.mark.parametrize(
        "georel",
        [
            "near;maxDistance==1e7",
            "near;minDistance==0",
            "within",
            "intersects",
            "disjoint",
            "contains",
            "equals",
            "overlaps",
        ],
    )
    @pytest.mark.parametrize("candidate", INVALID_CANDIDATES)
    def test_invalid_candidates_never_match_and_never_raise(self, georel: str, candidate: Any) -> None:
        q = query(georel, "Polygon", SQUARE)
        assert q.matches(candidate) is False
        text = candidate if isinstance(candidate, str) else json.dumps(candidate)
        assert q.matches_text(text) is False

    @pytest.mark.parametrize(
        "text", ["", "{", "not json", '{"type":"Point","coordinates":[NaN,1]}', "[[[[[[[[[[[[[[[[[[[[[[[["]
    )
    def test_broken_text_does_not_match(self, text: str) -> None:
        assert query("disjoint", "Polygon", SQUARE).matches_text(text) is False

    def test_null_text_does_not_match(self) -> None:
        assert query("disjoint", "Polygon", SQUARE).matches_text(None) is False

    def test_self_intersecting_candidate_is_tolerated(self) -> None:
        bowtie = polygon([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]])
        q = query("intersects", "Point", [0.1, 0.5])
        assert isinstance(q.matches(bowtie), bool)
        assert query("disjoint", "Point", [50, 50]).matches(bowtie)

    @pytest.mark.parametrize("candidate", [INSIDE, OUTSIDE, ON_EDGE, STRADDLING, LINE_CROSSING, BIG_AROUND])
    @pytest.mark.parametrize("georel", ["within", "intersects", "near;maxDistance==500", "disjoint"])
    def test_text_and_dict_agree(self, georel: str, candidate: dict[str, Any]) -> None:
        q = query(georel, "Polygon", SQUARE)
        assert q.matches_text(json.dumps(candidate)) is q.matches(candidate)

    def test_parsed_text_is_cached(self) -> None:
        from ucity.ngsild import geo

        text = json.dumps(point(126.9801234, 37.5701234))
        q = query("within", "Polygon", SQUARE)
        q.matches_text(text)
        hits = geo._candidate_from_text.cache_info().hits
        assert q.matches_text(text)
        assert query("disjoint", "Polygon", SQUARE).matches_text(text) is False
        assert geo._candidate_from_text.cache_info().hits == hits + 2

    def test_as_sqlite_user_function_with_rtree_prefilter(self) -> None:
        conn = sqlite3.connect(":memory:")
        try:
            conn.execute("CREATE VIRTUAL TABLE geo_rtree USING rtree(gid, minx, maxx, miny, maxy)")
        except sqlite3.OperationalError:
            pytest.skip("SQLite built without R*Tree")
        conn.execute("CREATE TABLE geo_meta (gid INTEGER PRIMARY KEY, geojson TEXT)")
        shapes = {1: INSIDE, 2: OUTSIDE, 3: STRADDLING, 4: FAR_AWAY, 5: LINE_INSIDE}
        for gid, shape in shapes.items():
            minx, miny, maxx, maxy = geometry_bbox(shape)
            conn.execute("INSERT INTO geo_rtree VALUES (?,?,?,?,?)", (gid, minx, maxx, miny, maxy))
            conn.execute("INSERT INTO geo_meta VALUES (?,?)", (gid, json.dumps(shape)))
        q = query("within", "Polygon", SQUARE)
        conn.create_function("geo_match", 1, q.matches_text, deterministic=True)
        box = q.bbox()
        assert box is not None
        rows = conn.execute(
            "SELECT m.gid FROM geo_rtree r JOIN geo_meta m USING (gid)"
            " WHERE r.minx <= ? AND r.maxx >= ? AND r.miny <= ? AND r.maxy >= ? AND geo_match(m.geojson)"
            " ORDER BY m.gid",
            (box[2], box[0], box[3], box[1]),
        ).fetchall()
        conn.close()
        assert [gid for (gid,) in rows] == [1, 5]


# ---------------------------------------------------------------------------------------------
# validate_geojson / geometry_bbox
# ---------------------------------------------------------------------------------------------


class TestValidateGeoJSON:
    @pytest.mark.parametrize(
        "value",
        [
            point(127, 37.5),
            {"type": "Point", "coordinates": [127, 37.5, 42.0]},
            {"type": "MultiPoint", "coordinates": [[127, 37.5]]},
            {"type": "LineString", "coordinates": [[127, 37.5], [127.1, 37.6]]},
            {"type": "MultiLineString", "coordinates": [[[127, 37.5], [127.1, 37.6]]]},
            polygon(*SQUARE),
            {"type": "MultiPolygon", "coordinates": [SQUARE]},
            {"type": "GeometryCollection", "geometries": [point(127, 37.5), polygon(*SQUARE)]},
            {"type": "Point", "coordinates": [127, 37.5], "bbox": [127, 37.5, 127, 37.5]},
            polygon([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]),  # OGC-invalid but well-formed GeoJSON
            polygon([[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]]),  # clockwise: RFC 7946 says accept
        ],
    )
    def test_valid(self, value: dict[str, Any]) -> None:
        validate_geojson(value)

    @pytest.mark.parametrize(
        "value,message",
        [
            ("POINT (127 37.5)", "must be an object"),
            ({"coordinates": [127, 37.5]}, "unknown GeoJSON type None"),
            ({"type": "Feature", "geometry": point(127, 37.5)}, "unknown GeoJSON type 'Feature'"),
            ({"type": "Point"}, "a Point needs coordinates"),
            ({"type": "Point", "coordinates": [127, 95]}, r"geometry\.coordinates: latitude 95 out of range"),
            ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}, "not closed"),
            ({"type": "LineString", "coordinates": [[0, 0]]}, "at least 2 positions"),
            ({"type": "GeometryCollection"}, r"geometries: expected an array of geometries"),
            (
                {"type": "GeometryCollection", "geometries": [{"type": "Point"}]},
                r"geometries\[0\]: a Point needs coordinates",
            ),
        ],
    )
    def test_invalid(self, value: Any, message: str) -> None:
        with pytest.raises(GeoQueryError, match=message):
            validate_geojson(value)

    def test_deeply_nested_collection_is_refused(self) -> None:
        value: dict[str, Any] = point(0, 0)
        for _ in range(20):
            value = {"type": "GeometryCollection", "geometries": [value]}
        with pytest.raises(GeoQueryError, match="nested too deeply"):
            validate_geojson(value)

    def test_geometry_bbox(self) -> None:
        assert geometry_bbox(point(127, 37.5)) == (127, 37.5, 127, 37.5)
        assert geometry_bbox(polygon(*SQUARE)) == (126.97, 37.56, 126.99, 37.58)
        assert geometry_bbox({"type": "GeometryCollection", "geometries": [point(127, 37.5), point(126, 38)]}) == (
            126,
            37.5,
            127,
            38,
        )

    def test_geometry_bbox_rejects_invalid(self) -> None:
        with pytest.raises(GeoQueryError):
            geometry_bbox({"type": "Point", "coordinates": []})

    @pytest.mark.parametrize("coordinates", [[127, 37.5], [-180, -90.0], [180.0, 90, 12.5], [0, -0.0], [1e-300, 5],
                                             [], [1], [1, 2, 3, 4], [181, 0], [0, 91], [True, 1], ["1", 2],
                                             [float("nan"), 1], [10**400, 1], "1,2", None])
    def test_geometry_bbox_of_a_point_is_what_shapely_gives(self, coordinates: Any) -> None:
        """The Point shortcut gives shapely's box, or the same error."""
        from ucity.ngsild.geo import _geometry_from_geojson

        value = {"type": "Point", "coordinates": coordinates}
        try:
            expected: Any = tuple(_geometry_from_geojson(value).bounds)
        except GeoQueryError as exc:
            expected = str(exc)
        try:
            got: Any = geometry_bbox(value)
        except GeoQueryError as exc:
            got = str(exc)
        assert got == expected
        assert [type(v) for v in got] == [float] * 4 if isinstance(got, tuple) else True


# ---------------------------------------------------------------------------------------------
# The bbox prefilter
# ---------------------------------------------------------------------------------------------


class TestBBox:
    @pytest.mark.parametrize("georel", ["within", "contains", "intersects", "equals", "overlaps"])
    def test_relations_use_the_query_box(self, georel: str) -> None:
        assert query(georel, "Polygon", SQUARE).bbox() == (126.97, 37.56, 126.99, 37.58)

    def test_no_prefilter_for_disjoint_and_min_distance(self) -> None:
        assert query("disjoint", "Polygon", SQUARE).bbox() is None
        assert near_city_hall("near;minDistance==10").bbox() is None

    def test_near_box_is_slightly_larger_than_the_circle(self) -> None:
        q = near_city_hall("near;maxDistance==1000")
        box = q.bbox()
        assert box is not None
        for bearing in range(0, 360, 15):
            # offset() is spherical; WGS84 (what the query measures) differs by < 0.3 % here.
            lon, lat = offset(*CITY_HALL, 996.0, bearing)
            assert q.matches(point(lon, lat))
            assert box[0] <= lon <= box[2] and box[1] <= lat <= box[3]
        # ...and not wastefully larger: about 1000 m in each direction.
        assert (box[3] - CITY_HALL[1]) * 110_990 == pytest.approx(1000, rel=0.01)
        assert (box[2] - CITY_HALL[0]) * 88_200 == pytest.approx(1000, rel=0.01)

    def test_near_with_both_distances_uses_max(self) -> None:
        assert (
            near_city_hall("near;minDistance==10;maxDistance==1000").bbox()
            == near_city_hall("near;maxDistance==1000").bbox()
        )

    def test_near_box_is_clamped_to_the_globe(self) -> None:
        box = query("near;maxDistance==50000", "Point", [179.9, 89.9]).bbox()
        assert box is not None
        assert box[2] == 180.0 and box[3] == 90.0
        huge = query("near;maxDistance==1e9", "Point", [0, 0]).bbox()
        assert huge == (-180.0, -90.0, 180.0, 90.0)

    def test_near_box_around_a_polygon_query(self) -> None:
        box = query("near;maxDistance==1000", "Polygon", SQUARE).bbox()
        assert box is not None
        assert box[0] < 126.97 and box[1] < 37.56 and box[2] > 126.99 and box[3] > 37.58


seoul_lon = st.floats(min_value=126.8, max_value=127.2, allow_nan=False)
seoul_lat = st.floats(min_value=37.4, max_value=37.7, allow_nan=False)
seoul_point = st.tuples(seoul_lon, seoul_lat)


@st.composite
def seoul_box(draw: st.DrawFn, max_size: float = 0.05) -> tuple[float, float, float, float]:
    lon, lat = draw(seoul_point)
    width = draw(st.floats(min_value=1e-4, max_value=max_size))
    height = draw(st.floats(min_value=1e-4, max_value=max_size))
    return lon, lat, lon + width, lat + height


@st.composite
def seoul_candidate(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Point", "LineString", "Polygon", "MultiPoint"]))
    if kind == "Point":
        return point(*draw(seoul_point))
    if kind == "MultiPoint":
        return {
            "type": "MultiPoint",
            "coordinates": [list(p) for p in draw(st.lists(seoul_point, min_size=1, max_size=4))],
        }
    if kind == "LineString":
        return {"type": "LineString", "coordinates": [list(draw(seoul_point)), list(draw(seoul_point))]}
    return polygon(box_ring(*draw(seoul_box())))


class TestBBoxSoundness:
    @settings(max_examples=400, deadline=None)
    @given(center=seoul_point, target=seoul_point, distance=st.floats(min_value=0, max_value=20_000))
    def test_near_points(self, center: tuple[float, float], target: tuple[float, float], distance: float) -> None:
        q = query(f"near;maxDistance=={distance!r}", "Point", list(center))
        candidate = point(*target)
        box = q.bbox()
        assert box is not None
        if q.matches(candidate):
            assert boxes_intersect(geometry_bbox(candidate), box)

    @settings(max_examples=300, deadline=None)
    @given(
        center=seoul_point,
        distance=st.floats(min_value=1, max_value=20_000),
        bearing=st.floats(0, 360),
        frac=st.floats(0, 1),
    )
    def test_near_points_inside_the_radius(
        self, center: tuple[float, float], distance: float, bearing: float, frac: float
    ) -> None:
        # Aim at candidates that do match, so the check is not vacuous.
        q = query(f"near;maxDistance=={distance!r}", "Point", list(center))
        candidate = point(*offset(*center, distance * frac * 0.99, bearing))
        box = q.bbox()
        assert box is not None
        assert q.matches(candidate)
        assert boxes_intersect(geometry_bbox(candidate), box)

    @settings(max_examples=300, deadline=None)
    @given(
        query_box=seoul_box(),
        candidate=seoul_candidate(),
        distance=st.floats(min_value=0, max_value=10_000),
        as_point=st.booleans(),
    )
    def test_near_any_shape(
        self, query_box: tuple[float, float, float, float], candidate: dict[str, Any], distance: float, as_point: bool
    ) -> None:
        if as_point:
            q = query(f"near;maxDistance=={distance!r}", "Point", list(query_box[:2]))
        else:
            q = query(f"near;maxDistance=={distance!r}", "Polygon", [box_ring(*query_box)])
        box = q.bbox()
        assert box is not None
        if q.matches(candidate):
            assert boxes_intersect(geometry_bbox(candidate), box)

    @settings(max_examples=300, deadline=None)
    @given(
        georel=st.sampled_from(["within", "contains", "intersects", "equals", "overlaps"]),
        query_box=seoul_box(max_size=0.2),
        candidate=seoul_candidate(),
    )
    def test_relations(
        self, georel: str, query_box: tuple[float, float, float, float], candidate: dict[str, Any]
    ) -> None:
        q = query(georel, "Polygon", [box_ring(*query_box)])
        box = q.bbox()
        assert box is not None
        if q.matches(candidate):
            assert boxes_intersect(geometry_bbox(candidate), box)

    @settings(max_examples=200, deadline=None)
    @given(center=seoul_point, target=seoul_point)
    def test_near_agrees_with_haversine_in_seoul(
        self, center: tuple[float, float], target: tuple[float, float]
    ) -> None:
        d = query("near;maxDistance==1", "Point", list(center)).distance_m(point(*target))
        expected = haversine_m(*center, *target)
        assert d is not None
        assert d == pytest.approx(expected, rel=0.005, abs=1e-6)
