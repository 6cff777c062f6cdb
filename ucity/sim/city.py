"""A seeded, deterministic Guro-gu-like district: what exists, where, with which parameters.

`build_city(CityConfig(seed=..., scale=...))` returns the same `City` for the same configuration,
on any machine: every part draws from its own `random.Random` stream named after the seed and the
part, so changing the number of cameras does not move the elderly homes. The numbers are
configuration (dataclass defaults) and cite the domain-rules IDs they come from; [D] marks an
engineering default, not an official Korean value.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TypeVar

from ucity.sim import geo
from ucity.sim.geo import GURO_DONGS, GURO_MARKETS, GURO_ROADS, GURO_STATIONS, LonLat
from ucity.sim.model import (
    Camera,
    Child,
    City,
    ElderlyHome,
    ElectricBoard,
    Facility,
    ParkingSite,
    ParkingSpace,
    RoadLink,
    SafeReturnWalk,
    SchoolBus,
    StructuralSensor,
)

T = TypeVar("T")
GRADES = ("A", "B", "C", "D", "E")


# -- configuration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class FacilityClass:
    """One class of monitored facility; counts follow Guro's 2021 system (§2.1)."""

    key: str
    label_ko: str
    category: str  # Smart Data Models Building category
    owner: str
    count: int
    years: tuple[int, int]
    grade_weights: tuple[float, float, float, float, float]  # A..E
    floors: tuple[int, int]
    sensor_weights: tuple[float, float, float]  # tilt, crack, vibration
    vib_median_mm_s: float  # background PPV, well under SHM-R3's 1 mm/s interest level
    vib_freq_hz: tuple[float, float]
    dongs: tuple[str, ...] = ()  # where they cluster; empty = anywhere


# 77 public facilities (footbridges, retaining walls, schools, daycare centres, rain pump stations,
# community centres) and 62 private aging buildings: Guro 2021, 139 facilities (§2.1, [V]).
# The split between the public classes, years and grade mixes are [D].
HILL_DONGS = ("고척1동", "고척2동", "개봉2동", "개봉3동", "오류1동", "오류2동", "수궁동", "항동")
DEFAULT_FACILITY_CLASSES: tuple[FacilityClass, ...] = (
    FacilityClass("footbridge", "육교", "bridge", "public", 12, (1982, 2002), (0.05, 0.45, 0.4, 0.1, 0.0),
                  (1, 1), (0.45, 0.15, 0.4), 0.25, (1.6, 3.0)),
    FacilityClass("retainingWall", "옹벽", "civic", "public", 22, (1978, 2000), (0.0, 0.35, 0.45, 0.18, 0.02),
                  (1, 1), (0.6, 0.35, 0.05), 0.05, (12.0, 30.0), HILL_DONGS),
    FacilityClass("school", "학교", "school", "public", 15, (1975, 1998), (0.1, 0.5, 0.35, 0.05, 0.0),
                  (3, 5), (0.4, 0.4, 0.2), 0.08, (6.0, 15.0)),
    FacilityClass("daycareCenter", "어린이집", "kindergarten", "public", 18, (1988, 2005), (0.15, 0.55, 0.3, 0.0, 0.0),
                  (1, 3), (0.45, 0.45, 0.1), 0.06, (8.0, 20.0)),
    FacilityClass("pumpStation", "빗물펌프장", "service", "public", 5, (1980, 1996), (0.0, 0.4, 0.5, 0.1, 0.0),
                  (1, 2), (0.3, 0.3, 0.4), 0.4, (20.0, 50.0), ("신도림동", "구로5동", "구로3동", "구로4동")),
    FacilityClass("communityCenter", "주민센터", "civic", "public", 5, (1985, 2000), (0.1, 0.6, 0.3, 0.0, 0.0),
                  (2, 4), (0.4, 0.4, 0.2), 0.07, (6.0, 15.0)),
    FacilityClass("agingApartment", "노후 공동주택", "apartments", "private", 40, (1980, 2003),
                  (0.0, 0.2, 0.5, 0.25, 0.05), (4, 15), (0.45, 0.4, 0.15), 0.1, (2.0, 8.0)),
    FacilityClass("agingBuilding", "노후 건축물", "residential", "private", 22, (1970, 1995),
                  (0.0, 0.1, 0.5, 0.32, 0.08), (2, 5), (0.45, 0.45, 0.1), 0.12, (5.0, 15.0)),
)


@dataclass(frozen=True)
class FacilityConfig:
    classes: tuple[FacilityClass, ...] = DEFAULT_FACILITY_CLASSES
    public_sensors: int = 265  # Guro 2021: 265 sensors at the public facilities (§2.1, [V])
    private_sensors: int = 335  # and 335 at the private aging buildings (§2.1, [V])
    # Tilt follows temperature: daily ±0.05 mrad for a ±4 °C day, ±0.2 mrad annual (§8.6 [D]).
    tilt_coef_rad_per_c: tuple[float, float] = (0.8e-5, 1.6e-5)
    tilt_noise_rad: float = 1.0e-5  # 0.01 mrad (§8.6 [D])
    # crack = a + b·T (§2.3, SHM-R7); cracks open as concrete contracts in the cold, so b < 0 [D].
    # A healthy crack stays below the first SHM-R2 step (0.1 mm) and its clearing edge (0.08 mm) all year:
    # a sensor installed at 22 °C sees about −9 °C on the coldest night (ΔT ≈ 31 °C), so
    # a + |b|·31 + noise ≤ 0.02 + 0.056 + 0.004 mm (a year of seeds 1, 7, 42: at most 0.072 mm).
    # Wider ranges (b to −0.006, a to 0.04) opened a fresh demo on winter mornings with false 관심 alarms.
    crack_coef_mm_per_c: tuple[float, float] = (-0.0018, -0.0008)
    crack_offset_mm: tuple[float, float] = (0.0, 0.02)
    crack_noise_mm: float = 0.001  # the daily ±4.5 °C swing (≥ ±0.0036 mm) stays well above it: SHM-R7 can fit
    install_temp_c: tuple[float, float] = (5.0, 22.0)
    # Periodic safety inspection: at least once per half-year for A–C, 3 times a year for D/E (§2.2, [V]).
    inspection_days_a_to_c: int = 182
    inspection_days_d_e: int = 122
    overdue_fraction: float = 0.05  # some facilities are a little past their due date [D]


@dataclass(frozen=True)
class CameraConfig:
    count: int = 4100  # ~4,100 CCTVs linked to Guro's centre (§1.2; figure not re-verified)
    per_site_weights: tuple[float, float, float, float] = (0.35, 0.30, 0.20, 0.15)  # 카메라대수 1..4 [D]
    # 설치목적구분 → Smart Data Models cameraUsage, with shares [D].
    purposes: tuple[tuple[str, str, float], ...] = (
        ("생활방범", "SURVEILLANCE", 0.60), ("어린이보호", "SURVEILLANCE", 0.14), ("차량방범", "ANPR/LPR", 0.06),
        ("교통단속", "RLVD", 0.05), ("교통정보수집", "TRAFFIC", 0.03), ("쓰레기단속", "SURVEILLANCE", 0.06),
        ("재난재해", "SURVEILLANCE", 0.03), ("시설물관리", "SURVEILLANCE", 0.03),
    )
    types: tuple[tuple[str, float, float], ...] = (  # cameraType, share, horizontal field of view °
        ("PTZ", 0.25, 60.0), ("FIXED", 0.35, 90.0), ("BULLET", 0.2, 70.0), ("DOME", 0.15, 100.0),
        ("DAY/NIGHT", 0.05, 85.0),
    )
    retention_days: tuple[tuple[int, float], ...] = ((30, 0.85), (14, 0.05), (60, 0.05), (90, 0.05))
    pixels_10k: tuple[tuple[int, float], ...] = ((200, 0.55), (41, 0.1), (130, 0.1), (300, 0.1), (400, 0.15))
    install_years: tuple[int, int] = (2010, 2025)
    district_agency: str = "서울특별시 구로구청"
    district_phone: str = "02-860-2114"
    police_agency: str = "서울특별시경찰청"
    police_phone: str = "02-700-5000"
    stream_base: str = "rtsp://vms.guro.example/live"


@dataclass(frozen=True)
class HomeConfig:
    count: int = 350  # homes of elderly people living alone [D]
    age: tuple[int, int] = (65, 95)  # 65+ living alone (§3.1)
    priority_fraction: float = 0.3  # priority recipients (ELD-R8) [D]
    wake_h: tuple[float, float] = (5.0, 7.5)  # sleep 23–06 profile (§8.6 [D])
    sleep_h: tuple[float, float] = (21.0, 23.5)
    outings_per_day: tuple[float, float] = (1.0, 3.0)  # door events 1–3/day outings (§8.6)
    fridge_per_day: tuple[float, float] = (4.0, 10.0)
    activity_per_h: tuple[float, float] = (6.0, 20.0)


@dataclass(frozen=True)
class BusinessType:
    name: str
    day_load_a: tuple[float, float]
    night_load_a: tuple[float, float]
    hours: tuple[float, float]  # opening hours, local


# Load profiles by business type (open 07–21 typical, §8.6 [D]).
BUSINESS_TYPES: tuple[BusinessType, ...] = (
    BusinessType("음식점", (8.0, 18.0), (0.3, 1.0), (9.0, 22.0)),
    BusinessType("정육점", (6.0, 12.0), (3.0, 6.0), (8.0, 21.0)),
    BusinessType("수산물", (5.0, 10.0), (2.0, 5.0), (7.0, 20.0)),
    BusinessType("청과", (2.0, 5.0), (0.2, 0.6), (7.0, 21.0)),
    BusinessType("반찬", (5.0, 10.0), (1.5, 3.0), (8.0, 20.0)),
    BusinessType("의류", (2.0, 4.0), (0.1, 0.3), (10.0, 21.0)),
    BusinessType("잡화", (1.5, 3.5), (0.1, 0.3), (9.0, 21.0)),
    BusinessType("공구", (3.0, 8.0), (0.2, 0.5), (8.0, 19.0)),
    BusinessType("전자", (4.0, 9.0), (0.5, 1.5), (10.0, 21.0)),
)
MARKET_MIX: dict[str, dict[str, float]] = {
    "traditional": {"음식점": 0.25, "정육점": 0.1, "수산물": 0.1, "청과": 0.15, "반찬": 0.15, "의류": 0.1, "잡화": 0.15},
    "tools": {"공구": 0.85, "음식점": 0.05, "잡화": 0.1},
    "electronics": {"전자": 0.8, "음식점": 0.1, "잡화": 0.1},
}


@dataclass(frozen=True)
class BoardConfig:
    count: int = 3000  # ~3,000 sensors as in Daejeon's market service (§4.1, [V])
    breakers_a: tuple[float, ...] = (20.0, 30.0, 40.0)
    leak_ma: tuple[float, float] = (0.2, 2.0)  # normal leakage 0.2–2 mA (§8.6 [D])
    heater_left_on_fraction: float = 0.05  # night base load > 30 % of day (EFIRE-R8) [D]


@dataclass(frozen=True)
class ParkingConfig:
    sites: int = 25  # Guro: 383 spaces at 25 sites (§6.1, [V])
    spaces: int = 400
    public_lot_fraction: float = 0.2
    resident_fraction: float = 0.8
    shared_uses_per_day: tuple[float, float] = (0.5, 3.0)


@dataclass(frozen=True)
class MobilityConfig:
    children_per_bus: int = 12
    home_radius_m: float = 1200.0
    bus_speed_mps: float = 5.0  # 18 km/h in alleys [D]
    am_departure_h: tuple[float, float] = (8.2, 8.6)
    pm_departure_h: tuple[float, float] = (16.0, 16.5)
    zone_radius_m: float = 100.0  # circular safe zone r = 100 m around home/daycare/school (SAFE-R6 [D])
    walks: int = 40
    walk_start_h: tuple[float, float] = (21.0, 23.5)
    walk_speed_mps: tuple[float, float] = (1.2, 1.4)  # walk 1.2–1.4 m/s (§8.6)
    walk_length_m: tuple[float, float] = (500.0, 1400.0)


@dataclass(frozen=True)
class TrafficConfig:
    link_length_m: float = 400.0


@dataclass(frozen=True)
class CityConfig:
    """Everything that decides the city; the same config always builds the same city."""

    seed: int = 7
    scale: float = 1.0
    reference_date: date = date(2026, 11, 1)  # "today" for inspection dates
    facilities: FacilityConfig = field(default_factory=FacilityConfig)
    cameras: CameraConfig = field(default_factory=CameraConfig)
    homes: HomeConfig = field(default_factory=HomeConfig)
    boards: BoardConfig = field(default_factory=BoardConfig)
    parking: ParkingConfig = field(default_factory=ParkingConfig)
    mobility: MobilityConfig = field(default_factory=MobilityConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)


# -- helpers -----------------------------------------------------------------------------------
def stable_key(text: str) -> int:
    """A 63-bit integer from a string, identical on every machine and run (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def scaled(count: int, scale: float) -> int:
    return max(1, round(count * scale))


def pick(rng: random.Random, items: Sequence[T], weights: Sequence[float]) -> T:
    return rng.choices(items, weights=weights)[0]


def stream(seed: int, part: str) -> random.Random:
    """An independent random stream for one part of the city."""
    return random.Random(f"ucity-sim:{seed}:{part}")


def dong_base(name: str) -> str:
    """구로1동 → 구로동: the legal dong used in lot-number addresses."""
    return name.rstrip("동").rstrip("0123456789") + "동"


def dong_named(name: str) -> geo.Dong:
    return next(d for d in GURO_DONGS if d.name == name)


def nearest_dong(point: LonLat) -> str:
    return min(GURO_DONGS, key=lambda d: geo.distance_m(d.center, point)).name


def rounded(point: LonLat) -> LonLat:
    return (round(point[0], 7), round(point[1], 7))


# -- facilities and their sensors --------------------------------------------------------------
def build_facilities(cfg: CityConfig) -> tuple[Facility, ...]:
    rng = stream(cfg.seed, "facilities")
    out: list[Facility] = []
    for cls in cfg.facilities.classes:
        for n in range(scaled(cls.count, cfg.scale)):
            out.append(_facility(rng, cfg, cls, len(out) + 1, n + 1))
    return tuple(out)


def _facility(rng: random.Random, cfg: CityConfig, cls: FacilityClass, seq: int, n: int) -> Facility:
    dongs = [dong_named(d) for d in cls.dongs] if cls.dongs else list(GURO_DONGS)
    point = _facility_point(rng, cls, rng.choice(dongs))
    dong = dong_named(nearest_dong(point))  # the name follows where it is (footbridges sit on roads)
    grade = pick(rng, GRADES, cls.grade_weights)
    interval = cfg.facilities.inspection_days_d_e if grade in "DE" else cfg.facilities.inspection_days_a_to_c
    overdue = rng.random() < cfg.facilities.overdue_fraction
    age_days = rng.uniform(interval, interval * 1.3) if overdue else rng.uniform(5, interval * 0.95)
    return Facility(
        id=f"fac-{seq:03d}", name=f"{dong.name} {cls.label_ko} {n}", facility_class=cls.key,
        category=cls.category, owner=cls.owner, dong=dong.name, point=rounded(point),
        year_built=rng.randint(*cls.years), grade=grade,
        last_inspection=cfg.reference_date - timedelta(days=int(age_days)),
        inspection_interval_days=interval, floors=rng.randint(*cls.floors),
    )


def _facility_point(rng: random.Random, cls: FacilityClass, dong: geo.Dong) -> LonLat:
    if cls.key == "footbridge":  # footbridges cross the main roads
        road = rng.choice(GURO_ROADS)
        return geo.point_along(road.points, rng.uniform(0.1, 0.9) * geo.polyline_length_m(road.points))
    return geo.scatter(rng, dong.center, dong.spread_m)


def build_sensors(cfg: CityConfig, facilities: Sequence[Facility]) -> tuple[StructuralSensor, ...]:
    rng = stream(cfg.seed, "sensors")
    classes = {c.key: c for c in cfg.facilities.classes}
    counts = _sensor_counts(rng, cfg, facilities)
    out: list[StructuralSensor] = []
    for facility, count in zip(facilities, counts, strict=True):
        cls = classes[facility.facility_class]
        for i in range(count):
            kind = _sensor_kind(rng, cls, i)
            out.append(_sensor(rng, cfg.facilities, cls, facility, kind, f"shm-{len(out) + 1:04d}"))
    return tuple(out)


def _sensor_counts(rng: random.Random, cfg: CityConfig, facilities: Sequence[Facility]) -> list[int]:
    """Spread the public and private sensor totals over the facilities, at least 2 each."""
    totals = {"public": scaled(cfg.facilities.public_sensors, cfg.scale),
              "private": scaled(cfg.facilities.private_sensors, cfg.scale)}
    counts = [0] * len(facilities)
    for owner, total in totals.items():
        idx = [i for i, f in enumerate(facilities) if f.owner == owner]
        if not idx:
            continue
        base = max(1, min(2, total // len(idx)))
        for i in idx:
            counts[i] = base
        for _ in range(max(0, total - base * len(idx))):
            counts[rng.choice(idx)] += 1
    return counts


def _sensor_kind(rng: random.Random, cls: FacilityClass, index: int) -> str:
    if index == 0:
        return "tilt"  # every facility has a tilt sensor: the main precursor (§2.1 Gwanak: tilt + crack)
    if index == 1:
        return "crack" if cls.sensor_weights[1] >= cls.sensor_weights[2] else "vibration"
    return pick(rng, ("tilt", "crack", "vibration"), cls.sensor_weights)


def _sensor(rng: random.Random, fc: FacilityConfig, cls: FacilityClass, facility: Facility, kind: str,
            sensor_id: str) -> StructuralSensor:
    if kind == "crack":
        coef, offset, noise = rng.uniform(*fc.crack_coef_mm_per_c), rng.uniform(*fc.crack_offset_mm), fc.crack_noise_mm
    else:
        coef, offset, noise = rng.uniform(*fc.tilt_coef_rad_per_c), 0.0, fc.tilt_noise_rad
    return StructuralSensor(
        id=sensor_id, facility_id=facility.id, kind=kind, member="main" if rng.random() < 0.6 else "auxiliary",
        point=rounded(geo.offset(facility.point, rng.uniform(-15, 15), rng.uniform(-15, 15))),
        thermal_coef=coef, offset=offset, ref_temp_c=rng.uniform(*fc.install_temp_c), noise=noise,
        vib_median_mm_s=cls.vib_median_mm_s * rng.uniform(0.7, 1.3), vib_freq_hz=rng.uniform(*cls.vib_freq_hz),
        battery0=rng.uniform(0.55, 1.0), rssi_dbm=rng.uniform(-115.0, -75.0), key=stable_key(sensor_id),
    )


# -- CCTV ------------------------------------------------------------------------------------------
STREETS = ("경인로", "구로중앙로", "디지털로", "고척로", "오리로", "개봉로", "새말로", "도림로", "가마산로", "구일로",
           "공원로", "부일로", "벚꽃로", "중앙로", "남부순환로", "서해안로", "궁동로", "항동로", "천왕로", "신도림로")
COMPASS_KO = ("북", "북동", "동", "남동", "남", "남서", "서", "북서")


def build_cameras(cfg: CityConfig, facilities: Sequence[Facility]) -> tuple[Camera, ...]:
    rng = stream(cfg.seed, "cameras")
    cc = cfg.cameras
    target = scaled(cc.count, cfg.scale)
    out: list[Camera] = []
    site = 0
    while len(out) < target:
        site += 1
        per_site = min(target - len(out), pick(rng, (1, 2, 3, 4), cc.per_site_weights))
        out.extend(_camera_site(rng, cc, facilities, f"cctv-site-{site:04d}", per_site, len(out)))
    return tuple(out)


def _camera_site(rng: random.Random, cc: CameraConfig, facilities: Sequence[Facility], site_id: str, count: int,
                 first: int) -> list[Camera]:
    purpose, usage, _ = pick(rng, cc.purposes, [p[2] for p in cc.purposes])
    point = rounded(_camera_point(rng, purpose, facilities))
    dong = nearest_dong(point)
    traffic = purpose in ("교통단속", "교통정보수집")
    agency, phone = (cc.police_agency, cc.police_phone) if traffic else (cc.district_agency, cc.district_phone)
    road = f"서울특별시 구로구 {rng.choice(STREETS)} {rng.randint(1, 300)}"
    lot = f"서울특별시 구로구 {dong_base(dong)} {rng.randint(1, 999)}-{rng.randint(1, 60)}"
    installed = f"{rng.randint(*cc.install_years)}-{rng.randint(1, 12):02d}"
    retention = pick(rng, [r[0] for r in cc.retention_days], [r[1] for r in cc.retention_days])
    heading0 = rng.uniform(0, 360)
    cams: list[Camera] = []
    for i in range(count):
        ctype, _, fov = pick(rng, cc.types, [t[1] for t in cc.types])
        heading = (heading0 + i * 360.0 / count) % 360.0
        direction = "360도 전방향" if ctype == "PTZ" else f"{COMPASS_KO[round(heading / 45) % 8]}측 방면"
        cam_id = f"cctv-{first + i + 1:05d}"
        cams.append(Camera(
            id=cam_id, site_id=site_id, point=point, camera_type=ctype, purpose_ko=purpose, usage=usage,
            heading_deg=round(heading, 1), fov_deg=fov, direction_ko=direction,
            pixels_10k=pick(rng, [p[0] for p in cc.pixels_10k], [p[1] for p in cc.pixels_10k]),
            retention_days=retention, installed=installed, agency=agency, agency_phone=phone, dong=dong,
            road_address=road, lot_address=lot, stream_url=f"{cc.stream_base}/{cam_id}",
        ))
    return cams


def _camera_point(rng: random.Random, purpose: str, facilities: Sequence[Facility]) -> LonLat:
    """Traffic cameras on main roads, child-protection cameras at schools, the rest in alleys."""
    near = {"어린이보호": ("school", "daycareCenter"), "재난재해": ("pumpStation", "retainingWall"),
            "시설물관리": ("footbridge", "retainingWall", "pumpStation", "communityCenter")}
    if purpose in ("교통단속", "교통정보수집"):
        road = rng.choice(GURO_ROADS)
        return geo.point_along(road.points, rng.uniform(0, 1) * geo.polyline_length_m(road.points))
    candidates = [f for f in facilities if f.facility_class in near.get(purpose, ())]
    if candidates:
        return geo.scatter(rng, rng.choice(candidates).point, 120.0)
    dong = rng.choice(GURO_DONGS)
    return geo.scatter(rng, dong.center, dong.spread_m)


# -- elderly homes ------------------------------------------------------------------------------
def build_homes(cfg: CityConfig) -> tuple[ElderlyHome, ...]:
    rng = stream(cfg.seed, "homes")
    hc = cfg.homes
    out: list[ElderlyHome] = []
    for n in range(scaled(hc.count, cfg.scale)):
        dong = rng.choice(GURO_DONGS)
        home_id = f"home-{n + 1:03d}"
        out.append(ElderlyHome(
            id=home_id, point=rounded(geo.scatter(rng, dong.center, dong.spread_m)), dong=dong.name,
            age=rng.randint(*hc.age), priority=rng.random() < hc.priority_fraction,
            wake_h=rng.uniform(*hc.wake_h), sleep_h=rng.uniform(*hc.sleep_h),
            outings_per_day=rng.uniform(*hc.outings_per_day), fridge_per_day=rng.uniform(*hc.fridge_per_day),
            activity_per_h=rng.uniform(*hc.activity_per_h), key=stable_key(home_id),
        ))
    return tuple(out)


# -- market electric boards ---------------------------------------------------------------------
def build_boards(cfg: CityConfig) -> tuple[ElectricBoard, ...]:
    rng = stream(cfg.seed, "boards")
    bc = cfg.boards
    target = scaled(bc.count, cfg.scale)
    total_stores = sum(m.stores for m in GURO_MARKETS)
    types = {b.name: b for b in BUSINESS_TYPES}
    out: list[ElectricBoard] = []
    for market in GURO_MARKETS:
        share = round(target * market.stores / total_stores) if market is not GURO_MARKETS[-1] else target - len(out)
        mix = MARKET_MIX[market.kind]
        for store in range(max(0, share)):
            btype = types[pick(rng, list(mix), list(mix.values()))]
            out.append(_board(rng, bc, market, btype, store + 1, f"board-{len(out) + 1:04d}"))
    return tuple(out)


def _board(rng: random.Random, bc: BoardConfig, market: geo.Market, btype: BusinessType, store_no: int,
           board_id: str) -> ElectricBoard:
    breaker = rng.choice(bc.breakers_a)
    day = min(rng.uniform(*btype.day_load_a), 0.6 * breaker)
    night = rng.uniform(*btype.night_load_a)
    if rng.random() < bc.heater_left_on_fraction:
        night = max(night, 0.45 * day)  # a heater or a stove left on overnight (EFIRE-R8)
    return ElectricBoard(
        id=board_id, market=market.name, store_no=store_no, business_type=btype.name,
        point=rounded(geo.in_disc(rng, market.point, market.radius_m)), breaker_a=breaker, day_load_a=day,
        night_load_a=night, leak_ma=rng.uniform(*bc.leak_ma), open_h=btype.hours[0] + rng.uniform(-0.5, 0.5),
        close_h=btype.hours[1] + rng.uniform(-0.5, 0.5), key=stable_key(board_id),
    )


# -- shared parking --------------------------------------------------------------------------------
def build_parking(cfg: CityConfig) -> tuple[tuple[ParkingSite, ...], tuple[ParkingSpace, ...]]:
    rng = stream(cfg.seed, "parking")
    pc = cfg.parking
    n_sites, n_spaces = scaled(pc.sites, cfg.scale), scaled(pc.spaces, cfg.scale)
    sites: list[ParkingSite] = []
    for n in range(n_sites):
        dong = rng.choice(GURO_DONGS)
        lot = n < round(n_sites * pc.public_lot_fraction)
        site_id = f"park-{n + 1:02d}"
        base = n_spaces // n_sites + (1 if n < n_spaces % n_sites else 0)
        sites.append(ParkingSite(
            id=site_id, name=f"{dong.name} {'공영주차장' if lot else '거주자우선주차 공유구역'} {n + 1}",
            point=rounded(geo.scatter(rng, dong.center, dong.spread_m)),
            kind="publicLot" if lot else "residentPriority", capacity=base, key=stable_key(site_id),
        ))
    spaces: list[ParkingSpace] = []
    for site in sites:
        for _ in range(site.capacity):
            space_id = f"space-{len(spaces) + 1:03d}"
            spaces.append(ParkingSpace(
                id=space_id, site_id=site.id, point=rounded(geo.in_disc(rng, site.point, 40.0)),
                resident=site.kind == "residentPriority" and rng.random() < pc.resident_fraction,
                shared_uses_per_day=rng.uniform(*pc.shared_uses_per_day), key=stable_key(space_id),
            ))
    return tuple(sites), tuple(spaces)


# -- daycare buses, children, safe-return walks -------------------------------------------------
def build_buses(cfg: CityConfig, facilities: Sequence[Facility]) -> tuple[tuple[SchoolBus, ...], tuple[Child, ...]]:
    rng = stream(cfg.seed, "buses")
    mc = cfg.mobility
    buses: list[SchoolBus] = []
    children: list[Child] = []
    for daycare in (f for f in facilities if f.facility_class == "daycareCenter"):
        bus_id = f"bus-{len(buses) + 1:02d}"
        homes = sorted((geo.scatter(rng, daycare.point, mc.home_radius_m / 2) for _ in range(mc.children_per_bus)),
                       key=lambda p: -geo.distance_m(p, daycare.point))
        depot = geo.scatter(rng, daycare.point, 300.0)
        route = (rounded(depot), *(rounded(h) for h in homes), daycare.point)
        stops = tuple(geo.polyline_length_m(route[: i + 2]) for i in range(len(homes)))
        buses.append(SchoolBus(
            id=bus_id, daycare_id=daycare.id, route=route, stop_dist_m=stops,
            am_departure_h=rng.uniform(*mc.am_departure_h), pm_departure_h=rng.uniform(*mc.pm_departure_h),
            speed_mps=mc.bus_speed_mps, key=stable_key(bus_id),
        ))
        for i, home in enumerate(homes):
            child_id = f"child-{len(children) + 1:03d}"
            children.append(Child(id=child_id, bus_id=bus_id, daycare_id=daycare.id, home=rounded(home),
                                  stop_index=i, daycare=daycare.point, zone_radius_m=mc.zone_radius_m,
                                  key=stable_key(child_id)))
    return tuple(buses), tuple(children)


def build_walks(cfg: CityConfig) -> tuple[SafeReturnWalk, ...]:
    rng = stream(cfg.seed, "walks")
    mc = cfg.mobility
    out: list[SafeReturnWalk] = []
    for n in range(scaled(mc.walks, cfg.scale)):
        station = rng.choice(GURO_STATIONS)
        walk_id = f"walk-{n + 1:02d}"
        out.append(SafeReturnWalk(
            id=walk_id, origin=station.name, route=_walk_route(rng, station.point, rng.uniform(*mc.walk_length_m)),
            start_h=rng.uniform(*mc.walk_start_h), speed_mps=rng.uniform(*mc.walk_speed_mps), key=stable_key(walk_id),
        ))
    return tuple(out)


def _walk_route(rng: random.Random, start: LonLat, length_m: float) -> tuple[LonLat, ...]:
    """An L-shaped path through the street grid, the planned shortest walking path (SAFE-R2)."""
    for _ in range(16):
        a = rng.uniform(0, 2 * math.pi)
        east, north = length_m * math.cos(a) * 0.7, length_m * math.sin(a) * 0.7
        corner = geo.offset(start, east, 0.0) if rng.random() < 0.5 else geo.offset(start, 0.0, north)
        end = geo.offset(start, east, north)
        if geo.GURO_BBOX.contains(corner) and geo.GURO_BBOX.contains(end):
            return (rounded(start), rounded(corner), rounded(end))
    return (rounded(start), rounded(geo.offset(start, 0.0, -300.0)))


# -- road links ---------------------------------------------------------------------------------------
def build_links(cfg: CityConfig) -> tuple[RoadLink, ...]:
    out: list[RoadLink] = []
    for r, road in enumerate(GURO_ROADS):
        pieces = geo.split_polyline(road.points, cfg.traffic.link_length_m)
        for s, piece in enumerate(pieces):
            for d, (direction, pts) in enumerate((("상행", piece), ("하행", tuple(reversed(piece))))):
                link_id = f"117{r + 1:02d}{s + 1:03d}{d + 1}0"
                out.append(RoadLink(
                    id=f"link-{link_id}", link_id=link_id, road=road.name, functional_class=road.functional_class,
                    direction=direction, points=tuple(rounded(p) for p in pts), length_m=round(geo.polyline_length_m(pts), 1),
                    lanes=road.lanes, start_name=f"{road.name} {s + 1 if d == 0 else s + 2}",
                    end_name=f"{road.name} {s + 2 if d == 0 else s + 1}", key=stable_key(link_id),
                ))
    keep = scaled(len(out), min(cfg.scale, 1.0))
    return tuple(out[:keep])


# -- the city ------------------------------------------------------------------------------------------
def build_city(cfg: CityConfig | None = None) -> City:
    """The district for a configuration; pure and deterministic."""
    cfg = cfg or CityConfig()
    facilities = build_facilities(cfg)
    sites, spaces = build_parking(cfg)
    buses, children = build_buses(cfg, facilities)
    return City(
        seed=cfg.seed, scale=cfg.scale, reference_date=cfg.reference_date, facilities=facilities,
        sensors=build_sensors(cfg, facilities), cameras=build_cameras(cfg, facilities), homes=build_homes(cfg),
        boards=build_boards(cfg), parking_sites=sites, parking_spaces=spaces, buses=buses, children=children,
        walks=build_walks(cfg), links=build_links(cfg),
    )
