"""Scenarios leave the signals alone before their start and change them, as specified, after it."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

import pytest

from ucity.sim import geo, scenarios, signals
from ucity.sim.city import CityConfig, build_city
from ucity.sim.devices import SimDevice, city_devices
from ucity.sim.model import City

HOUR = 3600.0
START = datetime(2026, 11, 18, 1, 0, tzinfo=UTC).timestamp()  # 10:00 KST, a Wednesday


@pytest.fixture(scope="module")
def city() -> City:
    return build_city(CityConfig(seed=7, reference_date=date(2026, 11, 1)))


@pytest.fixture
def devices(city: City) -> dict[str, SimDevice]:
    return {d.device_id: d for d in city_devices(city)}


def at(device: SimDevice, t: float) -> dict[str, Any]:
    """The device's reading at t, which must exist."""
    reading = device.read(t)
    assert reading is not None
    return reading


def bind(city: City, devices: dict[str, SimDevice], name: str) -> tuple[scenarios.Binding, dict[str, SimDevice]]:
    original = dict(devices)
    [binding] = scenarios.apply(city, devices, scenarios.select([f"{name}@0"]), START)
    assert binding.devices and binding.start == START
    return binding, original


def test_select_parses_names_and_offsets() -> None:
    chosen = scenarios.select(["wall-tilt@5m", "sensor-silent", "leakage-climb@2h", "child-leaves-geofence@90"])
    assert [(s.name, offset) for s, offset in chosen] == [
        ("wall-tilt", 300.0), ("sensor-silent", 60.0), ("leakage-climb", 7200.0), ("child-leaves-geofence", 90.0)]
    assert len(scenarios.select(["all"])) == 6
    with pytest.raises(ValueError, match="unknown scenario"):
        scenarios.select(["flood"])
    with pytest.raises(ValueError, match="time offset"):
        scenarios.select(["wall-tilt@soon"])


def test_targets_follow_the_seed(city: City, devices: dict[str, SimDevice]) -> None:
    a = scenarios.apply(city, dict(devices), scenarios.select(["all"]), START)
    b = scenarios.apply(city, dict(devices), scenarios.select(["all"]), START)
    assert [x.target for x in a] == [x.target for x in b]


def test_wall_tilt_crosses_the_shm_ladder_in_order(city: City, devices: dict[str, SimDevice]) -> None:
    binding, original = bind(city, devices, "wall-tilt")
    tilt_ids = [d for d in binding.devices if devices[d].profile.kind == "tilt"]
    assert tilt_ids and all(city.facility(devices[d].static[1].value.rsplit("guro-", 1)[1]).facility_class
                            == "retainingWall" for d in tilt_ids)
    dev, before = devices[tilt_ids[0]], original[tilt_ids[0]]
    assert dev.read(START - 600) == before.read(START - 600)  # untouched before the start

    def change(minutes: float) -> float:
        t = START + minutes * 60
        return float(at(dev, t)["tx"] - at(before, t)["tx"])

    # SHM-R1: 1/750 after 20 min, 1/500 after 30, 1/300 after 50, 1/150 after 100 (4 mrad/h)
    assert change(19) < 1 / 750 < change(21)
    assert change(29) < 1 / 500 < change(31)
    assert change(49) < 1 / 300 < change(51)
    assert change(99) < 1 / 150 < change(101)
    crack = next(d for d in binding.devices if devices[d].profile.kind == "crack")
    opened = at(devices[crack], START + HOUR)["cw"] - at(original[crack], START + HOUR)["cw"]
    assert opened == pytest.approx(0.3, abs=0.001)  # SHM-R2 주의 after 1 h


def test_resident_stops_moving(city: City, devices: dict[str, SimDevice]) -> None:
    binding, original = bind(city, devices, "resident-inactive")
    motion_id = next(d for d in binding.devices if d.endswith("-motion"))
    times = [START + i * 600 for i in range(1, 6 * 30)]
    assert sum(at(original[motion_id], t)["m"] for t in times) > 50
    assert all(at(devices[motion_id], t)["m"] == 0 for t in times)
    home_id = motion_id.removesuffix("-motion")
    assert devices[f"{home_id}-gateway"].read(START + HOUR) == {"st": "online", "pwr": "mains"}
    earlier = START - 2 * 600
    assert devices[motion_id].read(earlier) == original[motion_id].read(earlier)


def test_leakage_climbs_through_the_ladder(city: City, devices: dict[str, SimDevice]) -> None:
    binding, original = bind(city, devices, "leakage-climb")
    [board_id] = binding.devices
    dev = devices[board_id]

    def leak(minutes: float) -> float:
        return float(at(dev, START + minutes * 60)["il"])

    assert dev.read(START - 60) == original[board_id].read(START - 60)
    assert leak(5) < 5 < leak(16)  # EFIRE-R2 관심 ≥ 5 mA after ~15 min
    assert leak(31) > 10 and leak(61) > 20 and leak(91) > 30
    assert leak(240) < 48  # capped
    arcs = sum(at(dev, START + m * 60)["arc"] for m in range(100, 130))
    assert arcs > 20  # arcs with the leak ≥ 30 mA (EFIRE-R5)
    assert at(dev, START + 2 * HOUR)["tb"] > at(original[board_id], START + 2 * HOUR)["tb"] + 15


def test_child_leaves_the_safe_zone(city: City, devices: dict[str, SimDevice]) -> None:
    binding, original = bind(city, devices, "child-leaves-geofence")
    [child_id] = binding.devices
    dev = devices[child_id]
    origin = tuple(at(original[child_id], START)["loc"]["coordinates"])
    where = {m: tuple(at(dev, START + m * 60)["loc"]["coordinates"]) for m in (0, 1, 3, 30)}
    assert geo.distance_m(where[0], origin) < 1
    assert geo.distance_m(where[1], origin) == pytest.approx(48, abs=2)  # 0.8 m/s
    assert geo.distance_m(where[3], origin) > 100  # out of the r = 100 m zone (SAFE-R6)
    assert geo.distance_m(where[30], origin) == pytest.approx(600, abs=5)
    assert at(dev, START + 600)["ob"] is False


def test_walk_leaves_its_route_and_stops(city: City, devices: dict[str, SimDevice]) -> None:
    binding, original = bind(city, devices, "walk-off-route")
    [walk_id] = binding.devices
    walk = next(w for w in city.walks if w.id == walk_id)
    dev = devices[walk_id]
    times = dev.schedule(START - 60, START + 1800)
    assert times[0] == START and all(b - a == 10 for a, b in itertools.pairwise(times))
    assert original[walk_id].schedule(START - 60, START + 1800) == []  # normally no session at 10:00 KST
    off = [geo.distance_to_polyline_m(tuple(at(dev, t)["loc"]["coordinates"]), walk.route) for t in times]
    assert off[0] < 25
    assert max(off) > 200  # > 100 m for ≥ 60 s (SAFE-R2)
    far = [t for t, d in zip(times, off, strict=True) if d > 150]
    assert far[-1] - far[0] > 300
    assert at(dev, times[-1])["spd"] == 0.0  # stopped (SAFE-R4)


def test_sensor_goes_silent(city: City, devices: dict[str, SimDevice]) -> None:
    binding, original = bind(city, devices, "sensor-silent")
    [sensor_id] = binding.devices
    assert original[sensor_id].schedule(START - HOUR, START + HOUR)
    assert all(t < START for t in devices[sensor_id].schedule(START - HOUR, START + HOUR))
    assert devices[sensor_id].schedule(START, START + 6 * HOUR) == []


def test_unbound_devices_are_untouched(city: City, devices: dict[str, SimDevice]) -> None:
    original = dict(devices)
    bindings = scenarios.apply(city, devices, scenarios.select(["all@0"]), START)
    touched = {d for b in bindings for d in b.devices}
    for device_id in list(devices)[::50]:
        if device_id not in touched:
            assert devices[device_id] is original[device_id]
    assert signals.local_hour(START) == pytest.approx(10.0)
