"""PLAT-R3: the N nearest cameras, the radius rules, the field-of-view preference, and an index that follows
the camera entities."""

from __future__ import annotations

import math
import random

import pytest

from tests.ops.support import POINT, TENANT, Ops
from ucity.core.bus import Context
from ucity.core.config import NearestSettings
from ucity.ngsild.context import core_context
from ucity.ngsild.geo import haversine_m
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import replace_op
from ucity.ops.nearest import METRES_PER_DEG, CameraGrid, IndexedCamera, covers, indexed, scan, select
from ucity.store.base import Mutation

LON0, LAT0 = 127.0, 37.5


def offset(distance_m: float, bearing_deg: float, lon: float = LON0, lat: float = LAT0) -> tuple[float, float]:
    """The point `distance_m` away from (lon, lat) in the direction `bearing_deg` (a local approximation)."""
    b = math.radians(bearing_deg)
    dlat = distance_m * math.cos(b) / METRES_PER_DEG
    dlon = distance_m * math.sin(b) / (METRES_PER_DEG * math.cos(math.radians(lat)))
    return lon + dlon, lat + dlat


def camera(camera_id: str, distance_m: float, bearing_deg: float, heading: float | None = None,
           fov: float | None = None, all_round: bool = False, working: bool = True) -> IndexedCamera:
    """A camera `distance_m` from (LON0, LAT0) in the direction `bearing_deg` from the point."""
    lon, lat = offset(distance_m, bearing_deg)
    return IndexedCamera(camera_id, lon, lat, heading, fov, all_round, working, camera_id, "2026-01-01T00:00:00Z")


def grid_of(*cameras: IndexedCamera) -> CameraGrid:
    grid = CameraGrid()
    for c in cameras:
        grid.upsert(c)
    return grid


def ids(selection: object) -> list[str]:
    return [near.camera.id for near in selection.cameras]  # type: ignore[attr-defined]


# -- the rules on a hand-made grid ------------------------------------------------------------------------
def test_five_nearest_within_500_m_in_distance_order() -> None:
    grid = grid_of(*(camera(f"c{d}", d, (d * 37) % 360, all_round=True) for d in (450, 30, 120, 480, 260, 75, 600, 900)))
    result = select(grid.within, LON0, LAT0, NearestSettings())
    assert ids(result) == ["c30", "c75", "c120", "c260", "c450"]
    assert [round(n.distance_m) for n in result.cameras] == [30, 75, 120, 260, 450]
    assert result.radius_m == 500.0 and result.widened is False and result.in_range == 6


def test_radius_widens_to_1_km_when_fewer_than_five_within_500_m() -> None:
    grid = grid_of(camera("near1", 100, 10, all_round=True), camera("near2", 400, 200, all_round=True),
                   camera("mid1", 700, 90, all_round=True), camera("mid2", 950, 300, all_round=True),
                   camera("mid3", 800, 180, all_round=True), camera("mid4", 990, 45, all_round=True),
                   camera("far", 1200, 0, all_round=True))
    result = select(grid.within, LON0, LAT0, NearestSettings())
    assert ids(result) == ["near1", "near2", "mid1", "mid3", "mid2"]
    assert result.radius_m == 1000.0 and result.widened is True and result.in_range == 2


def test_fewer_than_five_within_1_km_returns_what_there_is() -> None:
    grid = grid_of(camera("a", 300, 0), camera("b", 900, 90), camera("out", 1500, 180))
    result = select(grid.within, LON0, LAT0, NearestSettings())
    assert ids(result) == ["a", "b"] and result.radius_m == 1000.0


def test_cameras_looking_away_give_way_to_covering_ones() -> None:
    # `away` is nearest but a fixed camera pointed away; `covering` looks at the point; `unknown` has no heading.
    away = camera("away", 40, 0, heading=0.0, fov=60.0)  # north of the point, looking north
    covering = camera("covering", 120, 90, heading=270.0, fov=60.0)  # east of the point, looking west
    unknown = camera("unknown", 200, 180)
    ptz = camera("ptz", 300, 45, heading=45.0, fov=60.0, all_round=True)
    grid = grid_of(away, covering, unknown, ptz)
    result = select(grid.within, LON0, LAT0, NearestSettings(count=3))
    assert ids(result) == ["covering", "unknown", "ptz"]
    assert [n.covers for n in result.cameras] == [True, None, True]
    # with only cameras looking away left, they still fill the list (a camera nearby beats none)
    result = select(grid.within, LON0, LAT0, NearestSettings(count=4))
    assert ids(result) == ["away", "covering", "unknown", "ptz"]
    assert result.cameras[0].covers is False
    plain = select(grid.within, LON0, LAT0, NearestSettings(count=3, prefer_covering=False))
    assert ids(plain) == ["away", "covering", "unknown"]


def test_coverage_uses_the_bearing_from_the_camera() -> None:
    cam = camera("c", 100, 90, heading=270.0, fov=20.0)  # 100 m east of the point, looking west
    bearing_to_point = 270.0
    assert covers(cam, 100.0, bearing_to_point) is True
    assert covers(cam, 100.0, 281.0) is False
    assert covers(cam, 100.0, 279.0) is True
    assert covers(camera("n", 10, 0, heading=355.0, fov=30.0), 10.0, 5.0) is True  # across north


def test_cameras_out_of_order_are_not_selected() -> None:
    grid = grid_of(camera("broken", 20, 0, all_round=True, working=False), camera("ok", 60, 0, all_round=True))
    assert ids(select(grid.within, LON0, LAT0, NearestSettings(count=1))) == ["ok"]


def test_the_grid_answers_like_a_scan_of_every_camera() -> None:
    rng = random.Random(5)
    cameras = [camera(f"r{k}", rng.uniform(0, 3000), rng.uniform(0, 360), heading=rng.choice([None, rng.uniform(0, 360)]),
                      fov=rng.choice([None, 60.0, 90.0]), working=rng.random() > 0.05) for k in range(3000)]
    grid = grid_of(*cameras)
    for _ in range(200):
        lon, lat = offset(rng.uniform(0, 2500), rng.uniform(0, 360))
        expected = select(scan(cameras), lon, lat, NearestSettings())
        found = select(grid.within, lon, lat, NearestSettings())
        assert ids(found) == ids(expected)
        assert (found.radius_m, found.in_range) == (expected.radius_m, expected.in_range)


def test_a_moved_camera_leaves_its_old_cell() -> None:
    grid = grid_of(camera("m", 100, 0))
    moved = IndexedCamera("m", *offset(2000, 0), None, None, False, True, "m", "2026-01-02T00:00:00Z")
    grid.upsert(moved)
    assert select(grid.within, LON0, LAT0, NearestSettings(widened_radius_m=1000)).cameras == []
    stale = camera("m", 100, 0)  # an older state arriving late does not move it back
    grid.upsert(stale)
    assert grid.get("m") == moved


# -- the simulated city (4,100 cameras) --------------------------------------------------------------------
async def test_event_returns_its_five_nearest_cameras_in_the_simulated_city(ops: Ops) -> None:
    created = await ops.call("create_event", "POST", "/api/v1/events", {
        "service": "119_DISPATCH", "typeCode": "fire", "location": {"lon": POINT[0], "lat": POINT[1]},
        "address": "서울특별시 구로구 디지털로 300"})
    assert created.status == 201
    resp = await ops.call("event_cameras", eventId=created.body["id"])
    assert resp.status == 200
    body = resp.body
    assert len(body["cameras"]) == 5 and body["radiusM"] == 500.0 and body["widened"] is False
    distances = [c["distanceM"] for c in body["cameras"]]
    assert distances == sorted(distances) and distances[-1] <= 500.0
    # the same five as measuring all 4,100 cameras one by one
    everyone = [c for c in (indexed(d) for d in await _all_camera_docs(ops)) if c is not None]
    assert len(everyone) == 4100
    expected = select(scan(everyone), *POINT, NearestSettings())
    assert [c["entityId"] for c in body["cameras"]] == ids(expected)
    for entry in body["cameras"]:
        lon, lat = entry["location"]["coordinates"]
        assert entry["distanceM"] == pytest.approx(haversine_m(lon, lat, *POINT), abs=0.05)


async def test_nearest_by_point_with_n_and_radius(ops: Ops) -> None:
    resp = await ops.call("list_cameras", params={"near": f"{POINT[0]},{POINT[1]}", "n": "8", "radius": "300"})
    assert resp.status == 200
    assert len(resp.body["cameras"]) == 8 and resp.body["radiusM"] == 300.0
    assert all(c["distanceM"] <= 300 for c in resp.body["cameras"])


async def test_the_index_follows_camera_entities(ops: Ops) -> None:
    near = await ops.call("list_cameras", params={"near": f"{POINT[0]},{POINT[1]}"})
    first = near.body["cameras"][0]["id"]
    # a fault takes it out of the selection ...
    resp = await ops.call("patch_camera", "PATCH", "/", {"status": "fault"}, role="admin", cameraId=first)
    assert resp.status == 200 and resp.body["working"] is False
    after = await ops.call("list_cameras", params={"near": f"{POINT[0]},{POINT[1]}"})
    assert first not in [c["id"] for c in after.body["cameras"]]
    # ... and a camera written by any client (here straight through the store, like an NGSI-LD batch) joins it
    entity = {"id": "urn:ngsi-ld:Camera:new-at-the-point", "type": "Camera", "cameraType": {"type": "Property",
              "value": "PTZ"}, "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": list(POINT)}}}
    doc = normalize_entity(entity, core_context())
    await ops.ucity.store.mutate(TENANT, [Mutation(doc["id"], replace_op(doc, True))], Context())
    await ops.settle()
    after = await ops.call("list_cameras", params={"near": f"{POINT[0]},{POINT[1]}"})
    assert after.body["cameras"][0]["id"] == "new-at-the-point" and after.body["cameras"][0]["distanceM"] == 0.0
    # deleting it removes it
    assert (await ops.call("delete_camera", "DELETE", "/", role="admin", cameraId="new-at-the-point")).status == 204
    after = await ops.call("list_cameras", params={"near": f"{POINT[0]},{POINT[1]}"})
    assert "new-at-the-point" not in [c["id"] for c in after.body["cameras"]]


async def _all_camera_docs(ops: Ops) -> list[dict[str, object]]:
    from ucity.ops.nearest import CAMERA_TYPE
    from ucity.store.base import EntityQuery, TypeExpr

    docs, _ = await ops.ucity.store.query_entities(TENANT, EntityQuery(types=TypeExpr(((CAMERA_TYPE,),)), limit=10_000))
    return docs
