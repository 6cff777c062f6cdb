"""Switchable incidents: each scenario picks its target in the city (by seed) and changes the
readings of that target's devices from its start time on; before the start nothing changes.

A scenario is bound to a city and a start instant; the binding returns replacement devices whose
`read` and `schedule` are still pure functions of t. Rates are configuration, chosen so that the
domain ladders (SHM-R1/R2, ELD-R3, EFIRE-R2, SAFE-R2/R4/R6, SHM-R6) are crossed one after another.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ucity.sim import geo, signals
from ucity.sim.devices import Reader, Reading, Schedule, SimDevice, merged, ticks_in, walk_reading
from ucity.sim.model import City, SafeReturnWalk

Devices = dict[str, SimDevice]


@dataclass(frozen=True)
class Binding:
    """A scenario applied to a city: what it targets, from when, and the devices it replaces."""

    scenario: str
    target: str
    start: float
    devices: Devices


class Scenario(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def start_after_s(self) -> float: ...

    def bind(self, city: City, devices: Devices, start: float) -> Binding: ...


def chooser(city: City, name: str) -> random.Random:
    return random.Random(f"ucity-sim-scenario:{city.seed}:{name}")


def after(start: float, base: Reader, change: Callable[[float, Reading], Reading | None]) -> Reader:
    """A reader equal to `base` before `start` and changed by `change` from `start` on."""

    def read(t: float) -> Reading | None:
        reading = base(t)
        if t < start or reading is None:
            return reading
        return change(t, dict(reading))

    return read


def hours_since(start: float, t: float) -> float:
    return max(0.0, t - start) / 3600.0


# -- a retaining wall starts to tilt (SHM-R1, SHM-R2) ---------------------------------------------------
@dataclass(frozen=True)
class WallTilt:
    """Creep on a retaining wall: tilt grows linearly; its cracks open with it.

    At 4 mrad/h the change crosses 1/750 (관심) after 20 min, 1/500 (주의) 30 min, 1/300 (경계)
    50 min and 1/150 (심각) 100 min (SHM-R1); cracks cross 0.1/0.3/0.5/1.0 mm (SHM-R2).
    """

    name: str = "wall-tilt"
    description: str = "a retaining wall starts to tilt (SHM-R1/R2)"
    start_after_s: float = 60.0
    tilt_rate_rad_per_h: float = 0.004
    crack_rate_mm_per_h: float = 0.3

    def bind(self, city: City, devices: Devices, start: float) -> Binding:
        walls = [f for f in city.facilities if f.facility_class == "retainingWall"] or list(city.facilities)
        wall = chooser(city, self.name).choice(walls)
        out: Devices = {}
        for s in (s for s in city.sensors if s.facility_id == wall.id and s.kind in ("tilt", "crack")):
            dev = devices[s.id]
            out[s.id] = dataclasses.replace(dev, read=after(start, dev.read, self._change(s.kind, start)))
        return Binding(self.name, f"{wall.name} ({wall.id}, sensors {', '.join(sorted(out))})", start, out)

    def _change(self, kind: str, start: float) -> Callable[[float, Reading], Reading]:
        def change(t: float, r: Reading) -> Reading:
            h = hours_since(start, t)
            if kind == "tilt":
                r["tx"] = round(r["tx"] + self.tilt_rate_rad_per_h * h, 7)
                r["ty"] = round(r["ty"] + 0.3 * self.tilt_rate_rad_per_h * h, 7)
            else:
                r["cw"] = round(r["cw"] + self.crack_rate_mm_per_h * h, 4)
            return r

        return change


# -- an elderly resident stops moving (ELD-R3) ------------------------------------------------------------
@dataclass(frozen=True)
class ResidentInactive:
    """No motion, door or fridge event any more; the gateway and the other devices stay online."""

    name: str = "resident-inactive"
    description: str = "an elderly resident stops moving (ELD-R3: 8/12/24 h)"
    start_after_s: float = 60.0

    def bind(self, city: City, devices: Devices, start: float) -> Binding:
        home = chooser(city, self.name).choice(city.homes)
        out: Devices = {}
        for kind, field in (("motion", "m"), ("door", "o"), ("fridge", "o")):
            dev = devices[f"{home.id}-{kind}"]
            out[dev.device_id] = dataclasses.replace(dev, read=after(start, dev.read, _zero(field)))
        return Binding(self.name, f"{home.id} ({home.dong}, age {home.age})", start, out)


def _zero(field: str) -> Callable[[float, Reading], Reading]:
    def change(t: float, r: Reading) -> Reading:
        r[field] = 0
        return r

    return change


# -- a leakage current climbs (EFIRE-R2, R4, R5) ------------------------------------------------------------
@dataclass(frozen=True)
class LeakageClimb:
    """Insulation failing in a store: leakage rises 20 mA/h to 45 mA, the board warms, arcs start.

    Crosses 5 mA (관심) after ~15 min, 10 (주의) 30 min, 20 (경계) 60 min, 30 (심각) 90 min (EFIRE-R2).
    """

    name: str = "leakage-climb"
    description: str = "a market store's leakage current climbs (EFIRE-R2/R4/R5)"
    start_after_s: float = 60.0
    rate_ma_per_h: float = 20.0
    max_ma: float = 45.0
    temp_rise_c_per_h: float = 8.0
    arcs_from_ma: float = 30.0
    arcs_per_min: float = 2.0

    def bind(self, city: City, devices: Devices, start: float) -> Binding:
        board = chooser(city, self.name).choice(city.boards)
        dev = devices[board.id]

        def change(t: float, r: Reading) -> Reading:
            h = hours_since(start, t)
            extra = min(self.max_ma, self.rate_ma_per_h * h)
            r["il"] = round(r["il"] + extra, 3)
            r["tb"] = round(r["tb"] + self.temp_rise_c_per_h * h, 1)
            if r["il"] >= self.arcs_from_ma:
                r["arc"] = int(r["arc"]) + signals.poisson(self.arcs_per_min, board.key, 77, int(t // 60))
            return r

        target = f"{board.market} store {board.store_no} ({board.business_type}, {board.id})"
        return Binding(self.name, target, start, {board.id: dataclasses.replace(dev, read=after(start, dev.read, change))})


# -- a child leaves the safe zone (SAFE-R6) -------------------------------------------------------------------
@dataclass(frozen=True)
class ChildLeavesGeofence:
    """A child walks away from where it is at 0.8 m/s and stops 600 m away: > 100 m in ~2 min."""

    name: str = "child-leaves-geofence"
    description: str = "a child leaves its safe zone (SAFE-R6)"
    start_after_s: float = 60.0
    speed_mps: float = 0.8
    distance_m: float = 600.0

    def bind(self, city: City, devices: Devices, start: float) -> Binding:
        rng = chooser(city, self.name)
        child = rng.choice(city.children)
        heading = rng.uniform(0.0, 360.0)
        dev = devices[child.id]
        origin = dev.read(start)
        lon, lat = origin["loc"]["coordinates"] if origin else child.daycare

        def change(t: float, r: Reading) -> Reading:
            d = min(self.distance_m, self.speed_mps * (t - start))
            east, north = d * math.sin(math.radians(heading)), d * math.cos(math.radians(heading))
            lon2, lat2 = geo.GURO_BBOX.clamp(geo.offset((lon, lat), east, north))
            r["loc"] = {"type": "Point", "coordinates": [round(lon2, 7), round(lat2, 7)]}
            r["ob"], r["acc"] = False, signals.MOBILITY.outdoor_accuracy_m
            return r

        return Binding(self.name, f"{child.id} (daycare {child.daycare_id})", start,
                       {child.id: dataclasses.replace(dev, read=after(start, dev.read, change))})


# -- a safe-return walk leaves its route (SAFE-R2, SAFE-R4) ---------------------------------------------------
@dataclass(frozen=True)
class WalkOffRoute:
    """A walk starts at the scenario's start, follows its route for 40 %, turns off 250 m, stops.

    > 100 m off the route for ≥ 60 s (SAFE-R2), then no movement for > 5 min (SAFE-R4); the
    session keeps reporting for `hold_s`.
    """

    name: str = "walk-off-route"
    description: str = "a safe-return walk leaves its planned route and stops (SAFE-R2/R4)"
    start_after_s: float = 60.0
    on_route_fraction: float = 0.4
    detour_m: float = 250.0
    hold_s: float = 1800.0

    def bind(self, city: City, devices: Devices, start: float) -> Binding:
        walk = chooser(city, self.name).choice(city.walks)
        dev = devices[walk.id]
        end = start + self.hold_s
        path = detour_path(walk, self.on_route_fraction, self.detour_m)

        def read(t: float) -> Reading | None:
            if not start <= t <= end:
                return dev.read(t)
            # Walking the detour path; at its end the walker stands still (speed 0), still "walking".
            return walk_reading(dataclasses.replace(walk, route=path), t, start, math.inf)

        def own(t0: float, t1: float) -> list[float]:
            return ticks_in([(start, end)], signals.MOBILITY.walk_interval_s, t0, t1)

        schedule: Schedule = merged(_outside(dev.schedule, start, end), own)
        return Binding(self.name, f"{walk.id} from {walk.origin}", start,
                       {walk.id: dataclasses.replace(dev, read=read, schedule=schedule)})


def detour_path(walk: SafeReturnWalk, fraction: float, detour_m: float) -> tuple[geo.LonLat, ...]:
    """The planned route up to `fraction` of its length, then `detour_m` straight off to the side."""
    length = geo.polyline_length_m(walk.route)
    turn = geo.point_along(walk.route, fraction * length)
    heading = math.radians(geo.heading_along(walk.route, fraction * length) + 90.0)
    off = geo.GURO_BBOX.clamp(geo.offset(turn, detour_m * math.sin(heading), detour_m * math.cos(heading)))
    kept = [p for p, along in geo.vertices_with_distance(walk.route) if along < fraction * length]
    return (*kept, turn, off)


def _outside(schedule: Schedule, start: float, end: float) -> Schedule:
    def times(t0: float, t1: float) -> list[float]:
        return [t for t in schedule(t0, t1) if not start <= t <= end]

    return times


# -- a sensor goes silent (SHM-R6) -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SensorSilent:
    """A structural sensor stops reporting (a dead battery, a cut cable)."""

    name: str = "sensor-silent"
    description: str = "a structural sensor goes silent (SHM-R6: offline after 3 intervals)"
    start_after_s: float = 60.0

    def bind(self, city: City, devices: Devices, start: float) -> Binding:
        sensor = chooser(city, self.name).choice(city.sensors)
        dev = devices[sensor.id]

        def schedule(t0: float, t1: float) -> list[float]:
            return [t for t in dev.schedule(t0, t1) if t < start]

        return Binding(self.name, f"{sensor.id} ({sensor.kind} on {sensor.facility_id})", start,
                       {sensor.id: dataclasses.replace(dev, schedule=schedule)})


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    WallTilt(), ResidentInactive(), LeakageClimb(), ChildLeavesGeofence(), WalkOffRoute(), SensorSilent(),
)}

_OFFSET = re.compile(r"^(\d+(?:\.\d+)?)([smh]?)$")


def parse_offset(text: str) -> float:
    """'90', '90s', '5m', '2h' → seconds."""
    match = _OFFSET.match(text.strip())
    if not match:
        raise ValueError(f"not a time offset: {text!r} (use 90, 90s, 5m or 2h)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def select(specs: Sequence[str]) -> list[tuple[Scenario, float]]:
    """Scenarios by name (`NAME`, `NAME@OFFSET`, or `all`), each with its start offset in seconds."""
    out: list[tuple[Scenario, float]] = []
    for spec in specs:
        name, _, offset = spec.partition("@")
        names = list(SCENARIOS) if name == "all" else [name]
        for n in names:
            if n not in SCENARIOS:
                raise ValueError(f"unknown scenario {n!r}; known: {', '.join(SCENARIOS)}, all")
            scenario = SCENARIOS[n]
            out.append((scenario, parse_offset(offset) if offset else scenario.start_after_s))
    return out


def apply(city: City, devices: Devices, chosen: Sequence[tuple[Scenario, float]], sim_start: float) -> list[Binding]:
    """Bind the chosen scenarios and replace their devices in `devices` (in place)."""
    bindings = []
    for scenario, offset in chosen:
        binding = scenario.bind(city, devices, sim_start + offset)
        devices.update(binding.devices)
        bindings.append(binding)
    return bindings
