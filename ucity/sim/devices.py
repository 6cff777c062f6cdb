"""The simulated devices: what each one measures, how it is provisioned, when it reports.

A `SimDevice` couples a city record to the FIWARE IoT Agent JSON conventions: a device id, the
NGSI-LD entity it feeds, short object ids mapped to attribute names and types (with UN/CEFACT
unit codes), static attributes, a pure `read(t)` that returns the measure at t (object id →
value) and a `schedule(t0, t1)` that says when it reports in (t0, t1].
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ucity.sim import geo, signals
from ucity.sim.city import stable_key
from ucity.sim.geo import LonLat
from ucity.sim.model import (
    Child,
    City,
    ElderlyHome,
    ElectricBoard,
    ParkingSpace,
    RoadLink,
    SafeReturnWalk,
    SchoolBus,
    StructuralSensor,
)
from ucity.sim.signals import BOARD, HOME, MOBILITY, PARKING, SHM, TRAFFIC

Reading = dict[str, Any]
Reader = Callable[[float], Reading | None]
Schedule = Callable[[float, float], list[float]]
URN = "urn:ngsi-ld"


@dataclass(frozen=True)
class Attr:
    """An active attribute: the device's short object id, the entity attribute, its type and unit."""

    object_id: str
    name: str
    type: str = "Number"
    unit: str | None = None  # UN/CEFACT common code


@dataclass(frozen=True)
class Profile:
    """A kind of device: its entity type, its service group and its attribute mapping."""

    kind: str
    entity_type: str
    group: str
    interval_s: int  # its reporting period; also the expected interval for device health
    attributes: tuple[Attr, ...]
    expected_interval_s: int | None = None  # when it differs from interval_s (session-based devices)

    @property
    def health_interval_s(self) -> int:
        return self.expected_interval_s or self.interval_s


@dataclass(frozen=True)
class StaticAttr:
    name: str
    type: str
    value: Any


@dataclass(frozen=True)
class SimDevice:
    device_id: str
    entity_id: str
    profile: Profile
    static: tuple[StaticAttr, ...]
    read: Reader = field(compare=False)
    schedule: Schedule = field(compare=False)


BAT = Attr("bat", "batteryLevel", "Number", "C62")
RSSI = Attr("rssi", "rssi", "Number")
TEMP = Attr("t", "temperature", "Number", "CEL")
RH = Attr("h", "relativeHumidity", "Number", "P1")
LOC = Attr("loc", "location", "GeoProperty")

PROFILES: dict[str, Profile] = {p.kind: p for p in (
    Profile("tilt", "StructuralSensor", "shm", SHM.interval_s,
            (Attr("tx", "tiltX", unit="C81"), Attr("ty", "tiltY", unit="C81"), TEMP, RH, BAT, RSSI)),
    Profile("crack", "StructuralSensor", "shm", SHM.interval_s,
            (Attr("cw", "crackOpening", unit="MMT"), TEMP, RH, BAT, RSSI)),
    Profile("vibration", "StructuralSensor", "shm", SHM.interval_s,
            (Attr("ppv", "vibrationPPV", unit="C16"), Attr("f", "dominantFrequency", unit="HTZ"), TEMP, RH, BAT, RSSI)),
    Profile("motion", "CareDevice", "care", HOME.interval_s,
            (Attr("m", "motionCount", "Integer"), TEMP, RH, Attr("l", "illuminance", unit="LUX"), BAT)),
    Profile("door", "CareDevice", "care", HOME.interval_s, (Attr("o", "openCount", "Integer"), BAT)),
    Profile("fridge", "CareDevice", "care", HOME.interval_s, (Attr("o", "openCount", "Integer"), BAT)),
    Profile("fire", "CareDevice", "care", HOME.alarm_interval_s, (Attr("s", "smokeDetected", "Boolean"), TEMP, BAT)),
    Profile("gas", "CareDevice", "care", HOME.alarm_interval_s, (Attr("g", "gasDetected", "Boolean"), BAT)),
    Profile("button", "CareDevice", "care", HOME.alarm_interval_s, (Attr("p", "buttonPressCount", "Integer"), BAT)),
    Profile("gateway", "CareDevice", "care", HOME.interval_s,
            (Attr("st", "connectionState", "Text"), Attr("pwr", "powerSource", "Text"))),
    Profile("board", "ElectricBoard", "efire", BOARD.interval_s,
            (Attr("v", "voltage", unit="VLT"), Attr("i", "current", unit="AMP"), Attr("il", "leakageCurrent", unit="4K"),
             Attr("tb", "temperature", unit="CEL"), Attr("arc", "arcCount", "Integer"),
             Attr("kw", "activePower", unit="KWT"), Attr("kwh", "totalActiveEnergyImport", unit="KWH"))),
    Profile("parking", "ParkingSpot", "parking", PARKING.heartbeat_s, (Attr("st", "status", "Text"), BAT, RSSI)),
    Profile("traffic", "TrafficFlowObserved", "traffic", TRAFFIC.interval_s,
            (Attr("spd", "averageVehicleSpeed", unit="KMH"), Attr("tt", "travelTime", unit="SEC"),
             Attr("vol", "intensity", "Integer"))),
    Profile("bus", "Vehicle", "bus", MOBILITY.bus_interval_s,
            (LOC, Attr("spd", "speed", unit="KMH"), Attr("hd", "heading", unit="DD")),
            MOBILITY.bus_idle_interval_s),
    Profile("child", "ChildTracker", "child", MOBILITY.child_interval_s,
            (LOC, Attr("acc", "locationAccuracy", unit="MTR"), Attr("ob", "onBoard", "Boolean"), BAT)),
    Profile("walk", "SafeReturnWalk", "walk", MOBILITY.walk_interval_s,
            (LOC, Attr("spd", "speed", unit="KMH"), Attr("acc", "locationAccuracy", unit="MTR"),
             Attr("st", "sessionState", "Text")),
            86_400),  # reports only during its daily session (LOC-R1), so a day is its interval
)}


def entity_id(entity_type: str, local_id: str) -> str:
    return f"{URN}:{entity_type}:guro-{local_id}"


def point_geo(point: LonLat) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [round(point[0], 7), round(point[1], 7)]}


def line_geo(points: tuple[LonLat, ...]) -> dict[str, Any]:
    return {"type": "LineString", "coordinates": [[round(x, 7), round(y, 7)] for x, y in points]}


# -- schedules ------------------------------------------------------------------------------------------
def periodic(interval: float, phase: float) -> Schedule:
    """Reports at phase + k·interval: devices do not all report at the same second."""

    def times(t0: float, t1: float) -> list[float]:
        k = int((t0 - phase) // interval) + 1
        out = []
        while (t := phase + k * interval) <= t1:
            out.append(t)
            k += 1
        return out

    return times


def ticks_in(windows: list[tuple[float, float]], step: float, t0: float, t1: float) -> list[float]:
    """Multiples of `step` from each window's start, inside the window and inside (t0, t1]."""
    out: list[float] = []
    for a, b in windows:
        k = max(0, int((t0 - a) // step) + 1)
        while (t := a + k * step) <= min(b, t1):
            if t > t0:
                out.append(t)
            k += 1
    return out


def merged(*schedules: Schedule) -> Schedule:
    def times(t0: float, t1: float) -> list[float]:
        return sorted(set(itertools.chain.from_iterable(s(t0, t1) for s in schedules)))

    return times


def phase_of(key: int, interval: float) -> float:
    return float(key % int(interval))


# -- structural sensors -----------------------------------------------------------------------------------
def shm_device(s: StructuralSensor) -> SimDevice:
    profile = PROFILES[s.kind]
    static: tuple[StaticAttr, ...] = (
        StaticAttr("location", "GeoProperty", point_geo(s.point)),
        StaticAttr("controlledAsset", "Relationship", entity_id("Building", s.facility_id)),
        StaticAttr("controlledProperty", "Array", _controlled(s.kind)),
        StaticAttr("sensorKind", "Text", s.kind),
        StaticAttr("structuralMember", "Text", s.member),
        StaticAttr("network", "Text", "LoRaWAN"),
    )
    zero = {"tilt": {"tiltX": s.offset, "tiltY": s.offset}, "crack": {"crackOpening": s.offset}}.get(s.kind)
    if zero is not None:  # the zero offset as installed (facility safety, QA5 F9): the ladders measure the change
        static += (StaticAttr("installationBaseline", "StructuredValue", zero),)
    return SimDevice(s.id, entity_id("StructuralSensor", s.id), profile, static, shm_reader(s),
                     periodic(profile.interval_s, phase_of(s.key, profile.interval_s)))


def _controlled(kind: str) -> list[str]:
    main = {"tilt": ["tiltX", "tiltY"], "crack": ["crackOpening"], "vibration": ["vibrationPPV", "dominantFrequency"]}
    return [*main[kind], "temperature", "relativeHumidity"]


def shm_reader(s: StructuralSensor) -> Reader:
    def read(t: float) -> Reading:
        out: Reading = {}
        if s.kind == "tilt":
            out["tx"] = round(signals.tilt_rad(s, 0, t), 7)
            out["ty"] = round(signals.tilt_rad(s, 1, t), 7)
        elif s.kind == "crack":
            out["cw"] = round(signals.crack_mm(s, t), 4)
        else:
            ppv, freq = signals.vibration(s, t, SHM.interval_s)
            out["ppv"], out["f"] = round(ppv, 3), round(freq, 2)
        out["t"] = round(signals.structure_temp_c(s, t), 2)
        out["h"] = round(signals.air_rh_pct(t), 1)
        out["bat"] = signals.battery_level(s.battery0, s.key, t, SHM.battery_drain_per_day)
        out["rssi"] = signals.rssi_dbm(s.rssi_dbm, s.key, t)
        return out

    return read


# -- elderly homes -----------------------------------------------------------------------------------------
CARE_KINDS = ("motion", "door", "fridge", "fire", "gas", "button", "gateway")


def care_devices(h: ElderlyHome) -> list[SimDevice]:
    return [care_device(h, kind) for kind in CARE_KINDS]


def care_device(h: ElderlyHome, kind: str) -> SimDevice:
    profile = PROFILES[kind]
    local_id = f"{h.id}-{kind}"
    static = (
        StaticAttr("location", "GeoProperty", point_geo(h.point)),
        StaticAttr("refElderlyHome", "Relationship", entity_id("ElderlyHome", h.id)),
        StaticAttr("deviceKind", "Text", kind),
    )
    key = stable_key(local_id)
    return SimDevice(local_id, entity_id("CareDevice", local_id), profile, static, care_reader(h, kind, key),
                     periodic(profile.interval_s, phase_of(key, profile.interval_s)))


def care_reader(h: ElderlyHome, kind: str, key: int) -> Reader:
    interval = PROFILES[kind].interval_s
    battery0 = 0.6 + 0.4 * signals.unit(key, 99)

    def read(t: float) -> Reading:
        if kind == "gateway":
            return {"st": "online", "pwr": "mains"}
        out: Reading = {}
        if kind == "motion":
            out = {"m": signals.motion_count(h, t, interval), "t": round(signals.indoor_temp_c(h, t), 1),
                   "h": round(signals.indoor_rh_pct(h, t), 1), "l": signals.illuminance_lux(h, t)}
        elif kind == "door":
            out = {"o": signals.door_count(h, t, interval)}
        elif kind == "fridge":
            out = {"o": signals.fridge_count(h, t, interval)}
        elif kind == "fire":
            out = {"s": False, "t": round(signals.indoor_temp_c(h, t), 1)}
        elif kind == "gas":
            out = {"g": False}
        elif kind == "button":
            out = {"p": signals.button_presses(h, t, interval)}
        out["bat"] = signals.battery_level(battery0, key, t, 0.0005)
        return out

    return read


# -- market electric boards --------------------------------------------------------------------------------
def board_device(b: ElectricBoard) -> SimDevice:
    profile = PROFILES["board"]
    static = (
        StaticAttr("location", "GeoProperty", point_geo(b.point)),
        StaticAttr("marketName", "Text", b.market),
        StaticAttr("storeNumber", "Integer", b.store_no),
        StaticAttr("businessType", "Text", b.business_type),
        StaticAttr("breakerRating", "Number", b.breaker_a),
    )
    return SimDevice(b.id, entity_id("ElectricBoard", b.id), profile, static, board_reader(b),
                     periodic(profile.interval_s, phase_of(b.key, profile.interval_s)))


def board_reader(b: ElectricBoard) -> Reader:
    def read(t: float) -> Reading:
        amps = signals.board_current_a(b, t)
        volts = signals.board_voltage_v(b, t, amps=amps)
        return {
            "v": round(volts, 1), "i": round(amps, 2), "il": round(signals.board_leak_ma(b, t), 3),
            "tb": round(signals.board_temp_c(b, t, amps=amps), 1), "arc": signals.board_arcs(b, t, BOARD.interval_s),
            "kw": round(volts * amps * BOARD.power_factor / 1000.0, 3), "kwh": signals.board_energy_kwh(b, t),
        }

    return read


# -- parking -------------------------------------------------------------------------------------------------
def parking_device(p: ParkingSpace, site_entity: str) -> SimDevice:
    profile = PROFILES["parking"]
    static = (
        StaticAttr("location", "GeoProperty", point_geo(p.point)),
        StaticAttr("refParkingSite", "Relationship", site_entity),
        StaticAttr("category", "Array", ["onStreet" if "OnStreet" in site_entity else "offStreet", "shared"]),
        StaticAttr("residentPriority", "Boolean", p.resident),
    )
    battery0 = 0.5 + 0.5 * signals.unit(p.key, 98)

    def read(t: float) -> Reading:
        return {"st": "occupied" if signals.parking_occupied(p, t) else "free",
                "bat": signals.battery_level(battery0, p.key, t, 0.0004),
                "rssi": signals.rssi_dbm(-95.0, p.key, t)}

    def changes(t0: float, t1: float) -> list[float]:
        return signals.parking_changes(p, t0, t1)

    schedule = merged(periodic(profile.interval_s, phase_of(p.key, profile.interval_s)), changes)
    return SimDevice(p.id, entity_id("ParkingSpot", p.id), profile, static, read, schedule)


# -- traffic -------------------------------------------------------------------------------------------------
def traffic_device(link: RoadLink) -> SimDevice:
    profile = PROFILES["traffic"]
    static = (
        StaticAttr("location", "GeoProperty", line_geo(link.points)),
        StaticAttr("refRoadSegment", "Relationship", entity_id("RoadSegment", link.id)),
        StaticAttr("linkId", "Text", link.link_id),
        StaticAttr("laneDirection", "Text", "forward" if link.direction == "상행" else "backward"),
    )

    def read(t: float) -> Reading:
        return {"spd": signals.link_speed_kmh(link, t), "tt": signals.link_travel_time_s(link, t),
                "vol": signals.link_volume(link, t)}

    # TOPIS publishes on the 5-minute grid, so every link reports at the same instants.
    return SimDevice(link.id, entity_id("TrafficFlowObserved", link.id), profile, static, read,
                     periodic(profile.interval_s, 0.0))


# -- buses, children, walks ---------------------------------------------------------------------------------
def bus_device(bus: SchoolBus) -> SimDevice:
    profile = PROFILES["bus"]
    static = (
        StaticAttr("vehicleType", "Text", "bus"),
        StaticAttr("serviceProvided", "Array", ["schoolTransportation"]),
        StaticAttr("refDaycareCenter", "Relationship", entity_id("Building", bus.daycare_id)),
        StaticAttr("vehiclePlateIdentifier", "Text", f"서울70바{1000 + bus.key % 9000}"),
    )

    def read(t: float) -> Reading:
        fix = signals.bus_fix(bus, t)
        return {"loc": point_geo(fix.point), "spd": round(fix.speed_kmh, 1), "hd": round(fix.heading_deg, 1)}

    def in_service(t0: float, t1: float) -> list[float]:
        (am0, am1), (pm0, pm1) = signals.bus_legs(bus, t0)
        windows = [(am0, am1), (pm0, pm1)]
        if signals.local_day(t1) != signals.local_day(t0):
            (a0, a1), (p0, p1) = signals.bus_legs(bus, t1)
            windows += [(a0, a1), (p0, p1)]
        return [t for t in ticks_in(windows, MOBILITY.bus_interval_s, t0, t1) if signals.school_day(t)]

    schedule = merged(periodic(MOBILITY.bus_idle_interval_s, phase_of(bus.key, MOBILITY.bus_idle_interval_s)),
                      in_service)
    return SimDevice(bus.id, entity_id("Vehicle", bus.id), profile, static, read, schedule)


def child_device(child: Child, bus: SchoolBus) -> SimDevice:
    profile = PROFILES["child"]
    static = (
        StaticAttr("refVehicle", "Relationship", entity_id("Vehicle", bus.id)),
        StaticAttr("refDaycareCenter", "Relationship", entity_id("Building", child.daycare_id)),
        StaticAttr("safeZone", "GeoProperty", {"type": "Polygon", "coordinates": [
            geo.circle_polygon(child.daycare, child.zone_radius_m)]}),
        StaticAttr("safeZoneRadius", "Number", child.zone_radius_m),
        StaticAttr("subjectCategory", "Text", "child"),
    )
    battery0 = 0.4 + 0.6 * signals.unit(child.key, 97)

    def read(t: float) -> Reading:
        fix, on_board = signals.child_fix(child, bus, t)
        return {"loc": point_geo(fix.point), "acc": fix.accuracy_m, "ob": on_board,
                "bat": signals.battery_level(battery0, child.key, t, 0.02)}

    return SimDevice(child.id, entity_id("ChildTracker", child.id), profile, static, read,
                     periodic(profile.interval_s, phase_of(child.key, profile.interval_s)))


def walk_device(walk: SafeReturnWalk) -> SimDevice:
    profile = PROFILES["walk"]
    static = (
        StaticAttr("plannedRoute", "GeoProperty", line_geo(walk.route)),
        StaticAttr("destination", "GeoProperty", point_geo(walk.route[-1])),
        StaticAttr("originName", "Text", walk.origin),
    )
    return SimDevice(walk.id, entity_id("SafeReturnWalk", walk.id), profile, static, walk_reader(walk),
                     walk_schedule(walk))


def walk_reader(walk: SafeReturnWalk) -> Reader:
    def read(t: float) -> Reading | None:
        for start, end in signals.walk_sessions_near(walk, t - MOBILITY.walk_interval_s, t):
            if start <= t <= end + MOBILITY.walk_interval_s:
                return walk_reading(walk, t, start, end)
        return None  # no session, no location (Location Information Act, LOC-R1)

    return read


def walk_reading(walk: SafeReturnWalk, t: float, start: float, end: float) -> Reading:
    fix = signals.walk_fix(walk, t, start)
    return {"loc": point_geo(fix.point), "spd": round(fix.speed_kmh, 1), "acc": fix.accuracy_m,
            "st": "walking" if t < end else "arrived"}


def walk_schedule(walk: SafeReturnWalk) -> Schedule:
    def times(t0: float, t1: float) -> list[float]:
        sessions = [(a, b + MOBILITY.walk_interval_s) for a, b in signals.walk_sessions_near(walk, t0, t1)]
        return ticks_in(sessions, MOBILITY.walk_interval_s, t0, t1)

    return times


# -- the whole city ------------------------------------------------------------------------------------------
def site_entity_id(kind: str, site_id: str) -> str:
    return entity_id("OffStreetParking" if kind == "publicLot" else "OnStreetParking", site_id)


def city_devices(city: City) -> list[SimDevice]:
    """Every device of the city, in a stable order."""
    sites = {s.id: site_entity_id(s.kind, s.id) for s in city.parking_sites}
    buses = {b.id: b for b in city.buses}
    out: list[SimDevice] = [shm_device(s) for s in city.sensors]
    out += [d for h in city.homes for d in care_devices(h)]
    out += [board_device(b) for b in city.boards]
    out += [parking_device(p, sites[p.site_id]) for p in city.parking_spaces]
    out += [traffic_device(link) for link in city.links]
    out += [bus_device(b) for b in city.buses]
    out += [child_device(c, buses[c.bus_id]) for c in city.children]
    out += [walk_device(w) for w in city.walks]
    return out
