"""SHM-R7 thermal compensation, pure: fit reading = a + b·T and take the residual.

Tilt and crack sensors move with temperature (a wall leans and a crack opens and closes every day
and every season). The fit uses hourly means of the reading and of the sensor's own temperature
over the trailing `window_days` (ideally 12 months), so that the daily cycle and the noise are
averaged the same way on both sides and a year of 10-minute data stays small (8,760 pairs).

A model is used only when its history spans at least `min_days` (30) with `min_hours` hourly
means and a temperature spread of `min_temperature_range_c`: before that `fit` returns why not and
the domain assesses the raw change from the installation baseline on the same ladder (README).

Structural movement must not be learnt as temperature: hours that the previous model already
called anomalous (residual at or above the ladder's first edge) are left out of the next fit, and
after a first fit hours further than `clip_sigmas` standard deviations from it are dropped and
the fit repeated (spikes, nearby works).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ucity.core.clock import from_micros, to_iso
from ucity.domains.facility_safety.models import ThermalModel

HOUR_US = 3_600_000_000


@dataclass(frozen=True, slots=True)
class HourMean:
    """The mean reading and mean temperature of one hour (start, micros)."""

    start_us: int
    reading: float
    temperature: float


@dataclass(frozen=True, slots=True)
class FitPolicy:
    min_days: float
    min_hours: int
    min_temperature_range_c: float
    clip_sigmas: float


@dataclass(frozen=True, slots=True)
class NoModel:
    """Why no model can be used yet (shown in the sensor's `thermalCompensation`)."""

    reason: str


def least_squares(temps: Sequence[float], values: Sequence[float]) -> tuple[float, float, float, float]:
    """(a, b, r², residual sigma) of values = a + b·temps; needs two distinct temperatures."""
    n = len(temps)
    mean_t = math.fsum(temps) / n
    mean_v = math.fsum(values) / n
    stt = math.fsum((t - mean_t) ** 2 for t in temps)
    stv = math.fsum((t - mean_t) * (v - mean_v) for t, v in zip(temps, values, strict=True))
    svv = math.fsum((v - mean_v) ** 2 for v in values)
    b = stv / stt
    a = mean_v - b * mean_t
    residual = math.fsum((v - a - b * t) ** 2 for t, v in zip(temps, values, strict=True))
    r2 = 1.0 - residual / svv if svv > 0 else 1.0
    sigma = math.sqrt(residual / max(1, n - 2))
    return a, b, r2, sigma


def pair_hours(readings: Sequence[tuple[int, float]], temperatures: Sequence[tuple[int, float]]) -> list[HourMean]:
    """Hours that have both a mean reading and a mean temperature, by their start."""
    temp_of = dict(temperatures)
    return [HourMean(start, value, temp_of[start]) for start, value in readings if start in temp_of]


def fit(hours: Sequence[HourMean], policy: FitPolicy, now: datetime, previous: ThermalModel | None = None,
        anomaly_at: float | None = None) -> ThermalModel | NoModel:
    """The model for these hours, or why there is none yet."""
    usable = [h for h in hours if previous is None or anomaly_at is None
              or abs(h.reading - previous.predict(h.temperature)) < anomaly_at]
    if not usable:
        return NoModel("no history")
    span_days = (usable[-1].start_us - usable[0].start_us + HOUR_US) / (24 * HOUR_US)
    if span_days < policy.min_days:
        return NoModel(f"{span_days:.1f} days of history, {policy.min_days:g} needed")
    if len(usable) < policy.min_hours:
        return NoModel(f"{len(usable)} hours with data, {policy.min_hours} needed")
    temps = [h.temperature for h in usable]
    if max(temps) - min(temps) < policy.min_temperature_range_c:
        return NoModel(f"temperature spread {max(temps) - min(temps):.1f} °C, "
                       f"{policy.min_temperature_range_c:g} needed")
    a, b, r2, sigma = least_squares(temps, [h.reading for h in usable])
    if sigma > 0:  # one pass of clipping: hours far from the first fit are not thermal behaviour
        kept = [h for h in usable if abs(h.reading - a - b * h.temperature) <= policy.clip_sigmas * sigma]
        kept_temps = [h.temperature for h in kept]
        if len(kept) >= policy.min_hours and max(kept_temps) - min(kept_temps) > 0:
            usable = kept
            a, b, r2, sigma = least_squares(kept_temps, [h.reading for h in kept])
    first, last = usable[0].start_us, usable[-1].start_us
    return ThermalModel(a=a, b=b, r2=r2, sigma=sigma, hours=len(usable), first=_iso(first), last=_iso(last),
                        fitted_at=to_iso(now), temp_min=min(h.temperature for h in usable),
                        temp_max=max(h.temperature for h in usable))


def residual(reading: float, temperature: float | None, model: ThermalModel | None, offset: float = 0.0
             ) -> tuple[float, str] | None:
    """(value to assess, method): the residual with a model, the raw change without one.

    `reading` is the change from the installation baseline (`offset` subtracted); the model was fitted on the
    readings as sent, so its prediction is taken from the same baseline (the offset lives in its intercept).
    None when a model exists but the temperature is unknown: subtracting nothing would put the
    thermal swing back into the value, so the reading is not assessed at all.
    """
    if model is None:
        return reading, "none"
    if temperature is None:
        return None
    return reading - (model.predict(temperature) - offset), "thermal"


def _iso(micros: int) -> str:
    return to_iso(from_micros(micros))
