"""Pure signal generators: the value of every simulated channel at a time t.

Every function here is pure: its result depends only on its arguments (a city record, the time t
in POSIX seconds, a configuration), never on a global random state or on earlier calls. Noise is
drawn from a counter-based hash of (record key, channel salt, time bucket), so the same reading
is produced whether the simulator runs in real time, accelerated, or a test asks for one instant.
Caches (lru_cache) only memoise pure per-day plans.

Times are POSIX seconds (UTC); daily shapes follow local time in Seoul (UTC+9, no DST).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from ucity.sim import geo
from ucity.sim.geo import LonLat
from ucity.sim.model import (
    Child,
    ElderlyHome,
    ElectricBoard,
    ParkingSpace,
    RoadLink,
    SafeReturnWalk,
    SchoolBus,
    StructuralSensor,
)

DAY = 86_400.0
KST_OFFSET = 9 * 3600.0
_MASK = (1 << 64) - 1


# -- counter-based noise -----------------------------------------------------------------------------
def mix64(x: int) -> int:
    """The splitmix64 finaliser: a well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _bits(key: int, salt: tuple[int, ...]) -> int:
    # hash() of a tuple of ints is not salted per process (only str/bytes are), so it is stable
    # across runs; mix64 then spreads it. One mix per number keeps the hot path cheap.
    return mix64(hash((key, *salt)) & _MASK)


def unit(key: int, *salt: int) -> float:
    """A uniform number in [0, 1) determined by its arguments."""
    return (_bits(key, salt) >> 11) * _INV_2_53


def normal(key: int, *salt: int) -> float:
    """A standard normal number determined by its arguments (Box–Muller on the two 32-bit halves)."""
    x = _bits(key, salt)
    u1 = ((x >> 32) + 0.5) * _INV_2_32
    u2 = (x & 0xFFFFFFFF) * _INV_2_32
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


_INV_2_53 = 1.0 / float(1 << 53)
_INV_2_32 = 1.0 / float(1 << 32)
_TWO_PI = 2.0 * math.pi


def poisson(lam: float, key: int, *salt: int) -> int:
    """A Poisson count with mean `lam` determined by its arguments (inversion; lam is small here)."""
    if lam <= 0:
        return 0
    u = unit(key, *salt, 3)
    k, p = 0, math.exp(-lam)
    cdf = p
    while u > cdf and k < 1000:
        k += 1
        p *= lam / k
        cdf += p
    return k


# Channel salts: one per channel so that channels of one device are independent.
S_TEMP, S_RH, S_TILT_X, S_TILT_Y, S_CRACK, S_PPV, S_FREQ, S_SPIKE, S_BAT, S_RSSI = range(1, 11)
S_MOTION, S_DOOR, S_FRIDGE, S_OUT, S_LUX, S_BUTTON = range(20, 26)
S_CURRENT, S_VOLT, S_LEAK, S_BTEMP, S_ARC = range(30, 35)
S_PARK, S_SPEED, S_VOLUME, S_GPS, S_WALK = range(40, 45)


# -- time -----------------------------------------------------------------------------------------------
def local_hour(t: float) -> float:
    return ((t + KST_OFFSET) % DAY) / 3600.0


def local_day(t: float) -> int:
    """Days since 1970-01-01 in Seoul time."""
    return int((t + KST_OFFSET) // DAY)


def local_midnight(day: int) -> float:
    return day * DAY - KST_OFFSET


def weekday(t: float) -> int:
    """0 = Monday … 6 = Sunday (1970-01-01 was a Thursday)."""
    return (local_day(t) + 3) % 7


def day_of_year(t: float) -> float:
    return ((t + KST_OFFSET) / DAY) % 365.2425


def bump(h: float, center: float, width: float) -> float:
    """A smooth daily bump (Gaussian on the 24 h circle) with height 1 at `center`."""
    d = min(abs(h - center), 24.0 - abs(h - center))
    return math.exp(-0.5 * (d / width) ** 2)


# -- climate (drives the thermal cycles of §2.3 and the humidity of boards and homes) --------------
@dataclass(frozen=True)
class ClimateConfig:
    """Seoul-like air temperature and humidity; [D] climate normals, rounded."""

    annual_mean_c: float = 12.8
    annual_amplitude_c: float = 14.0  # about −1 °C in January, 27 °C in August
    warmest_day: float = 213.0  # early August
    daily_amplitude_c: float = 4.5
    warmest_hour: float = 14.5  # local
    mean_rh: float = 63.0
    annual_rh_amplitude: float = 12.0  # humid monsoon summer
    daily_rh_amplitude: float = 12.0  # humid nights, dry afternoons
    structure_lag_h: float = 1.5  # a structure follows the air with a thermal lag
    weather_noise_c: float = 1.2  # slow day-to-day weather


CLIMATE = ClimateConfig()


def air_temp_c(t: float, c: ClimateConfig = CLIMATE) -> float:
    """Air temperature of the district: annual + daily cycle + slow weather, no sensor noise."""
    annual = c.annual_amplitude_c * math.cos(2 * math.pi * (day_of_year(t) - c.warmest_day) / 365.2425)
    daily = c.daily_amplitude_c * math.cos(2 * math.pi * (local_hour(t) - c.warmest_hour) / 24.0)
    return c.annual_mean_c + annual + daily + c.weather_noise_c * _smooth_noise(7, t, 6 * 3600.0)


def air_rh_pct(t: float, c: ClimateConfig = CLIMATE) -> float:
    annual = c.annual_rh_amplitude * math.cos(2 * math.pi * (day_of_year(t) - c.warmest_day + 15) / 365.2425)
    daily = -c.daily_rh_amplitude * math.cos(2 * math.pi * (local_hour(t) - c.warmest_hour) / 24.0)
    return min(100.0, max(15.0, c.mean_rh + annual + daily + 6.0 * _smooth_noise(8, t, 6 * 3600.0)))


def _smooth_noise(key: int, t: float, period: float) -> float:
    """Noise that changes slowly: a cosine blend between independent values every `period` s."""
    i = math.floor(t / period)
    f = (t / period) - i
    w = 0.5 - 0.5 * math.cos(math.pi * f)
    return (1 - w) * _node(key, i) + w * _node(key, i + 1)


@lru_cache(maxsize=65536)
def _node(key: int, i: int) -> float:
    return normal(key, i)


# -- structural sensors (§2.3, §2.5, §8.6) -------------------------------------------------------------
@dataclass(frozen=True)
class ShmSignalConfig:
    interval_s: int = 600  # every 10 min (§8.6 [D])
    spike_probability: float = 0.002  # knocks / heavy trucks / nearby works per interval (SHM-R4 spikes) [D]
    spike_ppv_mm_s: tuple[float, float] = (1.0, 4.0)
    battery_drain_per_day: float = 0.0004  # a LoRa sensor lasts years [D]
    temp_noise_c: float = 0.1


SHM = ShmSignalConfig()


def structure_temp_c(s: StructuralSensor, t: float, c: ClimateConfig = CLIMATE, cfg: ShmSignalConfig = SHM) -> float:
    """The temperature the sensor measures on the structure (the air, lagged) plus sensor noise."""
    lagged = air_temp_c(t - c.structure_lag_h * 3600.0, c)
    return lagged + cfg.temp_noise_c * normal(s.key, S_TEMP, int(t // 60))


def tilt_rad(s: StructuralSensor, axis: int, t: float, c: ClimateConfig = CLIMATE) -> float:
    """Tilt change from the installation baseline: b·(T − T_install) + noise (§2.3, §8.6, SHM-R7).

    Axis Y moves less than X (the wall leans mostly one way). The thermal part is computed from the
    temperature the sensor itself reports, so a + b·T fits it exactly apart from the noise.
    """
    temp = structure_temp_c(s, t, c)
    coef = s.thermal_coef * (1.0 if axis == 0 else 0.4)
    salt = S_TILT_X if axis == 0 else S_TILT_Y
    return s.offset + coef * (temp - s.ref_temp_c) + s.noise * normal(s.key, salt, int(t // 60))


def crack_mm(s: StructuralSensor, t: float, c: ClimateConfig = CLIMATE) -> float:
    """Crack opening change since installation: a + b·T + noise, b < 0 (§2.3, SHM-R7)."""
    temp = structure_temp_c(s, t, c)
    return s.offset + s.thermal_coef * (temp - s.ref_temp_c) + s.noise * normal(s.key, S_CRACK, int(t // 60))


def vibration(s: StructuralSensor, t: float, interval_s: float, cfg: ShmSignalConfig = SHM) -> tuple[float, float]:
    """Peak particle velocity (mm/s) over the interval ending at t, and its dominant frequency (Hz).

    Background from traffic and people follows the day (busier at rush hours); rarely a spike (a
    knock, a heavy truck) that SHM-R4 must not mistake for a structural alarm.
    """
    bucket = int(t // interval_s)
    h = local_hour(t)
    activity = 0.35 + 0.65 * max(bump(h, 8.0, 1.5), bump(h, 18.5, 2.0), 0.6 * bump(h, 13.0, 3.0))
    ppv = s.vib_median_mm_s * activity * math.exp(0.35 * normal(s.key, S_PPV, bucket))
    freq = s.vib_freq_hz * math.exp(0.08 * normal(s.key, S_FREQ, bucket))
    if unit(s.key, S_SPIKE, bucket) < cfg.spike_probability:
        lo, hi = cfg.spike_ppv_mm_s
        ppv = max(ppv, lo + (hi - lo) * unit(s.key, S_SPIKE, bucket, 9))
        freq = 10.0 + 30.0 * unit(s.key, S_FREQ, bucket, 9)
    return ppv, freq


BATTERY_EPOCH = 1_767_225_600.0  # 2026-01-01: `battery0` is the level at this instant


def battery_level(battery0: float, key: int, t: float, drain_per_day: float) -> float:
    """Battery level 0..1: a linear drain from `battery0`; a new battery (1.0) once it reaches 10 %."""
    days = (t - BATTERY_EPOCH) / DAY + (1.0 - battery0) / drain_per_day
    life = 0.9 / drain_per_day
    level = 1.0 - drain_per_day * (days % life)
    return round(max(0.0, min(1.0, level + 0.002 * normal(key, S_BAT, int(t // 3600)))), 3)


def rssi_dbm(mean_dbm: float, key: int, t: float) -> float:
    return round(mean_dbm + 3.0 * normal(key, S_RSSI, int(t // 60)), 1)


# -- elderly homes (§3, §8.6) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class HomeSignalConfig:
    interval_s: int = 600  # motion/temp/illuminance/humidity every 10 min (Seongdong, §3.2 [V])
    alarm_interval_s: int = 3600  # fire, gas, button, gateway heartbeats [D]
    night_motion_per_h: float = 0.4  # bathroom trips while asleep [D]
    outing_median_min: float = 70.0  # [D]
    other_door_per_day: float = 0.5  # garbage, deliveries [D]
    false_press_per_day: float = 0.002  # accidental button presses, cancelled (ELD-R7) [D]
    heating_setpoint_c: float = 20.0
    cooling_setpoint_c: float = 27.0


HOME = HomeSignalConfig()


@lru_cache(maxsize=8192)
def home_outings(key: int, day: int, per_day: float, wake_h: float, sleep_h: float,
                 median_min: float) -> tuple[tuple[float, float], ...]:
    """The outings (leave, return) of one day, as POSIX seconds, not overlapping."""
    count = min(4, poisson(per_day, key, S_OUT, day))
    midnight = local_midnight(day)
    spans: list[tuple[float, float]] = []
    for i in range(count):
        start_h = wake_h + 1.0 + (sleep_h - wake_h - 3.0) * unit(key, S_OUT, day, i)
        minutes = median_min * math.exp(0.5 * normal(key, S_OUT, day, i, 7))
        start = midnight + start_h * 3600.0
        end = min(start + minutes * 60.0, midnight + (sleep_h - 0.5) * 3600.0)
        if end > start and all(end < a or start > b for a, b in spans):
            spans.append((start, end))
    return tuple(sorted(spans))


def _outings_of(h: ElderlyHome, day: int, cfg: HomeSignalConfig) -> tuple[tuple[float, float], ...]:
    return home_outings(h.key, day, h.outings_per_day, h.wake_h, h.sleep_h, cfg.outing_median_min)


def home_away(h: ElderlyHome, t: float, cfg: HomeSignalConfig = HOME) -> bool:
    return any(a <= t < b for a, b in _outings_of(h, local_day(t), cfg))


def home_asleep(h: ElderlyHome, t: float) -> bool:
    hour = local_hour(t)
    return hour >= h.sleep_h or hour < h.wake_h


def motion_count(h: ElderlyHome, t: float, interval_s: float, cfg: HomeSignalConfig = HOME) -> int:
    """Motion events in the interval ending at t: Poisson with a daily profile, 0 while out (§8.6)."""
    mid = t - interval_s / 2
    if home_away(h, mid, cfg):
        return 0
    hour = local_hour(mid)
    meals = 1.0 + 0.6 * max(bump(hour, 7.5, 0.7), bump(hour, 12.5, 0.7), bump(hour, 18.5, 0.7))
    rate = cfg.night_motion_per_h if home_asleep(h, mid) else h.activity_per_h * meals
    return poisson(rate * interval_s / 3600.0, h.key, S_MOTION, int(t // interval_s))


def door_count(h: ElderlyHome, t: float, interval_s: float, cfg: HomeSignalConfig = HOME) -> int:
    """Entrance-door openings in the interval: each outing opens it twice, plus a few others."""
    t0 = t - interval_s
    edges = sum((t0 < a <= t) + (t0 < b <= t) for a, b in _outings_of(h, local_day(t), cfg))
    awake = 0.0 if home_asleep(h, t) else 1.0
    rate = awake * cfg.other_door_per_day / max(1.0, h.sleep_h - h.wake_h) * interval_s / 3600.0
    return int(edges) + poisson(rate, h.key, S_DOOR, int(t // interval_s))


def fridge_count(h: ElderlyHome, t: float, interval_s: float, cfg: HomeSignalConfig = HOME) -> int:
    """Refrigerator-door openings: around meals, only when home and awake (Guro terminal, §3.2)."""
    mid = t - interval_s / 2
    if home_away(h, mid, cfg) or home_asleep(h, mid):
        return 0
    hour = local_hour(mid)
    shape = 0.2 + max(bump(hour, 7.5, 0.8), bump(hour, 12.5, 0.8), bump(hour, 18.5, 0.8))
    rate = h.fridge_per_day * shape / 6.0 * interval_s / 3600.0
    return poisson(rate, h.key, S_FRIDGE, int(t // interval_s))


def indoor_temp_c(h: ElderlyHome, t: float, c: ClimateConfig = CLIMATE, cfg: HomeSignalConfig = HOME) -> float:
    """Indoors follows the outside damped, held between heating and cooling set-points."""
    out = air_temp_c(t, c)
    damped = 21.0 + 0.45 * (out - 15.0)
    held = min(max(damped, cfg.heating_setpoint_c - 2.0), cfg.cooling_setpoint_c + 3.0)
    return held + 0.3 * normal(h.key, S_TEMP, int(t // 600))


def indoor_rh_pct(h: ElderlyHome, t: float, c: ClimateConfig = CLIMATE) -> float:
    return min(95.0, max(20.0, 0.8 * air_rh_pct(t, c) + 5.0 + 2.0 * normal(h.key, S_RH, int(t // 600))))


def illuminance_lux(h: ElderlyHome, t: float, cfg: HomeSignalConfig = HOME) -> float:
    hour = local_hour(t)
    daylight = 300.0 * max(0.0, math.sin(math.pi * (hour - 6.0) / 13.0)) if 6.0 <= hour <= 19.0 else 0.0
    lamps = 0.0 if home_asleep(h, t) or home_away(h, t, cfg) else 150.0
    return round(max(0.0, daylight + lamps + 10.0 * normal(h.key, S_LUX, int(t // 600))), 1)


def button_presses(h: ElderlyHome, t: float, interval_s: float, cfg: HomeSignalConfig = HOME) -> int:
    """Accidental presses of the emergency button (cancelled within 10 s, ELD-R7); rare."""
    return poisson(cfg.false_press_per_day * interval_s / DAY, h.key, S_BUTTON, int(t // interval_s))


# -- market electric boards (§4, §8.6) ----------------------------------------------------------------
@dataclass(frozen=True)
class BoardSignalConfig:
    interval_s: int = 60  # 1-min aggregates (EFIRE-R9 [D])
    nominal_v: float = 220.0
    power_factor: float = 0.9
    rated_rise_c: float = 18.0  # terminal rise above ambient at the breaker's rated current [D]
    arc_per_day: float = 0.002  # an occasional arc signature on a healthy board [D]
    kwh_epoch: float = 1_700_000_000.0  # the meter reads 0 kWh at this instant (Nov 2023)


BOARD = BoardSignalConfig()


FOOD_BUSINESSES = ("음식점", "반찬")


def load_fraction(open_h: float, close_h: float, food: bool, hour: float) -> float:
    """Fraction of the day load drawn at a local hour: 0 when closed, meal peaks for food shops."""
    if not (open_h <= hour < close_h):
        return 0.0
    ramp = min(1.0, (hour - open_h) / 0.5, (close_h - hour) / 0.5)
    peaks = max(bump(hour, 12.5, 1.0), bump(hour, 18.5, 1.2)) if food else 0.0
    return ramp * (0.65 + 0.35 * peaks)


def board_load_fraction(b: ElectricBoard, hour: float) -> float:
    return load_fraction(b.open_h, b.close_h, b.business_type in FOOD_BUSINESSES, hour)


def board_current_a(b: ElectricBoard, t: float) -> float:
    base = b.night_load_a + b.day_load_a * board_load_fraction(b, local_hour(t))
    return max(0.0, base * (1.0 + 0.06 * normal(b.key, S_CURRENT, int(t // 60))))


def board_voltage_v(b: ElectricBoard, t: float, cfg: BoardSignalConfig = BOARD, amps: float | None = None) -> float:
    sag = 0.08 * (board_current_a(b, t) if amps is None else amps)
    return cfg.nominal_v + 2.0 * _smooth_noise(11, t, 1800.0) - sag + 0.5 * normal(b.key, S_VOLT, int(t // 60))


def board_leak_ma(b: ElectricBoard, t: float, c: ClimateConfig = CLIMATE) -> float:
    """Residual current: the board's normal 0.2–2 mA, a little higher when humid (§8.6, §4.2)."""
    humid = 1.0 + 0.4 * max(0.0, (air_rh_pct(t, c) - 60.0) / 40.0)
    return max(0.0, b.leak_ma * humid * (1.0 + 0.05 * normal(b.key, S_LEAK, int(t // 60))))


def board_temp_c(b: ElectricBoard, t: float, c: ClimateConfig = CLIMATE, cfg: BoardSignalConfig = BOARD,
                 amps: float | None = None) -> float:
    """Board temperature: the shop's ambient plus I²-heating of the terminals (ΔT, EFIRE-R4)."""
    ambient = min(max(air_temp_c(t, c), 5.0), 32.0) + 3.0
    rise = cfg.rated_rise_c * ((board_current_a(b, t) if amps is None else amps) / b.breaker_a) ** 2
    return ambient + rise + 0.2 * normal(b.key, S_BTEMP, int(t // 60))


def board_arcs(b: ElectricBoard, t: float, interval_s: float, cfg: BoardSignalConfig = BOARD) -> int:
    return poisson(cfg.arc_per_day * interval_s / DAY, b.key, S_ARC, int(t // interval_s))


def board_power_kw(b: ElectricBoard, t: float, cfg: BoardSignalConfig = BOARD) -> float:
    amps = board_current_a(b, t)
    return board_voltage_v(b, t, cfg, amps) * amps * cfg.power_factor / 1000.0


@lru_cache(maxsize=8192)
def _board_energy_table(day_load_a: float, night_load_a: float, open_h: float, close_h: float,
                        food: bool, volts: float) -> tuple[float, ...]:
    """Cumulative kWh at each quarter hour of a day for the noiseless load (96 + 1 entries)."""
    cum = [0.0]
    for q in range(96):
        amps = night_load_a + day_load_a * load_fraction(open_h, close_h, food, (q + 0.5) / 4.0)
        cum.append(cum[-1] + volts * amps * 0.25 / 1000.0)
    return tuple(cum)


def board_energy_kwh(b: ElectricBoard, t: float, cfg: BoardSignalConfig = BOARD) -> float:
    """The energy meter: a closed-form integral of the load curve, monotonic in t."""
    table = _board_energy_table(b.day_load_a, b.night_load_a, b.open_h, b.close_h,
                                b.business_type in FOOD_BUSINESSES, cfg.nominal_v * cfg.power_factor)
    elapsed = max(0.0, t - cfg.kwh_epoch)
    days, rest = divmod(elapsed + ((cfg.kwh_epoch + KST_OFFSET) % DAY), DAY)
    start_offset = table[int(((cfg.kwh_epoch + KST_OFFSET) % DAY) // 900)]
    q, frac = divmod(rest / 900.0, 1.0)
    today = table[int(q)] + (table[int(q) + 1] - table[int(q)]) * frac
    return round(days * table[-1] + today - start_offset, 3)


# -- shared parking (§6.1, §8.6) -------------------------------------------------------------------------
@dataclass(frozen=True)
class ParkingSignalConfig:
    heartbeat_s: int = 600  # on change + 10-min heartbeat (§8.6, PARK-R1)
    resident_home_probability: float = 0.85
    resident_arrive_h: tuple[float, float] = (18.0, 21.5)
    resident_leave_h: tuple[float, float] = (7.0, 9.0)
    sharing_window_h: tuple[float, float] = (9.0, 18.0)  # weekdays 09–18 (PARK-R2 [V])
    lot_window_h: tuple[float, float] = (7.0, 22.0)
    dwell_median_min: float = 75.0  # lognormal dwell, median 60–90 min by day (§8.6)
    dwell_sigma: float = 0.6


PARKING = ParkingSignalConfig()


@lru_cache(maxsize=16384)
def parking_sessions(key: int, resident: bool, uses_per_day: float, day: int,
                     cfg: ParkingSignalConfig = PARKING) -> tuple[tuple[float, float], ...]:
    """The parked spans (arrive, leave) that start on a local day."""
    midnight = local_midnight(day)
    spans: list[tuple[float, float]] = []
    if resident and unit(key, S_PARK, day, 1) < cfg.resident_home_probability:
        arrive = midnight + 3600.0 * _between(cfg.resident_arrive_h, unit(key, S_PARK, day, 2))
        leave = midnight + DAY + 3600.0 * _between(cfg.resident_leave_h, unit(key, S_PARK, day + 1, 3))
        spans.append((arrive, leave))
    window = cfg.sharing_window_h if resident or (day + 3) % 7 < 5 else cfg.lot_window_h
    for i in range(poisson(uses_per_day if resident else uses_per_day * 3, key, S_PARK, day, 4)):
        arrive = midnight + 3600.0 * _between(window, unit(key, S_PARK, day, 10 + i))
        dwell = 60.0 * cfg.dwell_median_min * math.exp(cfg.dwell_sigma * normal(key, S_PARK, day, 20 + i))
        span = (arrive, arrive + dwell)
        if all(span[1] < a or span[0] > b for a, b in spans):
            spans.append(span)
    return tuple(sorted(spans))


def _between(bounds: tuple[float, float], u: float) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _spans_near(p: ParkingSpace, t: float, cfg: ParkingSignalConfig) -> list[tuple[float, float]]:
    day = local_day(t)
    out: list[tuple[float, float]] = []
    for d in (day - 1, day):
        out.extend(parking_sessions(p.key, p.resident, p.shared_uses_per_day, d, cfg))
    return out


def parking_occupied(p: ParkingSpace, t: float, cfg: ParkingSignalConfig = PARKING) -> bool:
    return any(a <= t < b for a, b in _spans_near(p, t, cfg))


def parking_changes(p: ParkingSpace, t0: float, t1: float, cfg: ParkingSignalConfig = PARKING) -> list[float]:
    """Instants in (t0, t1] where the space turns occupied or free: the sensor reports on change."""
    out: set[float] = set()
    for day in range(local_day(t0) - 1, local_day(t1) + 1):
        for a, b in parking_sessions(p.key, p.resident, p.shared_uses_per_day, day, cfg):
            out.update(x for x in (a, b) if t0 < x <= t1)
    return sorted(out)


# -- traffic links (§6.3 TRAF-R1, TRAF-R5; §8.1) ------------------------------------------------------------
@dataclass(frozen=True)
class TrafficSignalConfig:
    interval_s: int = 300  # 5-minute speeds (TOPIS resolution, TRAF-R1 [V])
    # Daily mean speed by 기능유형구분 (TRAF-R5 [V]: expressways 53–57, main arterials 24.5–25, auxiliary 22–23).
    class_mean_kmh: tuple[tuple[str, float], ...] = (
        ("도시고속도로", 55.0), ("주간선도로", 24.75), ("보조간선도로", 22.5), ("지선도로", 20.0))
    # Rush hours relative to the daily mean: AM 07–09 ≈ 22.5, PM 18–20 ≈ 19.8 vs 24.5 average (TRAF-R5).
    am_ratio: float = 22.5 / 24.5
    pm_ratio: float = 19.8 / 24.5
    friday_pm_ratio: float = 0.93  # Friday 17–19 is the slowest (TRAF-R5)
    night_ratio: float = 1.35  # free-flowing nights [D]
    noise: float = 0.06
    lane_capacity_veh_per_5min: float = 150.0


TRAFFIC = TrafficSignalConfig()


def speed_shape(hour: float, dow: int, cfg: TrafficSignalConfig = TRAFFIC) -> float:
    """Relative speed by time of day: slow in the AM and (slower) PM rush, fast at night."""
    night = (cfg.night_ratio - 1.0) * bump(hour, 3.0, 2.2)
    am = (1.0 - cfg.am_ratio) * bump(hour, 8.0, 0.8) if dow < 5 else 0.0
    pm = (1.0 - cfg.pm_ratio) * bump(hour, 19.0, 1.0) if dow < 5 else 0.3 * (1.0 - cfg.pm_ratio) * bump(hour, 17.0, 2.0)
    friday = (1.0 - cfg.friday_pm_ratio) * bump(hour, 18.0, 0.8) if dow == 4 else 0.0
    return 1.0 + night - am - pm - friday


@lru_cache(maxsize=8)
def _mean_shape(cfg: TrafficSignalConfig = TRAFFIC) -> float:
    samples = [speed_shape(h / 12.0, d, cfg) for d in range(7) for h in range(288)]
    return sum(samples) / len(samples)


def link_speed_kmh(link: RoadLink, t: float, cfg: TrafficSignalConfig = TRAFFIC) -> float:
    """The processed 5-minute speed of a link (prcs_spd), km/h."""
    mean = dict(cfg.class_mean_kmh).get(link.functional_class, 22.0)
    bias = 1.0 + 0.08 * normal(link.key, S_SPEED)  # each link has its own character
    shape = speed_shape(local_hour(t), weekday(t), cfg) / _mean_shape(cfg)
    wobble = 1.0 + cfg.noise * _smooth_noise(link.key, t, 900.0)
    return round(max(3.0, mean * bias * shape * wobble), 1)


def link_travel_time_s(link: RoadLink, t: float, cfg: TrafficSignalConfig = TRAFFIC) -> float:
    """Travel time (prcs_trv_time), s."""
    return round(link.length_m / (link_speed_kmh(link, t, cfg) / 3.6), 1)


def link_volume(link: RoadLink, t: float, cfg: TrafficSignalConfig = TRAFFIC) -> int:
    """Vehicles per 5 minutes: high in the day, low at night."""
    hour = local_hour(t)
    demand = 0.15 + 0.85 * max(bump(hour, 8.0, 1.5), bump(hour, 18.5, 2.0), 0.8 * bump(hour, 13.0, 3.5))
    lam = cfg.lane_capacity_veh_per_5min * link.lanes * demand
    return max(0, round(lam * (1.0 + 0.08 * normal(link.key, S_VOLUME, int(t // 300)))))


# -- daycare buses and children (§5, SAFE-R6, SAFE-R7) ------------------------------------------------------
@dataclass(frozen=True)
class MobilitySignalConfig:
    bus_interval_s: int = 10  # stream bus GPS every 10 s (SAFE-R7 [D])
    bus_idle_interval_s: int = 600
    child_interval_s: int = 60  # [D]
    walk_interval_s: int = 10  # location every 10 s (SAFE-R1 [D])
    gps_sigma_m: float = 4.0
    indoor_accuracy_m: float = 25.0
    outdoor_accuracy_m: float = 8.0
    walk_start_jitter_min: float = 20.0


MOBILITY = MobilitySignalConfig()


@dataclass(frozen=True)
class Fix:
    """A position report: where, how fast, which way, how sure."""

    point: LonLat
    speed_kmh: float
    heading_deg: float
    accuracy_m: float


def school_day(t: float) -> bool:
    return weekday(t) < 5


def bus_legs(bus: SchoolBus, t: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """The (start, end) of the morning and afternoon runs on t's local day."""
    midnight = local_midnight(local_day(t))
    total = geo.polyline_length_m(bus.route) / bus.speed_mps
    am = midnight + bus.am_departure_h * 3600.0
    pm = midnight + bus.pm_departure_h * 3600.0
    return (am, am + total), (pm, pm + total)


def bus_fix(bus: SchoolBus, t: float) -> Fix:
    """Where the bus is: at the depot, on its morning run, at the daycare, or on the way back."""
    (am0, am1), (pm0, pm1) = bus_legs(bus, t)
    if not school_day(t) or t < am0 or t >= pm1:
        return Fix(bus.route[0], 0.0, 0.0, MOBILITY.outdoor_accuracy_m)
    if am1 <= t < pm0:
        return Fix(bus.route[-1], 0.0, 0.0, MOBILITY.outdoor_accuracy_m)
    route = bus.route if t < am1 else tuple(reversed(bus.route))
    dist = (t - (am0 if t < am1 else pm0)) * bus.speed_mps
    return Fix(geo.point_along(route, dist), bus.speed_mps * 3.6, geo.heading_along(route, dist),
               MOBILITY.outdoor_accuracy_m)


def bus_in_service(bus: SchoolBus, t: float) -> bool:
    (am0, am1), (pm0, pm1) = bus_legs(bus, t)
    return school_day(t) and (am0 <= t < am1 or pm0 <= t < pm1)


def child_fix(child: Child, bus: SchoolBus, t: float, cfg: MobilitySignalConfig = MOBILITY) -> tuple[Fix, bool]:
    """The child's tracker position and whether the child is on the bus (boarding beacon)."""
    (am0, am1), (pm0, _) = bus_legs(bus, t)
    total = geo.polyline_length_m(bus.route)
    pickup = am0 + bus.stop_dist_m[child.stop_index] / bus.speed_mps
    dropoff = pm0 + (total - bus.stop_dist_m[child.stop_index]) / bus.speed_mps
    if school_day(t) and (pickup <= t < am1 or pm0 <= t < dropoff):
        return bus_fix(bus, t), True
    place = child.daycare if school_day(t) and am1 <= t < pm0 else child.home
    return Fix(_jitter(place, child.key, t, cfg.gps_sigma_m * 3), 0.0, 0.0, cfg.indoor_accuracy_m), False


def _jitter(point: LonLat, key: int, t: float, sigma_m: float) -> LonLat:
    bucket = int(t // 60)
    return geo.offset(point, sigma_m * normal(key, S_GPS, bucket, 1), sigma_m * normal(key, S_GPS, bucket, 2))


# -- safe-return walks (§5, SAFE-R1..R4) -----------------------------------------------------------------------
def walk_session(walk: SafeReturnWalk, day: int, cfg: MobilitySignalConfig = MOBILITY) -> tuple[float, float]:
    """(start, arrival) of the walk that starts on a local day; the start varies by day."""
    jitter = cfg.walk_start_jitter_min * 60.0 * (2.0 * unit(walk.key, S_WALK, day) - 1.0)
    start = local_midnight(day) + walk.start_h * 3600.0 + jitter
    return start, start + geo.polyline_length_m(walk.route) / walk.speed_mps


def walk_sessions_near(walk: SafeReturnWalk, t0: float, t1: float,
                       cfg: MobilitySignalConfig = MOBILITY) -> list[tuple[float, float]]:
    return [s for d in range(local_day(t0) - 1, local_day(t1) + 1)
            if (s := walk_session(walk, d, cfg))[1] >= t0 and s[0] <= t1]


def walk_fix(walk: SafeReturnWalk, t: float, start: float, cfg: MobilitySignalConfig = MOBILITY) -> Fix:
    """Position on the planned route `t - start` seconds into a session."""
    dist = max(0.0, (t - start) * walk.speed_mps)
    length = geo.polyline_length_m(walk.route)
    moving = dist < length
    point = _jitter(geo.point_along(walk.route, dist), walk.key, t, cfg.gps_sigma_m)
    return Fix(point, walk.speed_mps * 3.6 if moving else 0.0, geo.heading_along(walk.route, min(dist, length)),
               cfg.outdoor_accuracy_m)
