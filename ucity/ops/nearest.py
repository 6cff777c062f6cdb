"""The cameras nearest a point (PLAT-R3), from an in-memory spatial index kept in step with the store.

Selection: the N nearest working cameras (default 5, Daegu practice [V]) within a radius (default
500 m [D]); when fewer than N are within it, the radius widens (default 1 km [D]). Among the cameras in
range, those whose field of view is known to look away from the point give way to the others
(`nearest.prefer_covering`); the answer is ordered by distance. A camera covers the point when it is
all-round (PTZ, or a field of view of 360°) or the bearing from it to the point lies within its heading
± half its field of view; without a heading or a field of view, coverage is unknown (`covers: null`).

Index: a grid of 0.002° cells (about 180 m × 220 m at Seoul's latitude) per tenant, filled from the
store on first use and then updated from every committed change of a `Camera` entity (bus
`EntitiesChanged`), whoever wrote it (this API, the CSV import, NGSI-LD clients, the simulator). A
query looks at the cells that cover the radius' bounding box and measures great-circle distances
(`ucity.ngsild.geo.haversine_m`, within 0.5 % of the ellipsoid at city scale).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ucity.core.bus import Bus, EntitiesChanged, EntityChange
from ucity.core.config import NearestSettings
from ucity.ngsild.context import core_context
from ucity.ngsild.geo import EARTH_RADIUS_M, haversine_m
from ucity.ngsild.model import default_geometry
from ucity.store.base import Doc, EntityQuery, Store, TypeExpr

log = logging.getLogger(__name__)
CELL_DEG = 0.002
METRES_PER_DEG = math.pi * EARTH_RADIUS_M / 180
LOCATION = "https://uri.etsi.org/ngsi-ld/location"
NOT_WORKING = frozenset({"fault", "offline", "disabled", "maintenance"})


def iri(term: str) -> str:
    return core_context().expand_term(term)


CAMERA_TYPE = iri("Camera")


@dataclass(frozen=True, slots=True)
class IndexedCamera:
    """What selection needs of a camera."""

    id: str  # the entity id
    lon: float
    lat: float
    heading: float | None  # degrees clockwise from north
    fov: float | None  # horizontal field of view, degrees
    all_round: bool  # PTZ or 360°: can look anywhere
    working: bool
    name: str | None
    modified: str


@dataclass(frozen=True, slots=True)
class NearCamera:
    camera: IndexedCamera
    distance_m: float
    bearing_deg: float  # from the camera to the point
    covers: bool | None


@dataclass(frozen=True, slots=True)
class Selection:
    cameras: list[NearCamera]
    radius_m: float
    widened: bool
    in_range: int  # working cameras within radius_m (those `usable` accepts, when given)


def bearing(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Initial great-circle bearing from point 1 to point 2, degrees clockwise from north."""
    phi1, phi2, dlam = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dlam) * math.cos(phi2)
    x = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dlam)
    return math.degrees(math.atan2(y, x)) % 360.0


def covers(camera: IndexedCamera, distance_m: float, to_point: float) -> bool | None:
    if camera.all_round or distance_m < 1.0:
        return True
    if camera.heading is None or camera.fov is None:
        return None
    off = abs((to_point - camera.heading + 180.0) % 360.0 - 180.0)
    return off <= camera.fov / 2.0


def _cell(lon: float, lat: float) -> tuple[int, int]:
    return math.floor(lon / CELL_DEG), math.floor(lat / CELL_DEG)


class CameraGrid:
    """Cameras of one tenant in grid cells; upsert and remove are O(1)."""

    def __init__(self) -> None:
        self._cells: defaultdict[tuple[int, int], dict[str, IndexedCamera]] = defaultdict(dict)
        self._cameras: dict[str, IndexedCamera] = {}

    def __len__(self) -> int:
        return len(self._cameras)

    def get(self, camera_id: str) -> IndexedCamera | None:
        return self._cameras.get(camera_id)

    def upsert(self, camera: IndexedCamera) -> None:
        old = self._cameras.get(camera.id)
        if old is not None:
            if old.modified > camera.modified:  # an older state delivered late (while loading)
                return
            self._drop(old)
        self._cameras[camera.id] = camera
        self._cells[_cell(camera.lon, camera.lat)][camera.id] = camera

    def remove(self, camera_id: str) -> None:
        old = self._cameras.pop(camera_id, None)
        if old is not None:
            self._drop(old)

    def _drop(self, camera: IndexedCamera) -> None:
        key = _cell(camera.lon, camera.lat)
        cell = self._cells.get(key)
        if cell is not None:
            cell.pop(camera.id, None)
            if not cell:
                del self._cells[key]

    def within(self, lon: float, lat: float, radius_m: float) -> InRange:
        """Working cameras within `radius_m` of the point, nearest first, from the cells covering its box."""
        dlat = radius_m / METRES_PER_DEG
        cos_lat = max(math.cos(math.radians(min(89.9, abs(lat) + dlat))), 1e-6)
        dlon = dlat / cos_lat
        (x0, y0), (x1, y1) = _cell(lon - dlon, lat - dlat), _cell(lon + dlon, lat + dlat)
        found: InRange = []
        cells = self._cells
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                cell = cells.get((x, y))
                if cell:
                    found.extend(_in_range(cell.values(), lon, lat, radius_m))
        found.sort()
        return found

    def all(self) -> list[IndexedCamera]:
        return list(self._cameras.values())


# (distance in metres, camera id, camera), ascending: the id breaks ties, so the order is total.
InRange = list[tuple[float, str, IndexedCamera]]
Within = Callable[[float, float, float], InRange]  # (lon, lat, radius) -> working cameras in range, nearest first


def _in_range(cameras: Iterable[IndexedCamera], lon: float, lat: float, radius_m: float) -> InRange:
    out = []
    for camera in cameras:
        if camera.working:
            distance = haversine_m(camera.lon, camera.lat, lon, lat)
            if distance <= radius_m:
                out.append((distance, camera.id, camera))
    return out


def measure(camera: IndexedCamera, lon: float, lat: float, distance: float | None = None) -> NearCamera:
    """Distance, bearing and coverage of one camera for a point."""
    distance = haversine_m(camera.lon, camera.lat, lon, lat) if distance is None else distance
    to_point = bearing(camera.lon, camera.lat, lon, lat)
    return NearCamera(camera, distance, to_point, covers(camera, distance, to_point))


def select(within: Within, lon: float, lat: float, settings: NearestSettings, count: int | None = None,
           radius_m: float | None = None, usable: Callable[[str], bool] | None = None) -> Selection:
    """PLAT-R3 over any source of cameras in range (see the module docstring). With `usable` (entity id -> bool),
    only the working cameras it accepts count, fill the slots and widen the radius (a package's cameras: those
    that can give footage, i.e. with a stream URL; QA15 F5)."""
    if usable is not None:
        within = _only(within, usable)
    n = count or settings.count
    radius = radius_m or settings.radius_m
    found = within(lon, lat, radius)
    in_range, widened = len(found), False
    if len(found) < n and settings.widened_radius_m > radius:
        found, radius, widened = within(lon, lat, settings.widened_radius_m), settings.widened_radius_m, True
    if not settings.prefer_covering:
        return Selection([measure(cam, lon, lat, d) for d, _, cam in found[:n]], radius, widened, in_range)
    # Bearings only as far as needed: nearest first, those known to look away set aside to fill up with.
    chosen: list[NearCamera] = []
    away: list[NearCamera] = []
    for distance, _, cam in found:
        near = measure(cam, lon, lat, distance)
        (away if near.covers is False else chosen).append(near)
        if len(chosen) == n:
            break
    chosen = sorted([*chosen, *away[: n - len(chosen)]], key=lambda near: (near.distance_m, near.camera.id))
    return Selection(chosen, radius, widened, in_range)


def _only(within: Within, usable: Callable[[str], bool]) -> Within:
    def only(lon: float, lat: float, radius_m: float) -> InRange:
        return [found for found in within(lon, lat, radius_m) if usable(found[1])]

    return only


def scan(cameras: list[IndexedCamera]) -> Within:
    """Cameras in range by measuring every one of them: the baseline of bench/bench_nearest.py and a test oracle."""

    def within(lon: float, lat: float, radius_m: float) -> InRange:
        return sorted(_in_range(cameras, lon, lat, radius_m))

    return within


# -- from entities -------------------------------------------------------------------------------------
_HEADING, _FOV, _TYPE, _ON, _STATUS, _NAME = (iri(t) for t in ("heading", "fieldOfView", "cameraType", "on", "status",
                                                             "cameraName"))


def _value(doc: Doc, attr: str) -> Any:
    for instance in doc.get("attrs", {}).get(attr, ()):
        if "datasetId" not in instance:
            return instance.get("value")
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def indexed(doc: Doc) -> IndexedCamera | None:
    """The index entry of a stored Camera entity; None without a Point location."""
    geometry = default_geometry(doc, LOCATION)
    if not geometry or geometry.get("type") != "Point":
        return None
    lon, lat = (float(c) for c in geometry["coordinates"][:2])
    fov = _number(_value(doc, _FOV))
    camera_type = _value(doc, _TYPE)
    status = _value(doc, _STATUS)
    working = _value(doc, _ON) is not False and status not in NOT_WORKING
    name = _value(doc, _NAME)
    return IndexedCamera(doc["id"], lon, lat, _number(_value(doc, _HEADING)), fov,
                         camera_type == "PTZ" or (fov is not None and fov >= 360.0), working,
                         name if isinstance(name, str) else None, str(doc.get("modifiedAt", "")))


def is_camera(doc: Doc | None) -> bool:
    return doc is not None and CAMERA_TYPE in doc.get("type", ())


class CameraIndex:
    """One grid per tenant, loaded on first use, updated from committed changes."""

    def __init__(self, store: Store, bus: Bus, settings: NearestSettings) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings
        self._grids: dict[str, CameraGrid] = {}
        self._loading: dict[str, tuple[asyncio.Task[CameraGrid], list[EntityChange]]] = {}
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self, preload: tuple[str, ...] = ()) -> None:
        self._unsubscribe = self.bus.subscribe(EntitiesChanged, self._on_changes)
        for tenant in preload:
            await self.grid(tenant)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def grid(self, tenant: str) -> CameraGrid:
        grid = self._grids.get(tenant)
        if grid is not None:
            return grid
        if tenant not in self._loading:
            task = asyncio.get_running_loop().create_task(self._load(tenant))
            self._loading[tenant] = (task, [])
        return await asyncio.shield(self._loading[tenant][0])

    async def _load(self, tenant: str) -> CameraGrid:
        try:
            docs, _ = await self.store.query_entities(
                tenant, EntityQuery(types=TypeExpr(((CAMERA_TYPE,),)), limit=10_000_000))
            grid = CameraGrid()
            for doc in docs:
                camera = indexed(doc)
                if camera is not None:
                    grid.upsert(camera)
            for change in self._loading[tenant][1]:  # changes committed while the snapshot was read
                _apply(grid, change)
            self._grids[tenant] = grid
            log.info("camera index of %s: %d cameras", tenant, len(grid))
            return grid
        finally:
            del self._loading[tenant]

    async def _on_changes(self, event: EntitiesChanged) -> None:
        grids, loading = self._grids, self._loading
        if not grids and not loading:
            return  # no tenant's index is loaded: loading it later reads the committed state
        for change in event.changes:
            # Inline `is_camera` of both documents: this runs for every committed change, and a write
            # that keeps the types (a measure, a patch) shares the `type` list of `before` with `after`.
            after, before = change.after, change.before
            types = after.get("type", ()) if after is not None else ()
            if CAMERA_TYPE not in types and (
                    before is None or before.get("type") is types or CAMERA_TYPE not in before.get("type", ())):
                continue
            if change.tenant not in grids and change.tenant not in loading:
                continue
            grid = grids.get(change.tenant)
            if grid is not None:
                _apply(grid, change)
            elif change.tenant in self._loading:
                self._loading[change.tenant][1].append(change)

    async def select(self, tenant: str, lon: float, lat: float, count: int | None = None,
                     radius_m: float | None = None, usable: Callable[[str], bool] | None = None) -> Selection:
        return select((await self.grid(tenant)).within, lon, lat, self.settings, count, radius_m, usable)

    def health(self) -> dict[str, Any]:
        return {"tenants": {t: len(g) for t, g in self._grids.items()}}


def _apply(grid: CameraGrid, change: EntityChange) -> None:
    camera = indexed(change.after) if is_camera(change.after) and change.after is not None else None
    if camera is None:
        grid.remove(change.entity_id)
    else:
        grid.upsert(camera)
