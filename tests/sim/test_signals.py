"""The pure signal generators: deterministic, and shaped by the domain rules they cite."""

from __future__ import annotations

import itertools
import statistics
from datetime import UTC, date, datetime

import pytest

from ucity.sim import geo, signals
from ucity.sim.city import CityConfig, build_city
from ucity.sim.devices import city_devices
from ucity.sim.model import City

HOUR, DAY = 3600.0, 86400.0
# Wednesday 2026-11-18 00:00 KST (15:00 UTC the day before)
WED = datetime(2026, 11, 17, 15, 0, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def city() -> City:
    return build_city(CityConfig(seed=7, reference_date=date(2026, 11, 1)))


def kst(day_offset: float, hour: float) -> float:
    return WED + day_offset * DAY + hour * HOUR


def test_noise_is_a_pure_function_of_its_arguments() -> None:
    assert signals.unit(5, 1, 2) == signals.unit(5, 1, 2) == pytest.approx(0.1669533770179349)
    assert signals.unit(5, 1, 3) != signals.unit(5, 1, 2)
    values = [signals.normal(11, i) for i in range(4000)]
    assert statistics.mean(values) == pytest.approx(0.0, abs=0.06)
    assert statistics.stdev(values) == pytest.approx(1.0, abs=0.05)
    counts = [signals.poisson(3.0, 11, i) for i in range(4000)]
    assert statistics.mean(counts) == pytest.approx(3.0, abs=0.1)


def test_same_seed_same_signals(city: City) -> None:
    again = build_city(CityConfig(seed=7, reference_date=date(2026, 11, 1)))
    first, second = city_devices(city), city_devices(again)
    for a, b in zip(first[::97], second[::97], strict=True):
        times = a.schedule(kst(0, 0), kst(0, 6))
        assert times == b.schedule(kst(0, 0), kst(0, 6))
        assert [a.read(t) for t in times] == [b.read(t) for t in times]


def test_local_time_helpers() -> None:
    assert signals.local_hour(WED) == pytest.approx(0.0)
    assert signals.weekday(WED) == 2  # Wednesday
    assert signals.weekday(kst(3, 12)) == 5  # Saturday


def test_daily_thermal_cycle() -> None:
    afternoons = [signals.air_temp_c(kst(d, 14.5)) for d in range(7)]
    dawns = [signals.air_temp_c(kst(d, 4.5)) for d in range(7)]
    assert statistics.mean(afternoons) - statistics.mean(dawns) == pytest.approx(9.0, abs=2.5)  # ±4.5 °C
    august = signals.air_temp_c(datetime(2026, 8, 1, 6, tzinfo=UTC).timestamp())
    january = signals.air_temp_c(datetime(2026, 1, 15, 6, tzinfo=UTC).timestamp())
    assert august - january > 20


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b·x and the correlation."""
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept, slope, statistics.correlation(xs, ys)


def test_tilt_follows_temperature(city: City) -> None:
    """SHM-R7: reading = a + b·T; tilt moves ±0.05 mrad a day (§8.6)."""
    sensor = next(s for s in city.sensors if s.kind == "tilt")
    times = [kst(0, 0) + i * 600 for i in range(6 * 24 * 3)]
    temps = [signals.structure_temp_c(sensor, t) for t in times]
    tilts = [signals.tilt_rad(sensor, 0, t) for t in times]
    a, b, r = _fit(temps, tilts)
    assert r > 0.95
    assert b == pytest.approx(sensor.thermal_coef, rel=0.05)
    daily = max(tilts[:144]) - min(tilts[:144])
    assert 0.04e-3 < daily < 0.2e-3  # rad
    residuals = [y - (a + b * x) for x, y in zip(temps, tilts, strict=True)]
    assert statistics.stdev(residuals) == pytest.approx(sensor.noise, rel=0.2)


def test_cracks_open_in_the_cold(city: City) -> None:
    sensor = next(s for s in city.sensors if s.kind == "crack")
    times = [kst(0, 0) + i * 600 for i in range(6 * 24 * 3)]
    temps = [signals.structure_temp_c(sensor, t) for t in times]
    cracks = [signals.crack_mm(sensor, t) for t in times]
    _, b, r = _fit(temps, cracks)
    assert b < 0 and r < -0.9
    assert max(cracks) < 0.1  # a healthy crack stays below the 관심 level (SHM-R2)


@pytest.mark.parametrize("seed", [7, 11])
def test_no_healthy_crack_reaches_the_first_step_in_a_year(seed: int) -> None:
    """docs/simulator.md (QA D5): every healthy crack stays below 0.1 mm (SHM-R2 관심), and below its clearing edge
    0.08 mm, on the coldest hour of every day of a year, so a fresh demo never opens on false crack alarms."""
    city = build_city(CityConfig(seed=seed, reference_date=date(2026, 11, 1)))
    cracks = [s for s in city.sensors if s.kind == "crack"]
    assert len(cracks) > 200
    # the structure is coldest about 04:00 (air at 02:30, lagged 1.5 h); 04:00 and 07:00 of every day
    days = [WED + d * DAY + h * HOUR for d in range(365) for h in (4.0, 7.0)]
    worst = max(signals.crack_mm(s, t) for s in cracks for t in days)
    assert worst < 0.08, worst


def test_healthy_cracks_follow_temperature_clearly_enough_to_fit(city: City) -> None:
    """SHM-R7 needs the thermal part above the noise: every crack sensor's 3 days correlate with temperature."""
    times = [kst(20, 0) + i * 600 for i in range(6 * 24 * 3)]
    for sensor in (s for s in city.sensors if s.kind == "crack"):
        temps = [signals.structure_temp_c(sensor, t) for t in times]
        _, b, r = _fit(temps, [signals.crack_mm(sensor, t) for t in times])
        assert b < 0 and r < -0.85, sensor.id


def test_vibration_background_stays_below_the_ladder(city: City) -> None:
    sensor = next(s for s in city.sensors if s.kind == "vibration")
    values = [signals.vibration(sensor, kst(0, 0) + i * 600, 600)[0] for i in range(6 * 24 * 14)]
    assert statistics.median(values) < 1.0  # SHM-R3 관심 starts at 1 mm/s
    rush = statistics.mean(signals.vibration(sensor, kst(d, 8), 600)[0] for d in range(30))
    night = statistics.mean(signals.vibration(sensor, kst(d, 3), 600)[0] for d in range(30))
    assert rush > 1.5 * night


def test_elderly_routine(city: City) -> None:
    home = city.homes[0]
    day_motion = [signals.motion_count(home, kst(d, h), 600) for d in range(14) for h in (10, 11, 15, 16)
                  if not signals.home_away(home, kst(d, h) - 300)]
    night_motion = [signals.motion_count(home, kst(d, 3), 600) for d in range(14)]
    assert statistics.mean(day_motion) > 5 * max(statistics.mean(night_motion), 0.05)
    outings = [signals.home_outings(home.key, signals.local_day(kst(d, 12)), home.outings_per_day, home.wake_h,
                                    home.sleep_h, signals.HOME.outing_median_min) for d in range(30)]
    assert 0.5 < statistics.mean(len(o) for o in outings) < 3.5  # door events 1–3/day (§8.6)
    leave, back = next(o for o in outings if o)[0]
    assert signals.home_away(home, (leave + back) / 2)
    assert signals.motion_count(home, (leave + back) / 2 + 300, 600) == 0 or back - leave < 600


def test_board_load_curve_and_energy_meter(city: City) -> None:
    board = next(b for b in city.boards if b.business_type == "의류")
    night = signals.board_current_a(board, kst(0, 3))
    day = signals.board_current_a(board, kst(0, 15))
    assert day > 3 * night
    leaks = [signals.board_leak_ma(b, kst(0, 12)) for b in city.boards]
    assert min(leaks) > 0.15 and max(leaks) < 3.0  # normal 0.2–2 mA (§8.6), a little more when humid
    meter = [signals.board_energy_kwh(board, kst(0, 0) + i * 900) for i in range(200)]
    assert all(b >= a for a, b in itertools.pairwise(meter))
    assert meter[96] - meter[0] == pytest.approx(sum(
        (board.night_load_a + board.day_load_a * signals.board_load_fraction(board, (q + 0.5) / 4)) * 220 * 0.9 * 0.25
        for q in range(96)) / 1000, rel=0.01)


def test_parking_occupancy(city: City) -> None:
    residents = [p for p in city.parking_spaces if p.resident]
    at_night = statistics.mean(signals.parking_occupied(p, kst(0, 3)) for p in residents)
    assert at_night > 0.7  # residents park overnight
    space = residents[0]
    changes = signals.parking_changes(space, kst(0, 0), kst(2, 0))
    assert changes
    for t in changes:
        assert signals.parking_occupied(space, t - 1) != signals.parking_occupied(space, t + 1)


def test_traffic_speeds_by_class_and_hour(city: City) -> None:
    """TRAF-R5: daily means by road class; the PM rush slowest, nights fastest."""
    arterial = [link for link in city.links if link.functional_class == "주간선도로"]
    expressway = [link for link in city.links if link.functional_class == "도시고속도로"]
    week = [kst(d, 0) + i * 300 for d in range(7) for i in range(288)]
    mean_arterial = statistics.mean(signals.link_speed_kmh(link, t) for link in arterial[:6] for t in week[::6])
    mean_express = statistics.mean(signals.link_speed_kmh(link, t) for link in expressway[:4] for t in week[::6])
    assert mean_arterial == pytest.approx(24.75, rel=0.12)
    assert mean_express == pytest.approx(55.0, rel=0.12)
    pm = statistics.mean(signals.link_speed_kmh(link, kst(0, 19)) for link in arterial)
    am = statistics.mean(signals.link_speed_kmh(link, kst(0, 8)) for link in arterial)
    night = statistics.mean(signals.link_speed_kmh(link, kst(0, 3)) for link in arterial)
    assert pm < am < night
    link = arterial[0]
    assert signals.link_travel_time_s(link, kst(0, 19)) == pytest.approx(
        link.length_m / (signals.link_speed_kmh(link, kst(0, 19)) / 3.6), rel=0.01)


def test_daycare_bus_and_children(city: City) -> None:
    bus = city.buses[0]
    child = next(c for c in city.children if c.bus_id == bus.id)
    (am0, am1), (_pm0, _) = signals.bus_legs(bus, kst(0, 12))
    assert signals.bus_in_service(bus, (am0 + am1) / 2)
    fix, on_board = signals.child_fix(child, bus, am1 - 1)
    assert on_board and fix.point == signals.bus_fix(bus, am1 - 1).point
    fix, on_board = signals.child_fix(child, bus, kst(0, 12))
    assert not on_board and geo.distance_m(fix.point, child.daycare) < 40
    fix, _ = signals.child_fix(child, bus, kst(0, 22))
    assert geo.distance_m(fix.point, child.home) < 40
    assert not signals.bus_in_service(bus, kst(3, 8.5))  # Saturday


def test_safe_return_walk_reports_only_in_its_session(city: City) -> None:
    walk = city.walks[0]
    device = next(d for d in city_devices(city) if d.device_id == walk.id)
    start, end = signals.walk_session(walk, signals.local_day(kst(0, 12)))
    times = device.schedule(kst(0, 0), kst(1, 0))
    assert times and min(times) >= start and max(times) <= end + 10
    assert all(b - a == pytest.approx(10.0) for a, b in itertools.pairwise(times))  # every 10 s (SAFE-R1)
    readings = [r for t in times if (r := device.read(t)) is not None]
    assert len(readings) == len(times)
    assert readings[-1]["st"] == "arrived" and readings[0]["st"] == "walking"
    assert device.read(kst(0, 12)) is None
    for r in readings:
        assert geo.distance_to_polyline_m(tuple(r["loc"]["coordinates"]), walk.route) < 25
