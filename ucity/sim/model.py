"""The things of the simulated city, as frozen records.

Each record holds what the generators of `signals.py` need (its parameters) and what the static
NGSI-LD entities and the IoT Agent provisioning need (names, places, references). `key` is a
stable integer derived from the id: the pure signal functions draw their noise from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ucity.sim.geo import LonLat


@dataclass(frozen=True)
class Facility:
    """An aging facility under structural monitoring (§2.1), a Smart Data Models `Building`."""

    id: str
    name: str
    facility_class: str  # footbridge, retainingWall, school, daycareCenter, pumpStation, ...
    category: str  # Smart Data Models Building category
    owner: str  # public | private
    dong: str
    point: LonLat
    year_built: int
    grade: str  # legal safety grade A–E (§2.2)
    last_inspection: date
    inspection_interval_days: int
    floors: int


@dataclass(frozen=True)
class StructuralSensor:
    """A LoRaWAN structural sensor on a facility: tilt, crack or vibration, plus temperature/RH."""

    id: str
    facility_id: str
    kind: str  # tilt | crack | vibration
    member: str  # main | auxiliary (weights of §2.5 step 3)
    point: LonLat
    thermal_coef: float  # rad/°C for tilt, mm/°C for crack (§2.3, SHM-R7: reading = a + b·T)
    offset: float  # a: rad for tilt, mm for crack, as installed
    ref_temp_c: float  # temperature at installation, where the tilt change is zero
    noise: float  # rad or mm, 1 sigma
    vib_median_mm_s: float  # background PPV
    vib_freq_hz: float  # dominant frequency of the structure
    battery0: float  # battery level (0..1) at the simulation epoch
    rssi_dbm: float
    key: int


@dataclass(frozen=True)
class Camera:
    """A CCTV camera in the shape of Korea's national CCTV standard dataset (전국CCTV표준데이터)."""

    id: str
    site_id: str
    point: LonLat
    camera_type: str  # Smart Data Models Camera.cameraType
    purpose_ko: str  # 설치목적구분
    usage: str  # Smart Data Models Camera.cameraUsage
    heading_deg: float
    fov_deg: float
    direction_ko: str  # 촬영방면정보
    pixels_10k: int  # 카메라화소수, in units of 10,000 pixels (200 = 2 MP)
    retention_days: int  # 보관일수
    installed: str  # 설치연월 YYYY-MM
    agency: str  # 관리기관명
    agency_phone: str  # 관리기관전화번호
    dong: str
    road_address: str  # 소재지도로명주소
    lot_address: str  # 소재지지번주소
    stream_url: str


@dataclass(frozen=True)
class ElderlyHome:
    """A home of an elderly person living alone, with emergency-safety devices (§3)."""

    id: str
    point: LonLat
    dong: str
    age: int
    priority: bool  # priority recipient: monthly visit (ELD-R8)
    wake_h: float  # local hour of getting up
    sleep_h: float  # local hour of going to bed
    outings_per_day: float  # door events 1–3/day (§8.6)
    fridge_per_day: float
    activity_per_h: float  # motion events per awake hour
    key: int


@dataclass(frozen=True)
class ElectricBoard:
    """A market store's distribution board with an IoT electric-safety sensor (§4)."""

    id: str
    market: str
    store_no: int
    business_type: str
    point: LonLat
    breaker_a: float
    day_load_a: float
    night_load_a: float  # refrigeration or a heater left on (EFIRE-R8)
    leak_ma: float  # normal leakage 0.2–2 mA (§8.6)
    open_h: float
    close_h: float
    key: int


@dataclass(frozen=True)
class ParkingSite:
    """A shared-parking site: resident-priority spaces or a small public lot (§6.1)."""

    id: str
    name: str
    point: LonLat
    kind: str  # residentPriority | publicLot
    capacity: int
    key: int


@dataclass(frozen=True)
class ParkingSpace:
    """One space with a floor IoT sensor at a shared-parking site (Guro 'Parking Friends')."""

    id: str
    site_id: str
    point: LonLat
    resident: bool  # an assignee parks overnight
    shared_uses_per_day: float  # reservations in the 09–18 sharing window (PARK-R2)
    key: int


@dataclass(frozen=True)
class SchoolBus:
    """A daycare bus: depot → children's stops → daycare in the morning, reverse after."""

    id: str
    daycare_id: str
    route: tuple[LonLat, ...]  # depot, stops..., daycare
    stop_dist_m: tuple[float, ...]  # distance along the route of each child's stop
    am_departure_h: float
    pm_departure_h: float
    speed_mps: float
    key: int


@dataclass(frozen=True)
class Child:
    """A child with a location tracker; safe zone = a circle around the daycare (SAFE-R6)."""

    id: str
    bus_id: str
    daycare_id: str
    home: LonLat
    stop_index: int
    daycare: LonLat
    zone_radius_m: float
    key: int


@dataclass(frozen=True)
class SafeReturnWalk:
    """A registered safe-return user walking home from a station every evening (§5, SAFE-R1)."""

    id: str
    origin: str
    route: tuple[LonLat, ...]
    start_h: float  # usual local hour the session starts
    speed_mps: float
    key: int


@dataclass(frozen=True)
class RoadLink:
    """A directional road link with 5-minute speeds, TOPIS style (§6.3, §8.1)."""

    id: str
    link_id: str  # 10-digit link id
    road: str
    functional_class: str
    direction: str  # 상행 / 하행
    points: tuple[LonLat, ...]
    length_m: float
    lanes: int
    start_name: str
    end_name: str
    key: int


@dataclass(frozen=True)
class City:
    """The whole simulated district."""

    seed: int
    scale: float
    reference_date: date
    facilities: tuple[Facility, ...]
    sensors: tuple[StructuralSensor, ...]
    cameras: tuple[Camera, ...]
    homes: tuple[ElderlyHome, ...]
    boards: tuple[ElectricBoard, ...]
    parking_sites: tuple[ParkingSite, ...]
    parking_spaces: tuple[ParkingSpace, ...]
    buses: tuple[SchoolBus, ...]
    children: tuple[Child, ...]
    walks: tuple[SafeReturnWalk, ...]
    links: tuple[RoadLink, ...]

    def facility(self, facility_id: str) -> Facility:
        return next(f for f in self.facilities if f.id == facility_id)
