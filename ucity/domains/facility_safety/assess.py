"""From raw readings to the values the ladders assess, pure; and the write that records them.

For every reading of a structural sensor the domain writes one *assessed* attribute per channel
on the sensor entity, with the reading's `observedAt`; the rules engine runs the ladders on them:

* `tiltAssessed` (rad): the resultant of the two axes, hypot(x, y), each axis the SHM-R7 residual
  x − (a + b·T) once the sensor has a thermal model, else the raw change from the installation
  baseline (the ladder is on the change, SHM-R1); a single-axis sensor counts its other axis as 0;
* `crackOpeningAssessed` (mm): the same for the crack opening (SHM-R2);
* `vibrationPPVAssessed` (mm/s): the PPV as measured, with its dominant frequency (SHM-R3).

Each carries `compensation` (`thermal` | `none`) as a sub-property, and the datasetId of the
ladder that applies to the sensor (none for the default ladder; rules.py explains variants).

Plausibility and units (QA5 F3, `Checks`): each tilt axis, crack, PPV, dominant frequency and temperature
value is taken in its instance's `unitCode` (converted to the channel's unit when the code is in the unit
table; a reading without one is in the channel's unit) and must lie in its plausible range
(`plausibility`). A value outside it, in a unit not in the table, or not a (finite) number is a *suspect*:
it is not assessed (nor is the other axis of its tilt reading), the sensor's `readingSuspect` names why,
and the fault rule `shm-reading-suspect` raises a fault. The thermal model works in the unit the device
reports (its history is stored as sent), so a residual is converted after the model, never the raw
value before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ucity.core.bus import EntityChange
from ucity.core.clock import parse_iso, to_iso
from ucity.core.errors import NotFound
from ucity.domains.facility_safety.config import AttributeNames, PlausibilityConfig
from ucity.domains.facility_safety.models import Sensor, iri, short
from ucity.domains.facility_safety.rules import ASSESSED, CRACK, SUSPECT_OK, TILT, VIBRATION
from ucity.domains.facility_safety.thermal import residual
from ucity.ngsild.model import find_instance, stamp_copy
from ucity.ngsild.ops import json_copy
from ucity.store.base import ApplyFn, Doc, Outcome

UNIT_CODES = {TILT: "C81", CRACK: "MMT", VIBRATION: "C16"}  # UN/CEFACT: radian, millimetre, millimetre per second


UNIT_NAMES = {"tilt": "rad", "crack": "mm", "vibration": "mm/s", "frequency": "Hz", "temperature": "°C",
              "battery": "(fraction)"}
REASONS = {"out-of-range": ("타당 범위 밖", "outside its plausible range"),
           "unknown-unit": ("알 수 없는 단위", "in a unit not understood"),
           "not-a-number": ("숫자가 아님", "not a number"),
           "kind-mismatch": ("선언된 센서 종류(sensorKind)와 다른 측정값", "a measure of another kind than the sensor's "
                             "declared sensorKind")}


@dataclass(frozen=True, slots=True)
class Suspect:
    """A measured value that was not assessed, and why (QA5 F3)."""

    attribute: str
    value: Any
    unit: str | None
    reason: str  # out-of-range | unknown-unit | not-a-number | kind-mismatch
    detail: str = ""

    def text(self) -> str:
        return f"{self.attribute} {self.reason}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        ko, en = REASONS[self.reason]
        shown = self.value if _is_number(self.value) or isinstance(self.value, str | bool) or self.value is None \
            else repr(self.value)[:80]
        return {"attribute": self.attribute, "value": shown, "unitCode": self.unit, "reason": self.reason,
                "detail": self.detail, "ko": f"{self.attribute}: {ko} ({self.detail})",
                "en": f"{self.attribute}: {en} ({self.detail})"}


@dataclass(frozen=True, slots=True)
class Reading:
    """The numeric measures of one sensor at one instant (short attribute name -> value).

    `values` are plausible and as sent (the device's unit); `scales` converts those not in the channel's
    unit; `suspects` were left out; `checked`: the reading had a value the plausibility check looks at.
    """

    at: datetime
    values: dict[str, float]
    scales: dict[str, float] = field(default_factory=dict)
    suspects: tuple[Suspect, ...] = ()
    checked: bool = False
    units: dict[str, str | None] = field(default_factory=dict)  # checked attribute -> its unitCode (None: none)


class Checks:
    """Plausible ranges and unit conversions of the measured attributes (QA5 F3; config `plausibility`)."""

    def __init__(self, cfg: PlausibilityConfig, names: AttributeNames) -> None:
        self.cfg = cfg
        self.channel_of = {names.tilt_x: "tilt", names.tilt_y: "tilt", names.crack: "crack",
                           names.vibration: "vibration", names.frequency: "frequency",
                           names.temperature: "temperature", names.battery: "battery"}
        self.tables = {ch: cfg.unit_table(ch) for ch in set(self.channel_of.values())}

    def scale(self, name: str, unit: str | None) -> float | None:
        """The factor from `unit` to the channel's unit (1 without a unit); None for a unit not in the table."""
        channel = self.channel_of.get(name)
        if channel is None or unit is None:
            return 1.0
        found = self.tables[channel].get(unit)
        return found[0] if found is not None else None

    def check(self, name: str, raw: Any, unit: str | None, offset: float = 0.0) -> tuple[float, float] | Suspect:
        """(value as sent, scale to the channel's unit), or why the value is suspect.

        `offset`: the sensor's installation baseline of the attribute (device's unit, QA5 F9): the range is checked
        on the change from it (an absolute-angle sensor mounted at 3° is not a unit error)."""
        channel = self.channel_of[name]
        if not _is_number(raw):
            return Suspect(name, raw, unit, "not-a-number", f"{type(raw).__name__} {str(raw)[:40]!r}")
        conversion = (1.0, 0.0) if unit is None else self.tables[channel].get(unit)
        if conversion is None:
            known = ", ".join(sorted(self.tables[channel]))
            return Suspect(name, raw, unit, "unknown-unit", f"unitCode {unit!r}, known: {known}")
        scale = conversion[0]
        value = (float(raw) - offset) * scale + conversion[1]
        low, high = self.cfg.range_of(channel)
        if not (math.isfinite(value) and low <= value <= high):
            return Suspect(name, raw, unit, "out-of-range",
                           f"{value:g} {UNIT_NAMES[channel]}, plausible {low:g}..{high:g}")
        return float(raw), (1.0 if channel == "temperature" else scale)  # the thermal model takes T as sent


def observe(sensor: Sensor, reading: Reading) -> dict[str, Any] | None:
    """The `readingSuspect` instance a reading writes (QA5 F3), None when nothing changes; updates the sensor.

    A reading with a suspect value names them all (value: one line of reasons; `reasons` in full); the next
    reading whose checked values are all plausible writes `ok`, which clears the fault.
    """
    sensor.units.update(reading.units)
    if reading.suspects:
        sensor.suspect = True
        reasons = [s.to_json() for s in reading.suspects]
        return {"type": "Property", "value": "; ".join(s.text() for s in reading.suspects)[:500],
                "observedAt": to_iso(reading.at),
                iri("reasons"): {"type": "Property", "value": reasons}}
    if reading.checked and sensor.suspect:
        sensor.suspect = False
        return {"type": "Property", "value": SUSPECT_OK, "observedAt": to_iso(reading.at)}
    return None


@dataclass(frozen=True, slots=True)
class Assessed:
    channel: str
    value: float
    at: datetime
    method: str  # thermal | none
    detail: dict[str, float] = field(default_factory=dict)


def readings_of(change: EntityChange, measured: frozenset[str], now: datetime, checks: Checks | None = None,
                offsets: dict[str, float] | None = None) -> list[Reading]:
    """The readings a committed change carries, oldest first (instances grouped by observedAt).

    With `checks` (QA5 F3) a checked attribute's value that is implausible, in an unknown unit or not a number
    becomes a `Suspect` of its reading instead of a value; without, non-numbers are passed over as before.
    """
    groups: dict[datetime, Reading] = {}
    for attr, instance in change.instances:
        name = short(attr)
        if name not in measured or "datasetId" in instance or "value" not in instance:
            continue
        number = instance.get("value")
        at = _time(instance, now)
        checked = checks is not None and checks.cfg.enabled and name in checks.channel_of
        if not checked and not _is_number(number):
            continue
        group = groups.setdefault(at, Reading(at, {}))
        if not checked:
            group.values[name] = float(number)  # type: ignore[arg-type]  # checked above
            continue
        assert checks is not None
        unit = instance.get("unitCode") if isinstance(instance.get("unitCode"), str) else None
        result = checks.check(name, number, unit, (offsets or {}).get(name, 0.0))
        group.units[name] = unit
        if isinstance(result, Suspect):
            groups[at] = Reading(at, group.values, group.scales, (*group.suspects, result), True, group.units)
            continue
        group.values[name] = result[0]
        if result[1] != 1.0:
            group.scales[name] = result[1]
        if not group.checked:
            groups[at] = Reading(at, group.values, group.scales, group.suspects, True, group.units)
    return [groups[at] for at in sorted(groups)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _time(instance: dict[str, Any], now: datetime) -> datetime:
    text = instance.get("observedAt")
    try:
        return parse_iso(text) if isinstance(text, str) else now
    except ValueError:
        return now


def battery(reading: Reading, names: AttributeNames) -> dict[str, Any] | None:
    """The `batteryLevelAssessed` instance of a reading (QA14 F2): its batteryLevel as a fraction (percent, `P1`,
    converted), which SHM-R6's battery rule watches; None without a plausible battery value."""
    if names.battery not in reading.values:
        return None
    value = reading.values[names.battery] * reading.scales.get(names.battery, 1.0)
    return {"type": "Property", "value": round(value, 6), "observedAt": to_iso(reading.at), "unitCode": "C62"}


def kind_mismatch(sensor: Sensor, reading: Reading, names: AttributeNames) -> Reading:
    """The reading with the measures of another kind than the sensor's declared `sensorKind` made suspects (QA5
    F13i): a sensor declared `tilt` that sends `crackOpening` is misprovisioned (or mislabelled), its crack is not
    assessed on any ladder and the sensor says why, instead of being graded "no data" without a word."""
    if not sensor.declared_kind or sensor.kind is None:
        return reading
    channels = {TILT: (names.tilt_x, names.tilt_y), CRACK: (names.crack,), VIBRATION: (names.vibration,)}
    foreign = [n for kind, attrs in channels.items() if kind != sensor.kind for n in attrs if n in reading.values]
    if not foreign:
        return reading
    suspects = tuple(Suspect(n, reading.values[n], reading.units.get(n), "kind-mismatch",
                             f"sensorKind {sensor.kind}, measure of {next(k for k, a in channels.items() if n in a)}")
                     for n in foreign)
    values = {k: v for k, v in reading.values.items() if k not in foreign}
    return Reading(reading.at, values, reading.scales, (*reading.suspects, *suspects), True, reading.units)


def assess(sensor: Sensor, reading: Reading, temperature: float | None, names: AttributeNames
           ) -> tuple[list[Assessed], list[str]]:
    """The assessed values of one reading, and why a channel was left out (if one was).

    Without a thermal model a tilt axis or crack value is assessed as its change from the sensor's installation
    baseline (QA5 F9: raw − offset); with one, the residual (the model's intercept holds the offset)."""
    out: list[Assessed] = []
    skipped: list[str] = []
    v, k = reading.values, reading.scales
    suspect = {s.attribute for s in reading.suspects}
    if names.tilt_x in suspect or names.tilt_y in suspect:  # the other axis alone would understate the lean
        skipped.append(f"{TILT}: suspect axis, not assessed")
    elif names.tilt_x in v or names.tilt_y in v:
        x = _axis(v.get(names.tilt_x), temperature, sensor, names.tilt_x, k)
        y = _axis(v.get(names.tilt_y), temperature, sensor, names.tilt_y, k)
        if x is None or y is None:
            skipped.append(f"{TILT}: thermal model needs the temperature")
        elif not math.isfinite(resultant := math.hypot(x[0], y[0])):
            skipped.append(f"{TILT}: resultant not finite")
        else:
            method = "thermal" if "thermal" in (x[1], y[1]) else "none"
            out.append(Assessed(TILT, resultant, reading.at, method, {"residualX": x[0], "residualY": y[0]}))
    if names.crack in v:
        r = residual(v[names.crack] - _offset(sensor, names.crack), temperature, sensor.models.get(names.crack),
                     _offset(sensor, names.crack))
        if r is None:
            skipped.append(f"{CRACK}: thermal model needs the temperature")
        else:
            out.append(Assessed(CRACK, r[0] * k.get(names.crack, 1.0), reading.at, r[1]))
    if names.vibration in v:
        detail = {"dominantFrequency": v[names.frequency] * k.get(names.frequency, 1.0)} \
            if names.frequency in v else {}
        out.append(Assessed(VIBRATION, v[names.vibration] * k.get(names.vibration, 1.0), reading.at, "none", detail))
    return out, skipped


def _axis(raw: float | None, temperature: float | None, sensor: Sensor, name: str, scales: dict[str, float]
          ) -> tuple[float, str] | None:
    if raw is None:
        return 0.0, "none"  # a single-axis sensor: the other axis does not lean
    r = residual(raw - _offset(sensor, name), temperature, sensor.models.get(name), _offset(sensor, name))
    return None if r is None else (r[0] * scales.get(name, 1.0), r[1])  # the model works in the device's unit


def _offset(sensor: Sensor, name: str) -> float:
    return sensor.baseline.offset(name) if sensor.baseline is not None else 0.0


def instance(a: Assessed, dataset_id: str | None) -> dict[str, Any]:
    """The stored form of an assessed value (expanded sub-property names)."""
    out: dict[str, Any] = {"type": "Property", "value": round(a.value, 9), "observedAt": to_iso(a.at),
                           "unitCode": UNIT_CODES[a.channel],
                           iri("compensation"): {"type": "Property", "value": a.method}}
    for name, number in a.detail.items():
        out[iri(name)] = {"type": "Property", "value": round(number, 9)}
    if dataset_id is not None:
        out["datasetId"] = dataset_id
    return out


def neutral(channel: str, at: datetime, dataset_id: str | None) -> dict[str, Any]:
    """A zero on a ladder a sensor leaves: clears that ladder's rule before its instance is removed.

    `at` must not be older than what that ladder's rule last evaluated: the rules engine ignores an older
    observation, and the old rule's alarm would stay active with nothing left to clear it (the domain writes
    the zero at the handover's time, README "Per building class and per facility").
    """
    return instance(Assessed(channel, 0.0, at, "none"), dataset_id)


def assessed_attr(channel: str) -> str:
    return iri(ASSESSED[channel])


def write_op(instances: Iterable[tuple[str, dict[str, Any]]], removals: Iterable[tuple[str, str | None]] = ()
             ) -> ApplyFn:
    """Record instances (in time order; the newest per datasetId becomes current) and drop stale ones.

    Every instance goes to history; one older than the current instance of its datasetId (a late
    reading) leaves the current state alone, as ingest does for late measures.
    """
    items, drops = list(instances), list(removals)

    def apply(before: Doc | None, now: str) -> Outcome:
        if before is None:
            raise NotFound("the sensor entity no longer exists")
        doc: Doc = json_copy(before)
        history: list[tuple[str, dict[str, Any]]] = []
        for attr, inst in items:
            current = doc["attrs"].setdefault(attr, [])
            index = find_instance(current, inst.get("datasetId"))
            stamped = stamp_copy(inst, now, current[index] if index is not None else None)
            if index is None:
                current.append(stamped)
            elif str(current[index].get("observedAt") or "") <= str(inst.get("observedAt") or ""):
                current[index] = stamped
            history.append((attr, stamped))
        for attr, dataset_id in drops:
            _drop(doc, attr, dataset_id)
        doc["modifiedAt"] = now
        touched = frozenset(a for a, _ in items) | frozenset(a for a, _ in drops)
        return Outcome(doc, "update", touched, tuple(history), result="assessed")

    return apply


def _drop(doc: Doc, attr: str, dataset_id: str | None) -> None:
    current = doc["attrs"].get(attr)
    index = find_instance(current or [], dataset_id)
    if current is not None and index is not None:
        del current[index]
        if not current:
            del doc["attrs"][attr]
